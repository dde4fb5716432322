"""Detectors: one module per finding class (docs/engine.md).  Each exposes ``CODE`` and
``check(ctx)`` returning :class:`mdtrace.engine.detectors.base.Verdict` s (raise or clear by key).

- EVENT_DETECTORS run on events of TRIGGER_KINDS (per array, with the event);
- TICK_DETECTORS run every 100 ms of trace time per array (grace periods, thresholds);
- GRAPH_DETECTORS run on the lock-order graph (on new edges) and the wait-for graph (on ticks).
"""

from mdtrace.engine.detectors import (
    barrier,
    deadlock,
    lock_order,
    no_done,
    not_reaped,
    reap_mutex,
    register_outside,
    reshape_io,
    restart_reshape,
    sb_wait,
    stall,
    suspended_io,
    sync_stop,
    thread_dead,
)

EVENT_DETECTORS = (register_outside, reap_mutex, restart_reshape, reshape_io, thread_dead)
TRIGGER_KINDS = frozenset({"thread_register", "reap", "start_reshape", "io_wait",
                           "kernel_log"})
TICK_DETECTORS = (not_reaped, no_done, reshape_io, stall, sync_stop, sb_wait, barrier,
                  suspended_io)
GRAPH_DETECTORS = (lock_order, deadlock)
ALL = (not_reaped, no_done, register_outside, restart_reshape, reap_mutex, reshape_io,
       lock_order, deadlock, stall, thread_dead, sync_stop, sb_wait, barrier, suspended_io)
