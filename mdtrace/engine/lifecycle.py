"""The sync thread's designed lifetime (seed steps 1-4) as a pure transition function.

It tolerates joining mid-stream: the first state word seen places the array directly.
"""

from __future__ import annotations

from mdtrace.engine.model import Lifecycle
from mdtrace.kernel.flags import Recovery


def from_state(current: Lifecycle, recovery: int, sync_thread: bool) -> Lifecycle:
    """Place an array from a state word read by the daemon (md_check_recovery)."""
    if recovery & Recovery.DONE and sync_thread:
        return Lifecycle.DONE
    if sync_thread and recovery & Recovery.RUNNING:
        return current if current in (Lifecycle.SYNCING, Lifecycle.DONE) else Lifecycle.RUNNING
    if not sync_thread and recovery & Recovery.NEEDED and not recovery & Recovery.RUNNING:
        return Lifecycle.NEEDED
    if not sync_thread and not recovery & Recovery.RUNNING:
        return Lifecycle.REAPED if current is Lifecycle.REAPED else Lifecycle.IDLE
    return current


def on_event(current: Lifecycle, kind: str, recovery: int, sync_thread: bool,
             is_sync_thread_event: bool = True) -> Lifecycle:
    """Transition for an event of ``kind`` given the state word it carried."""
    if kind == "thread_register" and is_sync_thread_event:
        return Lifecycle.RUNNING
    if kind == "do_sync_enter":
        return Lifecycle.SYNCING
    if kind == "do_sync_exit":
        return Lifecycle.DONE if recovery & Recovery.DONE else current
    if kind == "reap":
        return Lifecycle.REAPED
    if kind == "array_stop":
        return Lifecycle.STOPPED
    if kind in ("check_recovery_enter", "check_recovery_exit"):
        return from_state(current, recovery, sync_thread)
    return current
