"""Event model: what every source (live BPF, replay, sysfs poller, synthetic scenario) delivers.

One :class:`Event` per probe hit worth reporting.  Events are msgspec Structs so that the trace
reader can decode millions of them per second; on disk the field names are short (``rename``).

Every event carries *who* (cpu, pid, tid, comm), *which array* (``array``: the md name ``md0``
or the dm device name ``dm-3``; ``dm_name`` the LVM/dm name where known; ``mddev``: a per-trace
keyed hash of the ``struct mddev`` pointer, never the raw pointer) and the array state read in
the kernel at that moment (:class:`ArrayState`, raw kernel flag words).  ``rec``/``mdf`` on the
state are the *canonical* flag masks (mdtrace.kernel.flags.Recovery / MddevFlag), filled in by
:func:`canonicalise` from the trace's flag table; sources that produce raw words only leave them
at -1 and the trace reader / live source fills them.

Event kinds and their ``args`` (all optional unless stated):

=====================  =====================================================================
kind                   args
=====================  =====================================================================
check_recovery_enter   --  (md_check_recovery entry; daemon thread context)
check_recovery_exit    --  (state read at return)
do_sync_enter          thread: str (sync thread name), action: str
do_sync_exit           thread, action
reap                   mutex_owned: bool (caller owns reconfig_mutex), caller: str,
                       mutex_locked: bool (anyone owns it)
thread_register        name: str, caller: str (function that registered), sync: bool,
                       run: str (thread function, e.g. md_do_sync)
thread_unregister      name, caller, sync
start_reshape          caller: str, rc: int (return value, on the exit event if known),
                       phase ('enter'/'exit')
io_wait                sector, sectors, rw ('R'/'W'), wait_ns, done: bool, mode ('sleep'
                       for 6.7/6.8 wait_for_overlap, 'requeue' for 6.9+ STRIPE_WAIT_RESHAPE),
                       retries: int, reshape_progress, reshape_safe (sectors), io_id: str
io_stats               requests, slow, blocked, max_wait_ns  (periodic, per array)
dm_suspend_enter       dm_name, dm_dev, flags: int            (dm core: dm_suspend)
dm_suspend_exit        dm_name, dm_dev, rc: int
dm_resume_enter/exit   dm_name, dm_dev, rc
raid_target            hook ('presuspend','presuspend_undo','postsuspend','preresume',
                       'resume','message'), phase ('enter'/'exit'), argv: str (message text)
mddev_suspend          phase ('enter'/'exit'), rc
mddev_resume           phase
lock                   lock: str (class: reconfig_mutex, suspend_mutex, dm_suspend_lock,
                       open_mutex, ...), lock_id: str (hashed instance), op ('acquire',
                       'acquired', 'release', 'contend', 'trylock_fail')
wait_begin/wait_end    what ('sync_thread_stop', 'io_drain', 'reshape_progress',
                       'dm_suspend', 'sb_wait'), target: str (array or lock id being waited on)
array_create           level: str, kind ('md' / 'dm-raid')
array_stop             --
sync_action            action ('idle','frozen','resync','recover','check','repair','reshape'),
                       source ('sysfs', 'dm_message', 'mdadm')
progress               done: int (sectors), total: int, action: str, speed_kbs: int
sysfs_state            level, array_state, sync_action, degraded, raid_disks (sysfs poller),
                       ro: int, reshape_position: int, kind ('dm-raid' from dmsetup status);
                       from a snapshot also sync_completed (str: 'N / M', 'none',
                       'delayed'), suspend_lo, suspend_hi, dm_suspended: bool, threads:
                       {md thread name: tid} alive in /proc (the state's flags are the ones
                       sync_action implies)
probe_status           probe: str, attached: bool, reason: str, method ('kprobe','fentry',..)
lost                   count: int, probe: str, cause: str ('ringbuf' (perf/ring buffer
                       full; the default), 'kretprobe_missed', 'io_untracked', 'stale_slot':
                       sources/bcc_misses.py)
kernel_log             class ('bug','oops','panic','warning','hung_task','soft_lockup','md'),
                       text (first line), task, task_pid, rip, frames: list[str] (reliable
                       call-trace frames, innermost first), kmsg_us (the log's own time)
task_blocked           (a snapshot of /proc: ``mdtrace diagnose``) one task asleep in md/dm
                       code or tied to an array; pid/tid/comm on the event, ``array`` the
                       array it is tied to ('' unknown); state ('D','S','I','R'), wchan,
                       frames: list[str] (kernel stack, innermost first, 'fn [module]'),
                       stack_readable: bool, blocked_s: float | None (unknown), tie: str (how
                       the array was found: md thread name, open device, argument), rw
task_unblocked         (live re-scans: sources/snapshot/watch.py) a task reported blocked
                       before is not any more; pid/tid/comm, ``array`` as it was tied
=====================  =====================================================================
"""

from __future__ import annotations

from typing import Any

import msgspec

from mdtrace.kernel.flags import MAX_SECTOR, FlagTable, mddev_names, recovery_names

KINDS: tuple[str, ...] = (
    "check_recovery_enter", "check_recovery_exit", "do_sync_enter", "do_sync_exit", "reap",
    "thread_register", "thread_unregister", "start_reshape", "io_wait", "io_stats",
    "dm_suspend_enter", "dm_suspend_exit", "dm_resume_enter", "dm_resume_exit", "raid_target",
    "mddev_suspend", "mddev_resume", "lock", "wait_begin", "wait_end", "array_create",
    "array_stop", "sync_action", "progress", "sysfs_state", "probe_status", "lost",
    "kernel_log", "task_blocked", "task_unblocked",
)
KIND_SET = frozenset(KINDS)


class ArrayState(msgspec.Struct, omit_defaults=True, gc=False, rename={
    "recovery": "r", "flags": "f", "ro": "ro", "suspended": "su", "sync_thread": "st",
    "reshape_pos": "rp", "curr_resync": "cr", "resync_max": "rm", "level": "lv",
    "rec": "rc", "mdf": "fc",
}):
    """Array state read in the kernel (or sysfs) when the event happened.

    ``recovery``/``flags`` are raw kernel words; ``rec``/``mdf`` the canonical masks
    (-1 = not yet translated).  ``reshape_pos`` is None when no reshape is recorded
    (kernel MaxSector).  ``ro``: 0 read-write, 1 read-only, 2 auto-read-only.
    """

    recovery: int = 0
    flags: int = 0
    ro: int = 0
    suspended: int = 0
    sync_thread: bool = False
    reshape_pos: int | None = None
    curr_resync: int = 0
    resync_max: int = 0
    level: int | None = None
    rec: int = -1
    mdf: int = -1

    def recovery_names(self) -> list[str]:
        return recovery_names(self.rec) if self.rec >= 0 else []

    def flag_names(self) -> list[str]:
        return mddev_names(self.mdf) if self.mdf >= 0 else []


class Event(msgspec.Struct, omit_defaults=True, gc=False, rename={
    "ts": "t", "kind": "k", "cpu": "c", "pid": "p", "tid": "i", "comm": "m", "array": "a",
    "dm_name": "dn", "mddev": "md", "state": "s", "args": "x",
}):
    """One traced occurrence.  ``ts`` is CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns)."""

    ts: int
    kind: str
    array: str = ""
    cpu: int = 0
    pid: int = 0
    tid: int = 0
    comm: str = ""
    dm_name: str = ""
    mddev: str = ""
    state: ArrayState | None = None
    args: dict[str, Any] = {}

    def arg(self, name: str, default: Any = None) -> Any:
        return self.args.get(name, default)


def canonicalise(ev: Event, table: FlagTable) -> Event:
    """Fill the canonical flag masks of ``ev.state`` in place from the kernel's table."""
    st = ev.state
    if st is not None:
        if st.rec < 0:
            st.rec = table.recovery_canon(st.recovery)
        if st.mdf < 0:
            st.mdf = table.mddev_canon(st.flags)
    return ev


def reshape_pos_from_kernel(raw: int) -> int | None:
    """Kernel sector_t reshape_position -> None for MaxSector (no reshape recorded)."""
    return None if raw >= MAX_SECTOR else raw


def describe(ev: Event) -> dict[str, Any]:
    """Human/JSON-friendly dict of an event with decoded flag names (used by replay/report)."""
    out: dict[str, Any] = {
        "ts": ev.ts, "kind": ev.kind, "array": ev.array, "cpu": ev.cpu, "pid": ev.pid,
        "tid": ev.tid, "comm": ev.comm,
    }
    if ev.dm_name:
        out["dm_name"] = ev.dm_name
    if ev.state is not None:
        st = ev.state
        out["state"] = {
            "recovery_raw": st.recovery, "recovery": st.recovery_names(),
            "flags_raw": st.flags, "flags": st.flag_names(), "ro": st.ro,
            "suspended": st.suspended, "sync_thread": st.sync_thread,
            "reshape_pos": st.reshape_pos, "curr_resync": st.curr_resync,
        }
    if ev.args:
        out["args"] = dict(ev.args)
    return out
