"""IO blocked across the reshape position: per-array tracking and why the reshape can't move.

The BPF side reports only requests that stayed in raid5_make_request longer than its threshold
(and re-reports them while they stay), then once more with ``done`` when they leave.  A request
is identified by ``io_id`` (hashed mddev + sector); ``wait_ns`` is measured in the kernel.
"""

from __future__ import annotations

from mdtrace.engine.arrays import ArrayRec, IoWait
from mdtrace.events import Event
from mdtrace.kernel.flags import Recovery

_FROZEN, _WAIT, _INTR = int(Recovery.FROZEN), int(Recovery.WAIT), int(Recovery.INTR)

MAX_WAITS_PER_ARRAY = 4096
_U64_HALF = 1 << 63


def blocked_reason(arr: ArrayRec) -> str:
    """Why the reshape cannot progress right now ('' when it can).

    Mirrors the kernel's reshape_interrupted() (6.9+: !RUNNING || WAIT || INTR || FROZEN)
    plus read-only and suspended arrays, which stop the sync thread in every version.
    """
    rec = arr.recovery
    if arr.thread_died is not None and arr.thread_died.daemon:
        return "md_thread_dead"      # no stripe is handled again (F11)
    if arr.ro:
        return "read_only"
    if rec & _FROZEN:
        return "frozen"
    if rec & _WAIT:
        return "wait"
    if arr.dm_suspended:
        return "dm_suspended"
    if arr.suspended:
        return "suspended"
    if not arr.sync_thread:
        return "no_sync_thread"
    if rec & _INTR:
        return "interrupted"
    return ""


def io_key(ev: Event) -> str:
    a = ev.args
    return str(a.get("io_id") or f"{ev.tid}/{a.get('sector')}")


def on_io_wait(arr: ArrayRec, ev: Event) -> tuple[str, bool]:
    """Record one io_wait event; returns (io_id, done)."""
    a = ev.args
    io_id = io_key(ev)
    if a.get("done"):
        arr.io_waits.pop(io_id, None)
        return io_id, True
    wait_ns = int(a.get("wait_ns", 0))
    if wait_ns >= _U64_HALF:  # kernel-side unsigned underflow: treat as unknown
        wait_ns = 0
    w = arr.io_waits.get(io_id)
    if w is None:
        if len(arr.io_waits) < MAX_WAITS_PER_ARRAY:
            arr.io_waits[io_id] = IoWait(io_id, ev.ts - wait_ns, ev.ts, wait_ns,
                                         str(a.get("mode", "")), ev.tid, ev.comm,
                                         int(a.get("sector", 0)), int(a.get("sectors", 0)),
                                         str(a.get("rw", "")))
    else:
        w.last_ns, w.wait_ns = ev.ts, max(w.wait_ns, wait_ns)
    return io_id, False


def waited_ns(w: IoWait) -> int:
    return max(w.wait_ns, w.last_ns - w.first_ns)
