"""The kernel's own view of every mddev, read from /proc/kcore with BTF offsets (no compile).

sysfs shows what md's ``*_show`` functions derive (``sync_action`` from the recovery word,
``array_state`` from ro and flags); a hang such as DONE-never-reaped (F1/F2) needs the words
themselves: ``mddev->recovery`` with DONE, ``sync_thread`` still registered, ``suspended``.
A bcc compile costs 60-130 s in a TCG guest, so this stage reads kernel memory the way drgn
does instead: /proc/kcore is an ELF64 core whose PT_LOAD segments map kernel virtual
addresses to file offsets; ``all_mddevs`` (md_mod's list of every mddev) comes from
/proc/kallsyms, and every struct offset from the running kernel's BTF through the same
FIELDS table the BPF programs use (mdtrace/kernel/offsets.py).

Read-only and bounded: each read is at most :data:`MAX_READ` bytes and lies wholly inside one
PT_LOAD segment (never between or past them), the list walk stops after :data:`MAX_MDDEVS`
entries, on a loop, or on a pointer outside the segments.  Nothing is locked: the list can
change under the walk, which then stops with a reason rather than guessing.  Kernel pointer
values are never returned (KASLR): only whether one is set.

Failure is a reason (:class:`KernelStateResult.reason`), never an exception: not root /
CAP_SYS_RAWIO, kernel lockdown, no /proc/kcore, no ``all_mddevs`` in kallsyms (md_mod not
loaded, or addresses hidden), no md_mod BTF.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from mdtrace.errors import EnvironmentProblem
from mdtrace.events import reshape_pos_from_kernel
from mdtrace.kernel.flags import FlagTable, mddev_names, recovery_names
from mdtrace.kernel.offsets import FIELDS, BtfSet, KernelOffsets, compute_offsets
from mdtrace.sources.snapshot import dm_registry
from mdtrace.sources.snapshot.memory import (
    MAX_READ,
    PT_LOAD,
    BadAddress,
    Captured,
    Kcore,
    KcoreUnavailable,
    Memory,
    Segment,
)
from mdtrace.sources.snapshot.modsyms import module_symbol

MAX_MDDEVS = 256              # entries walked on all_mddevs
# percpu_ref.percpu_count_ptr low bits (include/linux/percpu-refcount.h)
PERCPU_REF_ATOMIC = 1
PERCPU_REF_DEAD = 2


# -- what is read per mddev -------------------------------------------------------------------


@dataclass(frozen=True)
class RefState:
    """A ``struct percpu_ref`` (active_io, writes_pending).  In percpu mode (the normal one)
    the count is spread over per-CPU counters and ``count`` is None; after percpu_ref_kill
    (mddev_suspend: dead + atomic) or in atomic mode it is the real count of references."""

    mode: str                  # percpu | atomic | dead | switching | unset
    count: int | None

    def to_json(self) -> dict[str, Any]:
        why = {"percpu": "per-CPU mode: the count is spread over CPUs and not summed",
               "switching": "switching to atomic mode: the count is not settled",
               "unset": "not initialised"}.get(self.mode, "atomic mode: the real count")
        return {"mode": self.mode, "count": self.count, "meaning": why}


@dataclass(frozen=True)
class MddevState:
    """One mddev as the kernel holds it (no pointer values: only whether they are set)."""

    name: str                  # md0, dm-6 ('' when no name could be read)
    dm_name: str               # dm-raid: mapped_device->name ('253:6')
    kind: str                  # md | dm-raid | ''
    recovery: int              # raw kernel words
    flags: int
    sb_flags: int
    ro: int
    suspended: int
    sync_thread: bool
    level: int
    reshape_position: int | None
    curr_resync: int
    resync_max_sectors: int
    recovery_active: int | None = None     # atomic_t (None: not in this kernel's BTF)
    pending_writes: int | None = None
    active_io: RefState | None = None
    writes_pending: RefState | None = None

    def to_json(self, table: FlagTable, sb_names: dict[str, int],
                source: str = "/proc/kcore") -> dict[str, Any]:
        return {
            "read": True, "source": source,
            "recovery": recovery_names(table.recovery_canon(self.recovery)),
            "recovery_raw": self.recovery,
            "flags": mddev_names(table.mddev_canon(self.flags)), "flags_raw": self.flags,
            "sb_flags": [n for n, b in sorted(sb_names.items(), key=lambda x: x[1])
                         if self.sb_flags >> b & 1],
            "sb_flags_raw": self.sb_flags, "ro": self.ro, "suspended": self.suspended,
            "sync_thread": self.sync_thread, "level": self.level,
            "reshape_position": self.reshape_position, "curr_resync": self.curr_resync,
            "resync_max_sectors": self.resync_max_sectors,
            "recovery_active": self.recovery_active, "pending_writes": self.pending_writes,
            "active_io": self.active_io.to_json() if self.active_io else None,
            "writes_pending": self.writes_pending.to_json() if self.writes_pending else None,
        }


@dataclass
class KernelStateResult:
    """The stage's answer: mddevs read (maybe partial: ``stopped`` says why) or a reason."""

    mddevs: list[MddevState] = field(default_factory=list)
    reason: str = ""           # why nothing could be read ('' = read)
    stopped: str = ""          # why the walk ended early ('' = whole list)
    table: FlagTable | None = None
    sb_names: dict[str, int] = field(default_factory=dict)
    # seconds per step (kallsyms, open, btf, walk): where a slow stage spent its time
    timings: dict[str, float] = field(default_factory=dict)
    # where the words came from: /proc/kcore, or the BPF probe (bpf_state.py); why the first
    # reader could not be used when the answer is the fallback's
    source: str = "/proc/kcore"
    fallback_from: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason

    def by_name(self) -> dict[str, MddevState]:
        return {m.name: m for m in self.mddevs if m.name}


# -- layout (from the one FIELDS table) ---------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    off: dict[str, int]        # define -> byte offset (absent members are missing)
    size: dict[str, int]
    mddev_size: int

    def has(self, *names: str) -> bool:
        return all(n in self.off for n in names)


def layout(btfs: BtfSet) -> Layout:
    off: dict[str, int] = {}
    size: dict[str, int] = {}
    for define, module, struct_name, path, _req in FIELDS:
        btf = btfs.get(module)
        got = btf.member(struct_name, path) if btf is not None else None
        if got is not None:
            off[define], size[define] = got
    md = btfs.modules.get("md_mod")
    return Layout(off, size, (md.struct_size("mddev") if md else 0) or 0)


def read_mddev(core: Memory, lay: Layout, mddev: int) -> MddevState:
    """One struct mddev in one read, plus its name (gendisk, or the dm device for dm-raid)."""
    buf = core.read(mddev, lay.mddev_size)
    o = lay.off

    def u(define: str, signed: bool = False) -> int:
        at, n = o[define], lay.size[define]
        return int.from_bytes(buf[at:at + n], "little", signed=signed)

    def opt(define: str) -> int | None:
        return u(define, signed=True) if define in o and lay.size[define] == 4 else None

    name, dm_name, kind = _names(core, lay, mddev, u("MDDEV_GENDISK"))
    return MddevState(
        name=name, dm_name=dm_name, kind=kind, recovery=u("MDDEV_RECOVERY"),
        flags=u("MDDEV_FLAGS"), sb_flags=u("MDDEV_SB_FLAGS") if "MDDEV_SB_FLAGS" in o else 0,
        ro=u("MDDEV_RO", True), suspended=u("MDDEV_SUSPENDED", True),
        sync_thread=u("MDDEV_SYNC_THREAD") != 0, level=u("MDDEV_LEVEL", True),
        reshape_position=reshape_pos_from_kernel(u("MDDEV_RESHAPE_POS")),
        curr_resync=u("MDDEV_CURR_RESYNC"), resync_max_sectors=u("MDDEV_RESYNC_MAX"),
        recovery_active=opt("MDDEV_RECOVERY_ACTIVE"), pending_writes=opt("MDDEV_PENDING_WRITES"),
        active_io=_ref(core, lay, buf, "MDDEV_ACTIVE_IO"),
        writes_pending=_ref(core, lay, buf, "MDDEV_WRITES_PENDING"))


def _ref(core: Memory, lay: Layout, buf: bytes, define: str) -> RefState | None:
    """A percpu_ref member (an atomic_t in kernels that had one: the count itself)."""
    if define not in lay.off:
        return None
    at = lay.off[define]
    if lay.size[define] == 4:                       # atomic_t active_io (older kernels)
        return RefState("atomic", int.from_bytes(buf[at:at + 4], "little", signed=True))
    if not lay.has("PERCPU_REF_COUNT_PTR", "PERCPU_REF_DATA", "PERCPU_REF_DATA_COUNT"):
        return None
    ptr = int.from_bytes(buf[at + lay.off["PERCPU_REF_COUNT_PTR"]:][:8], "little")
    data = int.from_bytes(buf[at + lay.off["PERCPU_REF_DATA"]:][:8], "little")
    if not data:
        return RefState("unset", None)
    if not ptr & PERCPU_REF_ATOMIC:
        return RefState("percpu", None)
    try:
        count = int.from_bytes(core.read(data + lay.off["PERCPU_REF_DATA_COUNT"], 8),
                               "little", signed=True)
    except BadAddress:
        return RefState("unset", None)
    mode = "dead" if ptr & PERCPU_REF_DEAD else "atomic"
    if not 0 <= count < 1 << 40:          # still carries PERCPU_COUNT_BIAS: mid-switch
        return RefState("switching", None)
    return RefState(mode, count)


def _names(core: Memory, lay: Layout, mddev: int, gendisk: int) -> tuple[str, str, str]:
    """(name, dm name, kind): md arrays have a gendisk; dm-raid ones (before 6.16) reach the
    dm device through container_of(mddev, struct raid_set, md)->ti->table->md (common.h)."""
    o = lay.off
    try:
        if gendisk:
            return core.cstr(gendisk + o["GENDISK_DISK_NAME"], 32), "", "md"
        if not lay.has("RAID_SET_MD", "RAID_SET_TI", "DM_TARGET_TABLE", "DM_TABLE_MD",
                       "MAPPED_DEVICE_DISK", "MAPPED_DEVICE_NAME"):
            return "", "", ""
        rs = mddev - o["RAID_SET_MD"]
        ti = core.u64(rs + o["RAID_SET_TI"])
        table = core.u64(ti + o["DM_TARGET_TABLE"])
        md = core.u64(table + o["DM_TABLE_MD"])
        disk = core.u64(md + o["MAPPED_DEVICE_DISK"])
        return (core.cstr(disk + o["GENDISK_DISK_NAME"], 32),
                core.cstr(md + o["MAPPED_DEVICE_NAME"], 16), "dm-raid")
    except BadAddress:
        return "", "", ""


def walk(core: Kcore, lay: Layout, head: int, limit: int = MAX_MDDEVS) -> tuple[list[int], str]:
    """mddev addresses on the list at ``head`` (container_of via all_mddevs' offset), and why
    the walk stopped early ('' when it came back to the head)."""
    nxt, prv = lay.off["LIST_HEAD_NEXT"], lay.off["LIST_HEAD_PREV"]
    link = lay.off["MDDEV_ALL_MDDEVS"]
    out: list[int] = []
    seen = {head}
    prev, node = head, None
    try:
        node = core.u64(head + nxt)
        while node != head:
            if node in seen:
                return out, f"all_mddevs loops after {len(out)} entries (list changing?)"
            if len(out) >= limit:
                return out, f"more than {limit} mddevs: stopped there"
            if core.u64(node + prv) != prev:
                return out, f"all_mddevs changed under the walk (entry {len(out) + 1})"
            seen.add(node)
            out.append(node - link)
            prev, node = node, core.u64(node + nxt)
    except BadAddress:
        return out, f"a bad pointer in all_mddevs (entry {len(out) + 1}): stopped there"
    return out, ""


@dataclass(frozen=True)
class KernelLayout:
    """What both readers need from the running kernel's BTF: offsets (and the flag table) for
    the FIELDS, the struct sizes, the MD_SB_* names."""

    btfs: BtfSet
    offsets: KernelOffsets
    lay: Layout
    sb_names: dict[str, int]


def load_layout(sys_root: Path, load_btf: Callable[[Path], BtfSet] = BtfSet.from_dir,
                ) -> KernelLayout | str:
    """The layout from ``sys_root``/kernel/btf, or the one-line reason it cannot be had."""
    try:
        btfs = load_btf(sys_root / "kernel" / "btf")
        offsets = compute_offsets(btfs)
    except EnvironmentProblem as exc:
        return f"no usable BTF: {exc}"
    lay = layout(btfs)
    if not lay.mddev_size:
        return ("BTF of md_mod has no struct mddev size (kernel layout mdtrace does not know; "
                "please report)")
    md = btfs.modules["md_mod"]
    sb = md.enum("mddev_sb_flags") or md.enum_containing("MD_SB_CHANGE_PENDING") or {}
    return KernelLayout(btfs, offsets, lay, {k.removeprefix("MD_SB_"): v for k, v in sb.items()})


# -- the stage ----------------------------------------------------------------------------------


def kallsyms_address(text: str, symbol: str, module: str = "md_mod") -> int | None:
    """The address of ``symbol`` (of ``module``) in /proc/kallsyms text; 0 when hidden.

    One regex over the whole text (C speed): a line-by-line split of ~150 000 lines cost
    seconds in a TCG guest."""
    m = re.search(rf"^([0-9a-fA-F]+) \S+ {re.escape(symbol)}(?:[ \t]+\[{re.escape(module)}\])?"
                  r"[ \t]*$", text, re.M)
    return int(m.group(1), 16) if m else None


def lockdown_mode(sys_root: Path) -> str:
    """The active mode in sys_root/kernel/security/lockdown (none, integrity,
    confidentiality); '' when the file is absent."""
    try:
        text = (sys_root / "kernel" / "security" / "lockdown").read_text()
    except OSError:
        return ""
    return next((w.strip("[]") for w in text.split() if w.startswith("[")), "")


Opener = Callable[[Path], BinaryIO]


def _open(path: Path) -> BinaryIO:
    return open(path, "rb", buffering=0)


class ModuleSymbols:
    """Module data symbols: from the module's own ELF file first (modsyms.py: milliseconds),
    from /proc/kallsyms (read once, when first needed) when that cannot say."""

    def __init__(self, sys_root: Path, proc_root: Path, lib_root: Path) -> None:
        self.sys_root, self.proc_root, self.lib_root = sys_root, proc_root, lib_root
        self._kallsyms: str | None = None
        self.timings: dict[str, float] = {}
        try:
            self.release = (proc_root / "sys" / "kernel" / "osrelease").read_text().strip()
        except OSError:
            self.release = ""

    def kallsyms(self) -> str:
        """/proc/kallsyms' text; OSError when it cannot be read."""
        if self._kallsyms is None:
            t0 = time.monotonic()
            self._kallsyms = (self.proc_root / "kallsyms").read_text(errors="replace")
            self.timings["kallsyms"] = round(time.monotonic() - t0, 3)
        return self._kallsyms

    def address(self, symbol: str, module: str) -> int | None:
        """0 when kallsyms hides it, None when absent; OSError when kallsyms is unreadable."""
        t0 = time.monotonic()
        got = (module_symbol(module, symbol, sys_root=self.sys_root, lib_root=self.lib_root,
                             release=self.release) if self.release else None)
        self.timings["module_symtab"] = round(
            self.timings.get("module_symtab", 0.0) + time.monotonic() - t0, 3)
        if got is not None:
            return got
        return kallsyms_address(self.kallsyms(), symbol, module)


def read_kernel_state(sys_root: Path | str = "/sys", proc_root: Path | str = "/proc", *,
                      opener: Opener = _open, euid: int | None = None,
                      limit: int = MAX_MDDEVS,
                      load_btf: Callable[[Path], BtfSet] = BtfSet.from_dir,
                      lib_root: Path | str = "/lib/modules",
                      ) -> KernelStateResult:
    """Every mddev on md_mod's ``all_mddevs`` list, from ``proc_root``/kcore, the symbol's
    address (md_mod's own ELF file, else kallsyms) and the BTF under ``sys_root``/kernel/btf;
    a result with a one-line reason when it cannot.

    Cheapest checks first (the symbol, opening the core), the BTF parse (about a second) last."""
    sys_root, proc_root = Path(sys_root), Path(proc_root)
    kcore_path = proc_root / "kcore"
    syms = ModuleSymbols(sys_root, proc_root, Path(lib_root))
    try:
        head = syms.address("all_mddevs", "md_mod")
    except OSError as exc:
        return KernelStateResult(reason=f"{proc_root}/kallsyms: cannot read ({exc.strerror})")
    if head is None:
        return KernelStateResult(reason=f"all_mddevs not in {proc_root}/kallsyms (md_mod not "
                                 "loaded, or its data symbols hidden)")
    if head == 0:
        return KernelStateResult(reason=f"{proc_root}/kallsyms shows zero addresses "
                                 "(kptr_restrict, or not root): all_mddevs cannot be found")
    try:
        fh = opener(kcore_path)
    except FileNotFoundError:
        return KernelStateResult(reason=f"{kcore_path}: not present (kernel without "
                                 "CONFIG_PROC_KCORE, or a container)")
    except OSError as exc:
        return KernelStateResult(reason=_denied(exc, kcore_path, sys_root, euid))
    try:
        res = _read(fh, kcore_path, head, sys_root, limit, load_btf, syms)
    finally:
        fh.close()
    res.timings = {**syms.timings, **res.timings}
    return res


def _read(fh: BinaryIO, kcore_path: Path, head: int, sys_root: Path, limit: int,
          load_btf: Callable[[Path], BtfSet], syms: ModuleSymbols) -> KernelStateResult:
    try:
        masked = stat.S_ISCHR(os.fstat(fh.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        masked = False
    if masked:
        # docker/podman/runc mask /proc/kcore by bind-mounting /dev/null over it
        return KernelStateResult(reason=f"{kcore_path}: masked (a character device such as "
                                 "/dev/null is mounted over it: a container's masked path)")
    try:
        core = Kcore(fh, str(kcore_path))
    except BadAddress as exc:
        return KernelStateResult(reason=f"{kcore_path}: cannot read ({exc})")
    except KcoreUnavailable as exc:
        return KernelStateResult(reason=str(exc))
    if core.segment_of(head, 16) is None:
        return KernelStateResult(reason=f"all_mddevs is outside {kcore_path}'s memory "
                                 "segments (a core of another boot?)")
    t0 = time.monotonic()
    kl = load_layout(sys_root, load_btf)
    if isinstance(kl, str):
        return KernelStateResult(reason=kl)
    t_btf = round(time.monotonic() - t0, 3)
    lay = kl.lay
    if not lay.has("MDDEV_ALL_MDDEVS", "LIST_HEAD_NEXT", "LIST_HEAD_PREV"):
        return KernelStateResult(reason="BTF of md_mod has no struct mddev.all_mddevs "
                                 "(kernel layout mdtrace does not know; please report)")
    addrs, stopped = walk(core, lay, head, limit)
    out = []
    for i, a in enumerate(addrs):
        try:
            out.append(read_mddev(core, lay, a))
        except BadAddress:
            stopped = stopped or f"mddev {i + 1} on all_mddevs not readable: stopped there"
            break
    dm_out, dm_stopped = _dm_raid(core, kl.btfs, lay, syms, {m for m in addrs})
    out += dm_out
    stopped = "; ".join(w for w in (stopped, dm_stopped) if w)
    return KernelStateResult(out, "", stopped, kl.offsets.flag_table, kl.sb_names,
                             timings={"btf": t_btf,
                                      "walk": round(time.monotonic() - t0 - t_btf, 3)})


def _dm_raid(core: Kcore, btfs: BtfSet, lay: Layout, syms: ModuleSymbols, on_list: set[int],
             ) -> tuple[list[MddevState], str]:
    """dm-raid's mddevs (never on all_mddevs: dm_registry.py), through dm's name index; none
    and no reason when dm_mod or dm_raid is not loaded (no index symbol, no BTF)."""
    dlay = dm_registry.dm_layout(btfs)
    if not dlay.index:
        return [], ""
    try:
        root = syms.address(dlay.root_symbol, "dm_mod")
    except OSError:
        return [], f"dm devices: {syms.proc_root}/kallsyms unreadable"
    if not root or core.segment_of(root, 16) is None:
        return [], ""
    addrs, stopped = dm_registry.raid_mddevs(core, dlay, root)
    out = []
    for a in addrs:
        if a in on_list:
            continue
        try:
            st = read_mddev(core, lay, a)
        except BadAddress:
            stopped = stopped or "a dm-raid mddev not readable: skipped"
            continue
        if st.kind != "dm-raid":  # 6.16+ records dm's gendisk in the mddev: named as md
            st = replace(st, kind="dm-raid", dm_name=_dm_name(core, lay, a) or st.dm_name)
        out.append(st)
    return out, stopped and f"dm devices: {stopped}"


def _dm_name(core: Memory, lay: Layout, mddev: int) -> str:
    """The mapped_device's "major:minor" name (its ``name``), via the raid_set."""
    o = lay.off
    if not lay.has("RAID_SET_MD", "RAID_SET_TI", "DM_TARGET_TABLE", "DM_TABLE_MD",
                   "MAPPED_DEVICE_NAME"):
        return ""
    try:
        ti = core.u64(mddev - o["RAID_SET_MD"] + o["RAID_SET_TI"])
        md = core.u64(core.u64(ti + o["DM_TARGET_TABLE"]) + o["DM_TABLE_MD"])
        return core.cstr(md + o["MAPPED_DEVICE_NAME"], 16)
    except BadAddress:
        return ""


def _denied(exc: OSError, path: Path, sys_root: Path, euid: int | None) -> str:
    if exc.errno not in (errno.EPERM, errno.EACCES):
        return f"{path}: cannot open ({exc.strerror})"
    mode = lockdown_mode(sys_root)
    if mode == "confidentiality":
        return (f"{path}: forbidden by kernel lockdown ({mode}, "
                f"{sys_root}/kernel/security/lockdown): kernel memory cannot be read here")
    uid = os.geteuid() if euid is None else euid
    if uid != 0:
        return (f"{path}: permission denied (reading kernel memory needs root with "
                "CAP_SYS_RAWIO; run with sudo)")
    return (f"{path}: permission denied as root (CAP_SYS_RAWIO dropped, or a lockdown / LSM "
            "policy forbids it)")


__all__ = ["MAX_READ", "PT_LOAD", "BadAddress", "Captured", "Kcore", "KcoreUnavailable",
           "KernelLayout", "Segment",
           "KernelStateResult", "Layout", "MddevState", "Memory", "RefState", "kallsyms_address",
           "layout", "load_layout", "read_kernel_state", "read_mddev", "walk"]
