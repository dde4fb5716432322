"""The sync thread's lifetime (md_register_thread, md_do_sync, MD_RECOVERY_DONE,
md_reap_sync_thread) as a pure transition function.

It tolerates joining mid-stream: the first state word seen places the array directly.
Flag tests use plain ints: IntFlag's ``&`` costs a microsecond, and this runs on every
md_check_recovery event.
"""

from __future__ import annotations

from mdtrace.engine.model import Lifecycle
from mdtrace.kernel.flags import Recovery

_DONE = int(Recovery.DONE)
_RUNNING = int(Recovery.RUNNING)
_NEEDED = int(Recovery.NEEDED)
_SYNCING, _DONE_L, _REAPED = Lifecycle.SYNCING, Lifecycle.DONE, Lifecycle.REAPED


def from_state(current: Lifecycle, recovery: int, sync_thread: bool) -> Lifecycle:
    """Place an array from a state word read by the daemon (md_check_recovery)."""
    if sync_thread:
        if recovery & _DONE:
            return _DONE_L
        if recovery & _RUNNING:
            return current if current is _SYNCING or current is _DONE_L else Lifecycle.RUNNING
        return current
    if not recovery & _RUNNING:
        if recovery & _NEEDED:
            return Lifecycle.NEEDED
        return _REAPED if current is _REAPED else Lifecycle.IDLE
    return current


# the kinds after which an array's lifecycle may have moved: those :func:`on_event` moves
# it on, and array_create (a new generation: engine/core.py).  Other events only update the
# state words.  The report's timeline recorder reads the lifecycle after these.
KINDS = frozenset({"check_recovery_enter", "check_recovery_exit", "thread_register",
                   "do_sync_enter", "do_sync_exit", "reap", "array_stop", "array_create"})


def on_event(current: Lifecycle, kind: str, recovery: int, sync_thread: bool,
             is_sync_thread_event: bool = True) -> Lifecycle:
    """Transition for an event of ``kind`` given the state word it carried."""
    if kind == "check_recovery_enter" or kind == "check_recovery_exit":
        return from_state(current, recovery, sync_thread)
    if kind == "thread_register" and is_sync_thread_event:
        return Lifecycle.RUNNING
    if kind == "do_sync_enter":
        return Lifecycle.SYNCING
    if kind == "do_sync_exit":
        return _DONE_L if recovery & _DONE else current
    if kind == "reap":
        return _REAPED
    if kind == "array_stop":
        return Lifecycle.STOPPED
    return current
