"""The machine's state *now* as events: the source behind ``mdtrace diagnose``.

A hang that is already happening left no probe hits to trace; what shows it is the arrays'
sysfs / dmsetup state, the tasks asleep in md/dm code with their kernel stacks, and the kernel
log since boot.  :func:`collect` reads those (roots and the dmsetup / kernel-log providers are
injectable, so tests run on fixture trees) and turns them into ordinary events -- ``array_create``,
``sysfs_state``, ``progress``, ``kernel_log`` and ``task_blocked`` -- for the engine, which
classifies them like any other stream.  Nothing here decides what a hang *is*.

Read-only: it opens files under sys_root / proc_root, reads /dev/kmsg, and runs
``dmsetup status`` (an ioctl that reads).  The last, optional stage (``kernel_state``:
:func:`mdtrace.sources.snapshot.kcore.read_kernel_state`) reads each mddev's own words from
/proc/kcore with BTF offsets; they replace the sysfs approximation in ``sysfs_state``.
"""

from __future__ import annotations

import dataclasses
import platform
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdtrace.engine.blocked import fn, md_frames, wait_kind
from mdtrace.engine.detectors.base import lvm_name
from mdtrace.events import ArrayState, Event
from mdtrace.kernel.flags import FlagTable
from mdtrace.kernel.offsets import flag_table_for
from mdtrace.sources.snapshot import klog
from mdtrace.sources.snapshot.arrays import ArrayFacts, dm_raid_arrays, md_arrays, recovery_of
from mdtrace.sources.snapshot.kcore import KernelStateResult, MddevState
from mdtrace.sources.snapshot.tasks import TaskFacts, TaskScan, scan
from mdtrace.sources.sysfs import read_attr
from mdtrace.trace import TraceHeader

DmsetupStatus = Callable[[], tuple[str, str]]          # (text, why not)
KernelLog = Callable[[], tuple[klog.Records, str]]     # (records, why not)
KernelState = Callable[[Path, Path], KernelStateResult]  # (sys_root, proc_root) -> mddevs
NOT_READ = "kernel-internal state (the mddev's recovery word, suspended count, counters)"

_SYNC_THREAD = re.compile(r"^(md\d+|mdX)_(resync|reshape|recovery|recover|check|repair)$")
_DAEMON = re.compile(r"^(md\d+|mdX)_(raid\d+|multipath)$")
_LEVEL_MODULE = {"raid1": ("raid1",), "raid10": ("raid10",),
                 "raid4": ("raid456",), "raid5": ("raid456",), "raid6": ("raid456",)}
_PERSONALITY = {"raid1": "raid1", "raid10": "raid10", "raid456": "raid5"}


def run_dmsetup_status() -> tuple[str, str]:
    """``dmsetup status --target raid`` (needs root: the dm ioctl), and why it failed."""
    exe = shutil.which("dmsetup")
    if exe is None:
        return "", "dmsetup not installed"
    try:
        r = subprocess.run([exe, "status", "--target", "raid"], capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "", f"dmsetup status: {exc}"
    if r.returncode != 0:
        err = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        return "", f"dmsetup status: {err}"
    return r.stdout, ""


@dataclass
class Collected:
    """One snapshot: events in the order the engine wants them, and what could not be read."""

    now_ns: int
    kernel: str
    arrays: list[ArrayFacts]
    tasks: list[TaskFacts]
    events: list[Event]
    notes: list[str] = field(default_factory=list)
    stacks_readable: bool = True
    # the kcore stage: None when it did not run; per array name the "kernel_state" object
    kernel_state: KernelStateResult | None = None
    kernel_view: dict[str, dict[str, Any]] = field(default_factory=dict)
    # seconds per stage (sysfs, dmsetup, tasks, kernel_log, kernel_state): what a slow answer
    # spent its time on (`mdtrace diagnose` prints them with MDTRACE_TIMINGS=1)
    timings: dict[str, float] = field(default_factory=dict)


def _now_s(proc_root: Path) -> float | None:
    try:
        return float(read_attr(proc_root / "uptime").split()[0])
    except (IndexError, ValueError):
        return None


def _dev_names(a: ArrayFacts) -> set[str]:
    names = {f"/dev/{a.name}"}
    if a.dm_name:
        names |= {f"/dev/mapper/{a.dm_name}", a.dm_name}
        lv = lvm_name(a.dm_name)
        if lv:
            names |= {lv, f"/dev/{lv}"}
    return names


def tie(task: TaskFacts, arrays: list[ArrayFacts]) -> tuple[str, str]:
    """(array name, how) a task belongs to, best effort, '' when nothing tells:

    1. an md thread's name (``md0_raid5``; dm-raid's ``mdX_*`` only with one dm-raid array:
       md names threads after mdname(), 'mdX' without a gendisk);
    2. a block device it holds open (``/dev/md0``, ``/dev/dm-6``);
    3. an argument naming the array (``dmsetup suspend vg-lv``, ``lvchange vg/lv``);
    4. the only array its md frames can belong to (raid1 frames, one raid1 array).
    """
    m = re.match(r"^(md\d+|mdX)_", task.comm)
    by_name = {a.name: a for a in arrays}
    dm = [a for a in arrays if a.kind == "dm-raid"]
    if m:
        if m.group(1) in by_name:
            return m.group(1), "md thread name"
        if m.group(1) == "mdX" and len(dm) == 1:
            return dm[0].name, "dm-raid md thread (the only dm-raid array)"
        return "", ""
    for a in arrays:
        names = _dev_names(a)
        if any(d in names for d in task.devices):
            return a.name, f"holds {next(d for d in task.devices if d in names)} open"
    for a in arrays:
        names = _dev_names(a) | {a.name}
        if any(arg in names for arg in task.argv[1:]):
            return a.name, "named in its arguments"
    mods = {f.partition(" [")[2].rstrip("]") for f in task.frames or ()}
    cands = [a for a in arrays if a.kind == "md" and set(_LEVEL_MODULE.get(a.level, ())) & mods]
    if len(cands) == 1:
        return cands[0].name, f"the only {cands[0].level} array its stack can be in"
    if "dm_raid" in mods and len(dm) == 1:
        return dm[0].name, "the only dm-raid array its stack can be in"
    if mods & {"md_mod", "raid456", "raid1", "raid10"} and len(arrays) == 1:
        return arrays[0].name, "the only array"
    return "", ""


def _threads(a: ArrayFacts, tasks: list[TaskFacts], arrays: list[ArrayFacts]) -> dict[str, int]:
    """md threads of ``a`` alive in /proc: name -> tid."""
    out: dict[str, int] = {}
    dm = [x for x in arrays if x.kind == "dm-raid"]
    prefix = f"{a.name}_" if a.kind == "md" else ("mdX_" if len(dm) == 1 else None)
    if prefix is None:
        return out
    for t in tasks:
        if t.comm.startswith(prefix) and t.md_thread:
            out.setdefault(t.comm, t.tid)
    return out


def _kernel_args(k: MddevState, source: str) -> dict[str, Any]:
    """The kernel's counters as sysfs_state args (events.py ARG_RULES); state_source says
    which reader got them ('kcore', 'bpf': the same words, kernel_state.py)."""
    out: dict[str, Any] = {"state_source": "kcore" if source == "/proc/kcore" else "bpf",
                           "sb_flags": k.sb_flags}
    for name in ("recovery_active", "pending_writes"):
        if getattr(k, name) is not None:
            out[name] = getattr(k, name)
    for name in ("active_io", "writes_pending"):
        ref = getattr(k, name)
        if ref is not None:
            out[f"{name}_mode"] = ref.mode
            if ref.count is not None:
                out[name] = ref.count
    return out


def _array_events(a: ArrayFacts, ts: int, threads: dict[str, int], sync_thread: bool,
                  kstate: MddevState | None = None,
                  table: FlagTable | None = None, source: str = "/proc/kcore",
                  idle_threads: tuple[str, ...] = ()) -> list[Event]:
    reshape = a.reshape_position is not None
    rec = recovery_of(a.sync_action, reshape)
    st = ArrayState(ro=a.ro, sync_thread=sync_thread, reshape_pos=a.reshape_position,
                    curr_resync=a.done or 0, resync_max=a.total or 0, rec=rec, mdf=0)
    if kstate is not None and table is not None:
        # the kernel's own words replace what sysfs let us infer
        st = ArrayState(recovery=kstate.recovery, flags=kstate.flags, ro=max(kstate.ro, 0),
                        suspended=max(kstate.suspended, 0), sync_thread=kstate.sync_thread,
                        reshape_pos=kstate.reshape_position, curr_resync=kstate.curr_resync,
                        resync_max=kstate.resync_max_sectors, level=kstate.level,
                        rec=table.recovery_canon(kstate.recovery),
                        mdf=table.mddev_canon(kstate.flags))
    args: dict[str, Any] = {"level": a.level, "array_state": a.array_state,
                            "sync_action": a.sync_action, "ro": a.ro, "kind": a.kind,
                            "sync_completed": a.sync_completed, "threads": threads,
                            "idle_threads": list(idle_threads), "source": "snapshot"}
    for k in ("degraded", "raid_disks", "reshape_position", "suspend_lo", "suspend_hi",
              "dm_suspended"):
        v = getattr(a, k)
        if v is not None:
            args[k] = v
    if kstate is not None and table is not None:
        args.update(_kernel_args(kstate, source))
    evs = [Event(ts=ts, kind="array_create", array=a.name, dm_name=a.dm_name,
                 args={"kind": a.kind, "level": a.level, "source": "snapshot"}),
           Event(ts=ts, kind="sysfs_state", array=a.name, dm_name=a.dm_name, state=st,
                 args=args)]
    if a.done is not None and a.total is not None:
        evs.append(Event(ts=ts, kind="progress", array=a.name, dm_name=a.dm_name, args={
            "done": a.done, "total": a.total, "action": a.sync_action, "speed_kbs": 0}))
    return evs


def _rw(frames: tuple[str, ...]) -> str:
    names = " ".join(frames)
    if "write" in names:
        return "W"
    return "R" if "read" in names else ""


# 6.9+ raid5_make_request's log line each time it refuses IO across a reshape that cannot
# move (STRIPE_WAIT_RESHAPE; pr_err_ratelimited: a burst of 10 per 5 s while it goes on)
_ACROSS = "io across reshape position while reshape can't make progress"
REQUEUE_FRESH_S = 10.0   # the series must have gone on until this close to now
REQUEUE_GAP_S = 6.0      # lines further apart than this start a new series (ratelimit: 5 s)


def _retry_stack(frames: tuple[str, ...]) -> bool:
    """A running task's stack that can be one lap of md_handle_request's retry: no known wait,
    or any frame on md's submit path (md_handle_request, raid5_make_request and what they
    call)."""
    return wait_kind(frames)[0] == "" or _on_submit_path(frames)


def _on_submit_path(frames: tuple[str, ...]) -> bool:
    return any(fn(f) in ("raid5_make_request", "md_handle_request") for f in frames)


def requeue_series(records: klog.Records, now_s: float) -> dict[str, Any] | None:
    """The current series of 'io across reshape position' lines: {first_s, last_s, lines},
    or None when the last one is older than REQUEUE_FRESH_S (nothing is being refused now)."""
    times = [us / 1e6 for us, text in records if _ACROSS in text]
    if not times or now_s - times[-1] > REQUEUE_FRESH_S:
        return None
    first = len(times) - 1
    while first > 0 and times[first] - times[first - 1] <= REQUEUE_GAP_S:
        first -= 1
    return {"first_s": round(times[first], 3), "last_s": round(times[-1], 3),
            "lines": len(times) - first}


def _task_event(t: TaskFacts, ts: int, array: str, how: str, dm_name: str,
                members: tuple[str, ...] = (), requeue: dict[str, Any] | None = None) -> Event:
    args: dict[str, Any] = {
        "state": t.state, "wchan": t.wchan, "frames": list(t.frames or ()),
        "stack_readable": t.frames is not None, "blocked_s": t.blocked_s, "tie": how,
        "rw": _rw(t.frames or ()), "argv": list(t.argv[:8])}
    if t.timed_wait:
        args["timed_wait"] = t.timed_wait
    if requeue:
        args["requeue"] = requeue
    if members:
        # the array's member disks suspended in dm now (what its own IO may queue behind)
        args["suspended_members"] = list(members)
    return Event(ts=ts, kind="task_blocked", array=array, dm_name=dm_name, pid=t.pid,
                 tid=t.tid, comm=t.comm, args=args)


def collect(sys_root: Path | str = "/sys", proc_root: Path | str = "/proc", *,
            dmsetup: DmsetupStatus | None = run_dmsetup_status,
            kernel_log: KernelLog | None = klog.read_kmsg,
            kernel: str | None = None,
            kernel_state: KernelState | None = None) -> Collected:
    """Read everything once, cheapest first (sysfs, dmsetup, /proc, the kernel log, then the
    kernel's own mddev state when ``kernel_state`` is given: kcore.read_kernel_state)."""
    sys_root, proc_root = Path(sys_root), Path(proc_root)
    notes: list[str] = []
    timings: dict[str, float] = {}
    lap_at = [time.monotonic()]

    def lap(stage: str) -> None:
        t1 = time.monotonic()
        timings[stage] = round(t1 - lap_at[0], 3)
        lap_at[0] = t1

    now_s = _now_s(proc_root)
    live = proc_root == Path("/proc")
    if now_s is None:
        now_s = time.monotonic() if live else 0.0
    ts = int(now_s * 1e9)
    if kernel is None:
        kernel = read_attr(proc_root / "sys" / "kernel" / "osrelease") or (
            platform.release() if live else "")
    arrays = md_arrays(sys_root)
    lap("sysfs")
    if dmsetup is not None:
        text, why = dmsetup()
        has_dm = any((sys_root / "block").glob("dm-*")) if (sys_root / "block").is_dir() \
            else False
        if why and has_dm:
            notes.append(f"dm-raid arrays not examined ({why})")
        arrays += dm_raid_arrays(sys_root, text)
    lap("dmsetup")
    ts_scan: TaskScan = scan(proc_root, now_s)
    lap("tasks")
    tasks = ts_scan.tasks
    stacks_readable = not (ts_scan.stacks_unreadable and ts_scan.seen)
    if not stacks_readable:
        notes.append(f"kernel stacks not readable ({ts_scan.stacks_unreadable} of "
                     f"{ts_scan.seen} tasks; /proc/PID/stack needs root with CAP_SYS_ADMIN): "
                     "blocked tasks are judged from their state and wchan only")
    if tasks and ts_scan.sched_unreadable == len([t for t in tasks if t.state != "R"]):
        notes.append("how long tasks have been blocked is unknown (no /proc/PID/sched)")
    records: klog.Records = []
    if kernel_log is not None:
        records, why = kernel_log()
        if why:
            notes.append(f"kernel log not read ({why}): an md thread killed by an oops "
                         "(F11) cannot be diagnosed")
    lap("kernel_log")
    events: list[Event] = []
    dm_of = {a.name: a.dm_name for a in arrays}
    members_of = {a.name: a.suspended_members for a in arrays}
    kres, kview = _kernel_stage(kernel_state, sys_root, proc_root, arrays, notes)
    lap("kernel_state")
    if kres is not None:
        timings.update({f"kernel_state.{k}": v for k, v in kres.timings.items()})
    kby = kres.by_name() if kres is not None and kres.ok else {}
    by_tid = {t.tid: t for t in tasks}
    for a in arrays:
        threads = _threads(a, tasks, arrays)
        idle_threads = tuple(sorted(n for n, tid in threads.items()
                                    if tid in by_tid and by_tid[tid].idle))
        sync = any(_SYNC_THREAD.match(n) for n in threads)
        if a.kind == "dm-raid" and not threads:
            # mdX_* threads of several dm-raid arrays cannot be told apart: assume alive
            sync = any(_SYNC_THREAD.match(t.comm) for t in tasks if t.comm.startswith("mdX_"))
        events += _array_events(a, ts, threads, sync, kby.get(a.name),
                                kres.table if kres is not None else None,
                                kres.source if kres is not None else "", idle_threads)
    events += klog.events(records)
    lap("events")
    series = requeue_series(records, now_s)
    for t in tasks:
        if not t.blocked:
            continue                 # an md/dm thread idle, kept only as alive
        array, how = tie(t, arrays)
        requeue = None
        if t.state == "R" and (t.spinning or _retry_stack(t.frames or ())):
            # running, its stack (if caught) in no known wait: e.g. 6.12.117's retried read
            # caught in raid5_make_request -> md_account_bio -> bio_alloc_clone (measured),
            # or passing through a wait's function on the submit path: its retried write
            # caught in md_write_start <- raid5_make_request (measured), which a running
            # task is not waiting in (that wait sleeps in D)
            # a running task with an array open is a blocked IO only with the kernel's word
            # for it: its array reshaping (a position) and the refusals logged until now
            # (6.9+ md_handle_request re-submits the refused bio in a loop: 41425f96d7aa)
            af = next((x for x in arrays if x.name == array), None)
            if series is None or af is None or af.reshape_position is None and af.kind == "md":
                if t.spinning or _on_submit_path(t.frames or ()):
                    continue     # an IO being submitted, nothing refused: not blocked
            else:
                requeue = series
            if requeue is not None:
                t = dataclasses.replace(t, blocked_s=round(max(now_s - requeue["first_s"],
                                                               0.0), 1))
        if not array and not md_frames(t.frames or (t.wchan,)):
            continue                 # a D task outside md/dm that nothing ties to an array
        events.append(_task_event(t, ts, array, how, dm_of.get(array, ""),
                                  members_of.get(array, ()), requeue))
    if not arrays:
        driver = "" if (proc_root / "mdstat").exists() else " (no md driver loaded: no " \
            "/proc/mdstat)"
        notes.insert(0, f"no md or dm-raid arrays on this host{driver}: nothing to diagnose")
    return Collected(now_ns=ts, kernel=kernel, arrays=arrays, tasks=tasks, events=events,
                     notes=notes, stacks_readable=stacks_readable, kernel_state=kres,
                     kernel_view=kview, timings=timings)


def _kernel_stage(reader: KernelState | None, sys_root: Path, proc_root: Path,
                  arrays: list[ArrayFacts], notes: list[str],
                  ) -> tuple[KernelStateResult | None, dict[str, dict[str, Any]]]:
    """Run the kcore stage (never raises); one note when it did not run or read nothing,
    and per array the JSON "kernel_state" object (or why it is absent)."""
    why = "not requested (--no-kernel-state)"
    res: KernelStateResult | None = None
    t0 = time.monotonic()
    if reader is not None:
        try:
            res = reader(sys_root, proc_root)
        except Exception as exc:  # noqa: BLE001 - optional stage: keep the rest of the answer
            res = KernelStateResult(reason=f"the kernel state reader failed ({exc!r}; a bug, "
                                    "please report)")
        why = res.reason
    took = round(time.monotonic() - t0, 3)     # the BTF parse dominates: the lead's TCG figure
    view: dict[str, dict[str, Any]] = {}
    if res is None or not res.ok or res.table is None:
        notes.append(f"{NOT_READ} was not read: {why}; this diagnosis is from sysfs, "
                     "dmsetup, kernel stacks and the kernel log (DONE-not-reaped, F1/F2, and "
                     "leaked counters are not diagnosed)")
        for a in arrays:
            view[a.name] = {"read": False, "reason": why, "read_s": took}
        return res, view
    by = res.by_name()
    for a in arrays:
        k = by.get(a.name)
        view[a.name] = k.to_json(res.table, res.sb_names, res.source) if k is not None else {
            "read": False, "reason": f"no mddev of this name seen by {res.source}"}
        view[a.name]["read_s"] = took
    if res.fallback_from:
        notes.append(f"kernel state read through the {res.source}: {res.fallback_from}")
    if res.stopped:
        notes.append(f"kernel state partly read: {res.stopped}")
    return res, view


class SnapshotSource:
    """:class:`mdtrace.sources.base.Source` over one :func:`collect` (it ends after it)."""

    name = "snapshot"

    def __init__(self, collected: Collected) -> None:
        self.collected = collected
        ks = collected.kernel_state
        table = ks.table if ks is not None and ks.table is not None else \
            flag_table_for(collected.kernel or "6.1")
        self.header = TraceHeader(kernel=collected.kernel or "unknown", source="snapshot",
                                  flag_tables=table,
                                  meta={"mode": "one-shot snapshot (no BPF)",
                                        "kernel_state": collected.kernel_view})

    def events(self, stop: threading.Event) -> Iterator[Event]:
        for ev in self.collected.events:
            if stop.is_set():
                return
            yield ev

    def health(self) -> dict[str, Any]:
        return {"mode": "snapshot", "lost": 0, "probes": {}, "notes": self.collected.notes}

    def close(self) -> None:
        pass


__all__ = ["Collected", "KernelState", "SnapshotSource", "collect", "run_dmsetup_status",
           "tie"]
