"""Probe plan: which kernel functions mdtrace wants, which exist here, and how to attach them.

Functions may be missing per build (static helpers inlined, 6.9+-only dm-raid hooks, modules not
loaded) or renamed by GCC (``raid5_make_request.isra.0``, ``.constprop.N``).  The plan reads
``/proc/kallsyms`` once (and ``available_filter_functions`` where readable, which says what
ftrace-based probes can attach to), picks the symbol to attach for each wanted function, and
reports the rest as missing with a reason.  Nothing here imports bcc: it is pure and testable
on a fake kallsyms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# GCC clones that are complete functions (probe-able in place of the original);
# .cold / .part.N are fragments and never attached.
_CLONE = re.compile(r"^(?P<base>[A-Za-z0-9_]+)\.(isra|constprop|lto_priv)(\.\d+)*$")


@dataclass(frozen=True)
class ProbeSpec:
    """One wanted kernel function; ``entry``/``exit`` name the BPF C functions (or '')."""

    func: str
    group: str          # lifecycle / dm / reshape_io / locks / locks_full
    entry: str = ""
    exit: str = ""
    module: str = ""    # md_mod / raid456 / dm_mod / dm_raid / '' for vmlinux
    required: bool = False  # live md tracing is pointless without it
    note: str = ""


def _both(func: str, group: str, module: str, required: bool = False,
          note: str = "") -> ProbeSpec:
    return ProbeSpec(func, group, f"{func}_enter", f"{func}_exit", module, required, note)


def _entry(func: str, group: str, module: str, required: bool = False,
           note: str = "") -> ProbeSpec:
    return ProbeSpec(func, group, f"{func}_enter", "", module, required, note)


SPECS: tuple[ProbeSpec, ...] = (
    _both("md_check_recovery", "lifecycle", "md_mod", True),
    _both("md_do_sync", "lifecycle", "md_mod", True),
    _entry("md_reap_sync_thread", "lifecycle", "md_mod", True),
    _entry("md_register_thread", "lifecycle", "md_mod"),
    _entry("md_unregister_thread", "lifecycle", "md_mod"),
    _both("raid5_start_reshape", "lifecycle", "raid456"),
    _both("md_run", "lifecycle", "md_mod"),
    _entry("md_stop", "lifecycle", "md_mod", note="dm-raid stop (raid_dtr)"),
    _both("do_md_stop", "lifecycle", "md_mod", note="static; often inlined"),
    _both("mddev_suspend", "lifecycle", "md_mod"),
    _both("mddev_resume", "lifecycle", "md_mod"),
    _both("raid5_make_request", "reshape_io", "raid456"),
    _both("dm_suspend", "dm", "dm_mod"),
    _both("dm_resume", "dm", "dm_mod"),
    _both("raid_presuspend", "dm", "dm_raid", note="6.9+"),
    _both("raid_presuspend_undo", "dm", "dm_raid", note="6.9+"),
    _both("raid_postsuspend", "dm", "dm_raid"),
    _both("raid_preresume", "dm", "dm_raid"),
    _both("raid_resume", "dm", "dm_raid"),
    _both("raid_message", "dm", "dm_raid"),
    ProbeSpec("__mutex_lock_slowpath", "locks", "mutex_slowpath_enter", "mutex_slowpath_exit"),
    ProbeSpec("__mutex_lock_interruptible_slowpath", "locks", "mutex_slowpath_enter",
              "mutex_slowpath_exit"),
    ProbeSpec("__mutex_lock_killable_slowpath", "locks", "mutex_slowpath_enter",
              "mutex_slowpath_exit"),
    ProbeSpec("mutex_lock", "locks_full", "mutex_lock_enter", "mutex_lock_exit"),
    ProbeSpec("mutex_lock_interruptible", "locks_full", "mutex_lock_enter", "mutex_lock_exit"),
    ProbeSpec("mutex_trylock", "locks_full", "mutex_trylock_enter", "mutex_trylock_exit"),
    ProbeSpec("mutex_unlock", "locks_full", "mutex_unlock_enter", ""),
)

GROUP_FILES: dict[str, str] = {
    "lifecycle": "lifecycle.c", "reshape_io": "reshape_io.c", "dm": "dm_suspend.c",
    "locks": "locks.c", "locks_full": "locks.c",
}


@dataclass
class Symbols:
    """Function symbols from kallsyms: base name -> [(symbol, module)]."""

    funcs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    traceable: set[str] | None = None   # from available_filter_functions, None = unknown

    @classmethod
    def parse(cls, kallsyms: Iterable[str], traceable: Iterable[str] | None = None,
              wanted: Iterable[str] | None = None) -> Symbols:
        want = set(wanted) if wanted is not None else None
        funcs: dict[str, list[tuple[str, str]]] = {}
        for line in kallsyms:
            parts = line.split()
            if len(parts) < 3 or parts[1] not in ("t", "T", "w", "W"):
                continue
            name = parts[2]
            m = _CLONE.match(name)
            base = m.group("base") if m else name
            if "." in base:
                continue
            if want is not None and base not in want:
                continue
            module = parts[3].strip("[]") if len(parts) > 3 else ""
            funcs.setdefault(base, []).append((name, module))
        tr = None
        if traceable is not None:
            tr = set()
            for line in traceable:
                parts = line.split()
                if parts:
                    tr.add(parts[0])
        return cls(funcs, tr)

    @classmethod
    def read(cls, kallsyms: str | Path = "/proc/kallsyms",
             traceable: str | Path | None = None,
             wanted: Iterable[str] | None = None) -> Symbols:
        try:
            with open(kallsyms) as fh:
                ks = fh.readlines()
        except OSError:
            ks = []
        tr_lines = None
        for cand in ([traceable] if traceable else
                     ["/sys/kernel/tracing/available_filter_functions",
                      "/sys/kernel/debug/tracing/available_filter_functions"]):
            try:
                with open(cand) as fh:
                    tr_lines = fh.readlines()
                break
            except OSError:
                continue
        return cls.parse(ks, tr_lines, wanted)

    @property
    def addresses_hidden(self) -> bool:
        return not self.funcs


# Why every probe is a kprobe: bcc 0.26 (Debian bookworm) resolves KFUNC_PROBE (fentry) attach
# targets in vmlinux BTF only (libbpf_find_vmlinux_btf_id) and all md/dm-raid functions are in
# modules.  Reported by `mdtrace doctor` and recorded in each trace's header.
FENTRY_NOTE = ("fentry not used: bcc 0.26 attaches fentry to vmlinux functions only and the md "
               "functions are in modules; kprobes are used")


@dataclass
class PlannedProbe:
    spec: ProbeSpec
    symbol: str = ""        # what to attach to ('' = not attachable)
    method: str = "kprobe"
    reason: str = ""        # why not attachable

    @property
    def ok(self) -> bool:
        return bool(self.symbol)


@dataclass
class ProbePlan:
    probes: list[PlannedProbe]

    def attachable(self) -> list[PlannedProbe]:
        return [p for p in self.probes if p.ok]

    def missing(self) -> list[PlannedProbe]:
        return [p for p in self.probes if not p.ok]

    def groups(self) -> set[str]:
        return {p.spec.group for p in self.attachable()}

    def files(self) -> list[str]:
        """mdtrace/bpf/*.c files to compile, in a fixed order."""
        want = {GROUP_FILES[g] for g in self.groups()}
        return [f for f in ("lifecycle.c", "reshape_io.c", "dm_suspend.c", "locks.c")
                if f in want]

    def required_missing(self) -> list[PlannedProbe]:
        return [p for p in self.missing() if p.spec.required]


def make_plan(symbols: Symbols, *, locks: bool = False, locks_full: bool = False,
              io: bool = True, dm: bool = True) -> ProbePlan:
    """Pick a symbol for every wanted function; say why for those that have none."""
    out: list[PlannedProbe] = []
    for spec in SPECS:
        if spec.group == "locks" and not locks:
            continue
        if spec.group == "locks_full" and not (locks and locks_full):
            continue
        if spec.group == "reshape_io" and not io:
            continue
        if spec.group == "dm" and not dm:
            continue
        out.append(_plan_one(spec, symbols))
    return ProbePlan(out)


def _plan_one(spec: ProbeSpec, symbols: Symbols) -> PlannedProbe:
    cands = symbols.funcs.get(spec.func, [])
    if spec.module:
        cands = [c for c in cands if c[1] == spec.module] or cands
    if not cands:
        where = f"module {spec.module}" if spec.module else "the kernel"
        hint = f" (is {spec.module} loaded?)" if spec.module else ""
        why = f"{spec.func} not in /proc/kallsyms of {where}: inlined or absent in this " \
              f"version{hint}"
        if spec.note:
            why += f"; {spec.note}"
        return PlannedProbe(spec, reason=why)
    # exact name first, then clones (.isra/.constprop)
    cands = sorted(cands, key=lambda c: (c[0] != spec.func, c[0]))
    if symbols.traceable is not None:
        traceable = [c for c in cands if c[0] in symbols.traceable]
        if not traceable:
            return PlannedProbe(spec, reason=f"{cands[0][0]} exists but is not traceable "
                                             "(notrace / not in available_filter_functions)")
        cands = traceable
    if len({c[0] for c in cands if c[0] == cands[0][0]}) and \
            sum(1 for c in cands if c[0] == cands[0][0]) > 1:
        return PlannedProbe(spec, reason=f"{cands[0][0]} is ambiguous (several symbols of "
                                         "that name); not attached")
    return PlannedProbe(spec, symbol=cands[0][0])


def wanted_functions() -> list[str]:
    return [s.func for s in SPECS]


# ProbeSpec.note "6.9+": the function exists only from that release on.
_FROM = re.compile(r"^(\d+)\.(\d+)\+$")


def absent_by_design(probe: str, kernel: str) -> str:
    """'6.9+' when ``probe`` is a function that first appeared in a later release than
    ``kernel`` (its ProbeSpec note says so): missing there is expected, not a degraded trace."""
    from mdtrace.kernel.flags import parse_release

    ver = parse_release(kernel) if kernel else (0, 0)
    for spec in SPECS:
        m = _FROM.match(spec.note) if spec.func == probe else None
        if m and ver != (0, 0) and ver < (int(m[1]), int(m[2])):
            return spec.note
    return ""
