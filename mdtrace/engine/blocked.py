"""Blocked tasks (``task_blocked`` events) as facts: what a kernel stack says a task waits for.

A one-shot snapshot (``mdtrace diagnose``) sees a hang only as tasks asleep in md/dm code.  The
innermost md/dm/raid frame of a stack names the wait (frames above it are the scheduler and
wait primitives); this module turns it into a :class:`BlockedTask` with a ``wait`` kind the
engine feeds into its IO-wait table and wait-for graph and the detectors (F7, F9, F12-F15)
judge.  Function names are those of 6.1 and 6.12 (``/proc/PID/stack``, hung-task reports):

- ``raid5_make_request`` innermost: the IO sleeps in raid5's own loop, i.e. on
  ``wait_for_overlap`` for the reshape to pass its sector (6.1 schedule(), 6.3-6.8
  STRIPE_SCHEDULE_AND_RETRY; 6.9+ retries the same way for md) or, briefly, on an overlapping
  bio.  Waiting for a free stripe shows ``raid5_get_active_stripe`` innermost instead.
- ``stop_sync_thread`` / ``md_frozen_sync_thread`` / ``idle_sync_thread`` (6.7+) and
  ``md_unregister_thread`` -> ``kthread_stop`` (6.1 md_reap_sync_thread): a stop waiting for
  the sync thread to exit.
- ``md_write_start``: a writer on ``sb_wait`` until MD_SB_CHANGE_PENDING is cleared by the md
  daemon's md_update_sb.
- raid1/raid10 ``wait_barrier`` / ``_wait_barrier`` / ``wait_read_barrier`` /
  ``raise_barrier`` / ``freeze_array``.
- ``md_handle_request``: a bio parked while is_suspended() (mddev suspended, or a write inside
  suspend_lo..suspend_hi).
- ``mddev_suspend`` (waits for active_io to drain) and dm's ``dm_wait_for_completion`` /
  ``__dm_suspend`` (dm_suspend waiting for in-flight IO).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mdtrace.events import Event

MD_MODULES = frozenset({"md_mod", "raid456", "raid1", "raid10", "raid0", "linear",
                        "multipath", "faulty", "dm_raid", "dm_mod"})
_MD_NAME = re.compile(r"^_{0,2}(md|mddev|dm|raid\d*|r5\w*|r10\w*|r1\w*)_")
_MD_FUNCS = frozenset({"stop_sync_thread", "idle_sync_thread", "frozen_sync_thread",
                       "wait_barrier", "_wait_barrier", "wait_read_barrier", "raise_barrier",
                       "freeze_array", "action_store", "array_state_store", "level_store",
                       "suspend_lo_store", "suspend_hi_store", "handle_stripe",
                       "reshape_request", "sync_request", "resync_info_update"})
# frames of an idle md/dm thread: asleep waiting for work, not blocked; dm_wait_event is
# dmeventd's DM_DEV_WAIT ioctl waiting for the next dm event (seen on 6.1 with an lvm raid LV)
_IDLE = frozenset({"md_thread", "dm_wq_work", "do_work", "dm_wait_event"})

# innermost md/dm frame (suffixes such as .cold / .isra.0 stripped) -> wait kind
_WAITS: dict[str, str] = {
    "raid5_make_request": "reshape_io",
    "raid5_get_active_stripe": "stripe",
    "__raid5_get_active_stripe": "stripe",
    "stop_sync_thread": "sync_stop",
    "md_frozen_sync_thread": "sync_stop",
    "idle_sync_thread": "sync_stop",
    "frozen_sync_thread": "sync_stop",
    "md_unregister_thread": "sync_stop",
    "md_reap_sync_thread": "sync_stop",
    "md_write_start": "sb_wait",
    "wait_barrier": "barrier",
    "_wait_barrier": "barrier",
    "wait_read_barrier": "barrier",
    "raise_barrier": "barrier",
    "freeze_array": "barrier",
    "md_handle_request": "suspended_io",
    "mddev_suspend": "io_drain",
    "dm_wait_for_completion": "io_drain",
    "__dm_suspend": "io_drain",
    "dm_suspend": "io_drain",
    "md_do_sync": "sync_thread",
}
WAIT_TEXT = {
    "reshape_io": "IO in raid5_make_request waiting for the reshape to pass its sector",
    "stripe": "IO waiting for a free stripe (raid5_get_active_stripe)",
    "sync_stop": "waiting for the sync thread to stop",
    "sb_wait": "writer waiting in md_write_start for the superblock update (sb_wait)",
    "barrier": "raid1/raid10 barrier wait",
    "suspended_io": "IO parked in md_handle_request while the array is suspended",
    "io_drain": "suspend waiting for in-flight IO to drain",
    "sync_thread": "sync thread waiting inside md_do_sync",
    "mutex": "waiting for a mutex",
    "": "not recognised",
}
# frames showing the task is suspending the array (it is the one that resumes it)
_SUSPENDING = {"dm_suspend": "dm_suspend", "__dm_suspend": "dm_suspend",
               "raid_presuspend": "dm_suspend", "raid_postsuspend": "dm_suspend",
               "mddev_suspend": "mddev_suspend", "mddev_suspend_and_lock": "mddev_suspend",
               "suspend_lo_store": "mddev_suspend", "suspend_hi_store": "mddev_suspend"}
_MUTEX = ("__mutex_lock", "mutex_lock", "__mutex_lock_slowpath", "mutex_lock_interruptible",
          "mutex_lock_nested")
# raid1/raid10 barrier roles: who holds it (raise/freeze) and who waits for it
BARRIER_HOLDERS = frozenset({"raise_barrier", "freeze_array"})


def fn(frame: str) -> str:
    """'raid5_make_request.cold [raid456]' -> 'raid5_make_request'."""
    return frame.split(" ", 1)[0].split(".", 1)[0]


def is_md_frame(frame: str) -> bool:
    """A frame of md, a raid personality, dm core or dm-raid (module tag, else its name:
    a built-in md has no module tag)."""
    name, _, mod = frame.partition(" [")
    if mod:
        return mod.rstrip("]") in MD_MODULES
    base = fn(name)
    return base in _MD_FUNCS or bool(_MD_NAME.match(base))


def md_frames(frames: tuple[str, ...] | list[str]) -> list[str]:
    return [f for f in frames if is_md_frame(f)]


def innermost_md(frames: tuple[str, ...] | list[str]) -> str:
    """The innermost md/dm frame's function name ('' when none)."""
    for f in frames:
        if is_md_frame(f):
            return fn(f)
    return ""


def idle(frames: tuple[str, ...] | list[str]) -> bool:
    """An md/dm thread asleep waiting for work (md_thread's wait, a dm workqueue)."""
    return innermost_md(frames) in _IDLE


def wait_kind(frames: tuple[str, ...] | list[str]) -> tuple[str, str]:
    """(wait kind, the frame that names it) of a kernel stack, innermost first.

    Only the innermost md/dm frame decides (an unknown one is not guessed past: an outer
    md_handle_request is on every md IO path).  A mutex primitive inside it makes the wait
    a lock wait whatever the function (action_store on reconfig_mutex, dm_suspend on
    suspend_lock)."""
    seen_mutex = False
    for f in frames:
        name = fn(f)
        if name in _MUTEX:
            seen_mutex = True
        if not is_md_frame(f):
            continue
        if seen_mutex:
            return "mutex", name
        return _WAITS.get(name, ""), name
    return "", ""


def suspending(frames: tuple[str, ...] | list[str]) -> str:
    """'dm_suspend' / 'mddev_suspend' when the task is inside a suspend of an array."""
    for f in frames:
        what = _SUSPENDING.get(fn(f))
        if what:
            return what
    return ""


@dataclass
class BlockedTask:
    """One task seen blocked in md/dm code (or tied to an array and in D state)."""

    tid: int
    pid: int
    comm: str
    state: str                 # /proc stat state: D, S, I, R
    wchan: str
    frames: tuple[str, ...]    # innermost first; () when the stack was unreadable
    blocked_s: float | None    # None: unknown
    array: str                 # the array it is tied to ('' unknown)
    tie: str                   # how: 'md thread name', 'open /dev/md0', 'argument', ...
    wait: str                  # wait kind (WAIT_TEXT), '' when not recognised
    wait_frame: str            # the frame that named it
    suspending: str            # 'dm_suspend' / 'mddev_suspend' / ''
    since_ns: int              # now - blocked (the snapshot time when unknown)
    event: Event

    @property
    def what(self) -> str:
        return WAIT_TEXT.get(self.wait, self.wait)

    def stack(self, n: int = 6) -> str:
        """'raid5_make_request [raid456] <- md_handle_request [md_mod] <- ...': md frames
        first-to-last, innermost first."""
        shown = md_frames(self.frames)[:n]
        return " <- ".join(shown) or self.wchan or "?"

    @property
    def timed_wait(self) -> str:
        """'' or 'submit_bio_wait, woken every 5 s': blocked_s is since its last wake-up."""
        return str(self.event.args.get("timed_wait") or "")

    def label(self) -> str:
        t = "unknown time" if self.blocked_s is None else f"{self.blocked_s:.0f}s"
        if self.timed_wait and self.blocked_s is not None:
            t = f"{t} since its last timed wake-up ({self.timed_wait}: the IO may be older)"
        return f"{self.comm} (pid {self.tid}, {self.state}, blocked {t})"


def from_event(ev: Event) -> BlockedTask:
    """The engine's record of a ``task_blocked`` event (pure)."""
    a = ev.args
    raw = a.get("frames")
    frames = tuple(str(f) for f in raw) if isinstance(raw, list) else ()
    wchan = str(a.get("wchan") or "")
    kind, frame = wait_kind(frames or ((wchan,) if wchan else ()))
    if a.get("requeue"):
        # a running task whose IO the kernel log shows refused across the reshape and
        # retried (6.9+: sources/snapshot requeue_series): the reshape wait, busy form
        kind, frame = "reshape_io", "raid5_make_request (refused and retried)"
    blocked = a.get("blocked_s")
    blocked_s = float(blocked) if isinstance(blocked, (int, float)) else None
    since = ev.ts - int(blocked_s * 1e9) if blocked_s is not None else ev.ts
    return BlockedTask(
        tid=ev.tid, pid=ev.pid, comm=ev.comm, state=str(a.get("state", "")), wchan=wchan,
        frames=frames, blocked_s=blocked_s, array=ev.array, tie=str(a.get("tie", "")),
        wait=kind, wait_frame=frame, since_ns=max(since, 0),
        suspending="" if kind == "mutex" else suspending(frames),
        event=ev)


def task_io_id(tid: int) -> str:
    """The io_id of a blocked task's IO as a snapshot saw it (no sector known)."""
    return f"task:{tid}"


def is_task_io(io_id: str) -> bool:
    return io_id.startswith("task:")


def io_wait_event(bt: BlockedTask) -> Event:
    """A task blocked in raid5_make_request as the ``io_wait`` the BPF probe would report,
    so F7 and the wait-for graph judge it by the same rule (sector unknown: 0 sectors)."""
    ev = bt.event
    rw = str(ev.args.get("rw", ""))
    wait_ns = int(bt.blocked_s * 1e9) if bt.blocked_s is not None else 0
    return Event(ts=ev.ts, kind="io_wait", array=bt.array, pid=bt.pid, tid=bt.tid,
                 comm=bt.comm, dm_name=ev.dm_name,
                 args={"io_id": task_io_id(bt.tid), "sector": 0, "sectors": 0, "rw": rw,
                       "wait_ns": wait_ns, "done": False,
                       "mode": "requeue" if ev.args.get("requeue") else "stack"})
