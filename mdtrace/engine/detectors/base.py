"""What a detector sees.  Per-array detectors get a :class:`Context` (the array record, the
event or None on a tick, time, config); the graph detectors (F8, F9) a :class:`GraphContext`
with what the lock-order and wait-for graphs found.  Detectors return :class:`Verdict` s and
never mutate engine state, so each can be tested on hand-built records."""

from __future__ import annotations

from dataclasses import dataclass, field

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.blocked import BlockedTask
from mdtrace.engine.locks import Inversion
from mdtrace.engine.model import Finding
from mdtrace.engine.waitfor import Cycle
from mdtrace.events import Event
from mdtrace.kernel.flags import parse_release


@dataclass
class Context:
    arr: ArrayRec
    ev: Event | None
    now_ns: int
    config: EngineConfig
    kernel: str


@dataclass
class GraphContext:
    now_ns: int
    config: EngineConfig
    kernel: str
    arrays: dict[str, ArrayRec]
    inversions: list[Inversion] = field(default_factory=list)
    cycles: list[Cycle] | None = None   # None: not computed on this call (event, not tick)
    active: frozenset[str] = frozenset()  # keys of active findings (to clear vanished ones)


@dataclass
class Verdict:
    """Raise (``finding`` set) or clear (``finding`` None) the finding with ``key``."""

    key: str
    finding: Finding | None


# -- the kernel fix line: the one place that decides whether to name it ----------------------


def fix_missing(kernel: str, fixed_in: tuple[int, int], text: str) -> str:
    """``text`` (the fixing commit) only where ``kernel`` predates ``fixed_in`` (the upstream
    release that has it) or is unknown: on a kernel that already has the fix, naming it
    suggests an upgrade would help.  Upstream versions only: a distribution backport is not
    seen here."""
    ver = parse_release(kernel) if kernel else (0, 0)
    return text if ver == (0, 0) or ver < fixed_in else ""


@dataclass(frozen=True)
class FixLine:
    line: str        # the finding's ``fix``
    upgrade: str     # the remedy's closing advice (no trailing period)


def fix_seen(kernel: str, fixed_in: tuple[int, int], commit: str, seen: str) -> FixLine:
    """The fix line of a finding whose evidence is the unfixed behaviour itself (``seen``:
    what the fixed code never does), so it is named on every kernel.  Before ``fixed_in``
    (or unknown): ``commit (x.y)``, as :func:`fix_missing` says it.  On a kernel whose version
    has it upstream the version alone proves nothing (a distribution kernel without the
    backport, or the zoo's 6.12.117 with exactly that commit reverted, vmtest/zoo): the line
    says it is fixed upstream and that this kernel behaves as if it lacks it."""
    rel = f"{fixed_in[0]}.{fixed_in[1]}"
    ver = parse_release(kernel) if kernel else (0, 0)
    if ver == (0, 0) or ver < fixed_in:
        return FixLine(f"{commit} ({rel})", "upgrade to a kernel with the fix")
    sha = commit.split()[0]
    return FixLine(
        f"fixed upstream by {commit} (in {rel}); this kernel ({kernel}) is {rel} or later "
        f"by its version but behaves as if it lacks it ({seen})",
        f"this kernel build lacks {sha} although {rel}+ has it upstream: run one that "
        "carries it (check the distribution's changelog or the module's source)")


# -- remedies: the one place that knows which command works for which kind of array -------
# dm-raid arrays have no /sys/block/dm-N/md directory (dm-raid's mddev has no gendisk of its
# own, so md never creates its sysfs group): their sync actions go through the target's
# message hook (dm-raid raid_message) instead.


def is_dm(arr: ArrayRec) -> bool:
    """A dm-raid array: the engine saw its dm name (kind dm-raid), or it is named dm-N."""
    return arr.kind == "dm-raid" or bool(arr.dm_name) or arr.name.startswith("dm-")


def lvm_name(dm_name: str) -> str | None:
    """``VG/LV`` for an LVM dm name (``vg-lv``; a literal '-' in either is written '--'), or
    None when the name is not one (no single dash, or a layer suffix such as ``-real``)."""
    parts, cur, i = [], "", 0
    while i < len(dm_name):
        if dm_name.startswith("--", i):
            cur, i = cur + "-", i + 2
        elif dm_name[i] == "-":
            parts.append(cur)
            cur, i = "", i + 1
        else:
            cur, i = cur + dm_name[i], i + 1
    parts.append(cur)
    return f"{parts[0]}/{parts[1]}" if len(parts) == 2 and all(parts) else None


def display_name(arr: ArrayRec) -> str:
    """How a finding's text names the array: a dm-raid LV by its LVM name (``VG/LV``, what
    lvm2 and the operator call it; :func:`lvm_name`, the resolution the snapshot's task ties
    and the lvchange remedies use), another dm device by its dm name, md by its own.  Not the
    finding's ``array``: that is the engine's record name (``dm-6``), which the report, the
    TUI and the exporter join findings to arrays by."""
    if not arr.dm_name:
        return arr.name
    return lvm_name(arr.dm_name) or arr.dm_name


def _dm_dev(arr: ArrayRec) -> str:
    return arr.dm_name or f"/dev/{arr.name}"


def sync_action_cmd(arr: ArrayRec, action: str) -> str:
    """The command that requests sync ``action`` (idle, frozen, check, repair, reshape ...).

    md: ``echo ACTION > /sys/block/mdX/md/sync_action``.  dm-raid: lvm2's ``lvchange
    --syncaction`` accepts only check|repair, so the others are dm-raid target messages
    (raid_message: idle, frozen, resync, recover, check, repair); it has no "reshape"
    message: ``idle`` clears FROZEN and the md daemon continues an unfinished reshape.
    """
    if not is_dm(arr):
        return f"echo {action} > /sys/block/{arr.name}/md/sync_action"
    lv = lvm_name(arr.dm_name)
    if lv and action in ("check", "repair"):
        return f"lvchange --syncaction {action} {lv}"
    return f"dmsetup message {_dm_dev(arr)} 0 {'idle' if action == 'reshape' else action}"


def resume_cmd(arr: ArrayRec) -> str:
    """The command that resumes a suspended array (dm: the LV's dm device; md: array_state)."""
    if is_dm(arr):
        return f"dmsetup resume {_dm_dev(arr)}"
    return f"echo active > /sys/block/{arr.name}/md/array_state"


def readwrite_cmd(arr: ArrayRec) -> str:
    """The command that makes a read-only array writable.  dm-raid starts read-only and
    raid_resume clears mddev->ro: an LV by its permission, another dm device by a resume."""
    if not is_dm(arr):
        return f"mdadm --readwrite /dev/{arr.name}"
    lv = lvm_name(arr.dm_name)
    return f"lvchange -p rw {lv}" if lv else resume_cmd(arr)


# -- blocked tasks (snapshot stacks: mdtrace.engine.blocked) --------------------------------


def blocked_with(arr: ArrayRec, *waits: str) -> list[BlockedTask]:
    """The array's tasks blocked in one of ``waits`` (wait kinds), by tid."""
    return sorted((b for b in arr.blocked.values() if b.wait in waits), key=lambda b: b.tid)


def long_blocked(tasks: list[BlockedTask], config: EngineConfig) -> bool:
    """Some task is known to be blocked for ``task_blocked_s`` or more."""
    return any(b.blocked_s is not None and b.blocked_s >= config.task_blocked_s for b in tasks)


def task_list(tasks: list[BlockedTask], n: int = 4) -> str:
    """'dd (pid 812, D, blocked 300s) in raid5_make_request [raid456] <- ...; ...'."""
    parts = [f"{b.label()} in {b.stack(3)}" for b in tasks[:n]]
    more = f" and {len(tasks) - n} more" if len(tasks) > n else ""
    return "; ".join(parts) + more


def task_details(tasks: list[BlockedTask]) -> list[dict[str, object]]:
    return [{"tid": b.tid, "comm": b.comm, "state": b.state, "blocked_s": b.blocked_s,
             "wait": b.wait, "frame": b.wait_frame, "stack": b.stack(8)} for b in tasks]


def daemon_dead(arr: ArrayRec) -> str:
    """'' or why the array's md daemon (raid1d/raid5d/raid10d) cannot run: killed in an oops
    (F11), or absent from /proc on a level that has one."""
    d = arr.thread_died
    if d is not None and d.daemon:
        return f"its md daemon {d.thread} died in a kernel {d.text!r} (F11)"
    if arr.threads is not None and arr.level in ("raid1", "raid4", "raid5", "raid6", "raid10") \
            and not any(n.partition("_")[2].startswith("raid") for n in arr.threads):
        return "no md daemon thread (mdX_raidN) is alive in /proc"
    return ""


def sync_thread_of(arr: ArrayRec) -> tuple[str, int] | None:
    """(name, tid) of the array's sync thread alive in /proc, if seen."""
    for name, tid in (arr.threads or {}).items():
        if name.partition("_")[2] in ("resync", "reshape", "recovery", "recover", "check",
                                      "repair"):
            return name, tid
    return None
