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
check_recovery_enter   calls: int >= 1 (md_check_recovery entry; daemon thread context)
check_recovery_exit    calls (state read at return).  The BPF reports md_check_recovery
                       change-only: an enter when the state words differ from the last
                       reported enter, an exit likewise, else at most one exit per second
                       per array carrying the positions; ``calls`` is how many calls of
                       that kind on that array the event stands for (itself included)
                       since the previous reported event of its kind.  Absent (every
                       trace before change-only reporting): 1.  See :func:`calls`.
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
                       sync_action implies, unless state_source: 'kcore' or 'bpf' (its
                       fallback probe): the kernel's own words, with sb_flags (raw),
                       recovery_active, pending_writes,
                       active_io / writes_pending (counts, only where meaningful) and
                       active_io_mode / writes_pending_mode ('percpu', 'atomic', 'dead'))
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

import math
from typing import Annotated, Any, Optional

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

# Non-negative ints, checked by the decoder itself (C speed); upper bounds and the args are
# checked by :func:`check`, which the trace reader applies to every decoded event.
_Nat = Annotated[int, msgspec.Meta(ge=0)]


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

    recovery: _Nat = 0
    flags: _Nat = 0
    ro: _Nat = 0
    suspended: _Nat = 0
    sync_thread: bool = False
    # msgspec evaluates Struct annotations at runtime: `X | None` needs Python 3.10
    reshape_pos: Optional[_Nat] = None  # noqa: UP045
    curr_resync: _Nat = 0
    resync_max: _Nat = 0
    level: Optional[int] = None  # noqa: UP045
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

    ts: _Nat
    kind: str
    array: str = ""
    cpu: _Nat = 0
    pid: _Nat = 0
    tid: _Nat = 0
    comm: str = ""
    dm_name: str = ""
    mddev: str = ""
    state: Optional[ArrayState] = None  # noqa: UP045 (runtime annotation, see ArrayState)
    args: dict[str, Any] = {}

    def arg(self, name: str, default: Any = None) -> Any:
        return self.args.get(name, default)


def canonicalise(ev: Event, table: FlagTable, *, force: bool = False) -> Event:
    """Fill the canonical flag masks of ``ev.state`` in place from the kernel's table.

    ``force``: recompute them even if set.  The trace reader always does: a trace's raw
    words and its flag table are the truth, the decoded masks it may also store are not
    trusted (so every reading path -- replay, report, TUI -- decodes an event alike).
    """
    st = ev.state
    if st is not None:
        if force or st.rec < 0:
            st.rec = table.recovery_canon(st.recovery)
        if force or st.mdf < 0:
            st.mdf = table.mddev_canon(st.flags)
    return ev


# -- what a decoded event may hold (the reader's range checks) --------------------------------
_U64 = 1 << 64
_I64 = 1 << 63
MAX_NAME = 256          # array / dm / comm / mddev names (the kernel's are far shorter)
MAX_DEPTH = 16          # nesting of args values (the recorder writes at most 2)
MAX_SECONDS = 1e12      # a duration in seconds (blocked_s): ~31,700 years


def _uint(v: Any) -> bool:
    return type(v) is int and 0 <= v < _U64


def _sint(v: Any) -> bool:
    return type(v) is int and -_I64 <= v < _I64


def _text(v: Any) -> bool:
    return type(v) is str and "\x00" not in v


def _count(v: Any) -> bool:
    return type(v) is int and 1 <= v < _U64


def _flag(v: Any) -> bool:
    return type(v) is bool


def _secs(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v) and 0 <= v < MAX_SECONDS


def _texts(v: Any) -> bool:
    return type(v) is list and all(_text(x) for x in v)


def _tids(v: Any) -> bool:
    return type(v) is dict and all(_text(k) and _uint(x) for k, x in v.items())


def _opt(rule: Any) -> Any:
    def check(v: Any) -> bool:
        return v is None or rule(v)
    check.__name__ = rule.__name__
    return check


_RULE_WORDS = {"_uint": "a non-negative integer below 2**64",
               "_count": "a positive integer below 2**64", "_sint": "a 64-bit integer",
               "_text": "a string without NUL", "_flag": "true or false",
               "_secs": "a finite number of seconds >= 0", "_texts": "a list of strings",
               "_tids": "an object of thread name -> id"}
_S, _U, _I, _B = _text, _uint, _sint, _flag
_DM = {"dm_name": _S, "dm_dev": _S}
# kind -> arg -> rule; args not listed may hold any JSON (bounded nesting), None is allowed
# only where a source writes it for "unknown".
ARG_RULES: dict[str, dict[str, Any]] = {
    "check_recovery_enter": {"calls": _count},
    "check_recovery_exit": {"calls": _count},
    "do_sync_enter": {"thread": _S, "action": _S},
    "do_sync_exit": {"thread": _S, "action": _S},
    "reap": {"mutex_owned": _B, "mutex_locked": _B, "caller": _S},
    "thread_register": {"name": _S, "caller": _S, "sync": _B, "run": _S},
    "thread_unregister": {"name": _S, "caller": _S, "sync": _B, "run": _S},
    "start_reshape": {"caller": _S, "rc": _I, "phase": _S},
    "io_wait": {"sector": _U, "sectors": _U, "rw": _S, "wait_ns": _U, "done": _B,
                "mode": _S, "retries": _U, "reshape_progress": _opt(_U),
                "reshape_safe": _opt(_U), "io_id": _S},
    "io_stats": {"requests": _U, "slow": _U, "blocked": _U, "max_wait_ns": _U},
    "dm_suspend_enter": {**_DM, "flags": _U},
    "dm_suspend_exit": {**_DM, "rc": _I},
    "dm_resume_enter": {**_DM, "rc": _I},
    "dm_resume_exit": {**_DM, "rc": _I},
    "raid_target": {"hook": _S, "phase": _S, "argv": _S, "rc": _I},
    "mddev_suspend": {"phase": _S, "rc": _I},
    "mddev_resume": {"phase": _S, "rc": _I},
    "lock": {"lock": _S, "lock_id": _S, "op": _S},
    "wait_begin": {"what": _S, "target": _S},
    "wait_end": {"what": _S, "target": _S},
    "array_create": {"level": _S, "kind": _S},
    "sync_action": {"action": _S, "source": _S},
    "progress": {"done": _U, "total": _U, "action": _S, "speed_kbs": _opt(_U)},
    "sysfs_state": {"level": _S, "array_state": _S, "sync_action": _S, "degraded": _U,
                    "raid_disks": _U, "ro": _U, "reshape_position": _U, "kind": _S,
                    "sync_completed": _S, "suspend_lo": _U, "suspend_hi": _U,
                    "dm_suspended": _B, "threads": _tids, "source": _S,
                    "idle_threads": _texts,
                    # the kernel's own words (diagnose's kcore stage, sources/snapshot/kcore.py)
                    "state_source": _S, "sb_flags": _U, "recovery_active": _I,
                    "pending_writes": _I, "active_io": _I, "active_io_mode": _S,
                    "writes_pending": _I, "writes_pending_mode": _S},
    "probe_status": {"probe": _S, "attached": _B, "reason": _S, "method": _S},
    "lost": {"count": _U, "probe": _S, "cause": _S},
    "kernel_log": {"class": _S, "text": _S, "task": _S, "task_pid": _opt(_U), "rip": _S,
                   "frames": _texts, "kmsg_us": _opt(_U)},
    "task_blocked": {"state": _S, "wchan": _S, "frames": _texts, "stack_readable": _B,
                     "blocked_s": _opt(_secs), "tie": _S, "rw": _S},
}


def calls(ev: Event) -> int:
    """How many probe hits ``ev`` stands for: an md_check_recovery event's ``calls`` (the
    change-only BPF's count since the last reported event of its kind), 1 for any other
    event and for traces recorded before change-only reporting.  :func:`check` has made
    sure it is a positive int."""
    args = ev.args
    return args.get("calls", 1) if args and ev.kind in _COUNTED else 1


_COUNTED = frozenset({"check_recovery_enter", "check_recovery_exit"})


def _too_deep(v: Any) -> bool:
    """Whether ``v`` nests lists/objects deeper than :data:`MAX_DEPTH` (iterative)."""
    todo = [(v, 1)]
    while todo:
        x, d = todo.pop()
        if d > MAX_DEPTH:
            return True
        if type(x) is dict:
            todo.extend((y, d + 1) for y in x.values())
        elif type(x) is list:
            todo.extend((y, d + 1) for y in x)
    return False


def check(ev: Event) -> str | None:
    """What is wrong with a decoded event's values, or None when it is fit for the engine.

    The decoder has checked the types and that counts, times and sectors are >= 0; this
    checks the rest: upper bounds, NUL-free names, every known arg's type and range, and
    nesting.  Called by the trace reader on every event, so that the engine and renderers
    never meet a value they cannot handle (a bad value is a bad line, never a crash).
    """
    if ev.ts >= _I64:
        return f"time {ev.ts} out of range (below 2**63 ns)"
    if ev.cpu >= _U64 or ev.pid >= _U64 or ev.tid >= _U64:
        return "cpu/pid/tid out of range"
    a, d, c, m = ev.array, ev.dm_name, ev.comm, ev.mddev
    if len(a) > MAX_NAME or len(d) > MAX_NAME or len(c) > MAX_NAME or len(m) > MAX_NAME \
            or "\x00" in a + d + c + m:
        for name in ("array", "dm_name", "comm", "mddev"):
            v = getattr(ev, name)
            if v and (len(v) > MAX_NAME or "\x00" in v):
                return f"{name} {v[:40]!r} is not a name (NUL, or over {MAX_NAME} characters)"
    st = ev.state
    if st is not None and (st.recovery >= _U64 or st.flags >= _U64 or st.curr_resync >= _U64
                           or st.resync_max >= _U64 or st.ro >= _U64
                           or st.suspended >= _U64
                           or (st.reshape_pos is not None and st.reshape_pos >= _U64)
                           or (st.level is not None and not _sint(st.level))):
        return "array state value out of range (64-bit)"
    args = ev.args
    if args:
        rules = ARG_RULES.get(ev.kind)
        for key, v in args.items():
            rule = rules.get(key) if rules else None
            if rule is not None:
                if not rule(v):
                    return (f"{ev.kind} arg {key!r} = {_short(v)} is not "
                            f"{_RULE_WORDS.get(rule.__name__, 'valid')}")
            elif type(v) in (dict, list) and _too_deep(v):
                return f"{ev.kind} arg {key!r} nests deeper than {MAX_DEPTH} levels"
    return None


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


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
