"""Detectors: one module per finding class.  Each exposes ``CODE`` and ``check(ctx)`` where
``ctx`` is a :class:`mdtrace.detectors.base.Context`; it returns candidate findings (or keys to
clear).  Implemented so far: F1/F2 (not_reaped), F3 (no_done), F4 (register_outside),
F6 (reap_mutex), F7 (reshape_io).  F5, F8, F9, F10 are not implemented yet (docs/STATUS.md)."""

from mdtrace.detectors import no_done, not_reaped, reap_mutex, register_outside, reshape_io

EVENT_DETECTORS = (register_outside, reap_mutex, reshape_io)
TICK_DETECTORS = (not_reaped, no_done, reshape_io)
