"""When would a live `mdtrace run` have raised a finding?  Measured on a recorded trace.

The engine is fed the trace's events in order, with ``advance()`` ticks every ``tick_s`` of trace
time in between (what the live daemon's timer does), so the first tick or event that returns the
finding is the moment it would have been flagged live.  For F7 the IO's own start comes from the
trace too (``io_wait`` events carry ``wait_ns``: start = ts - wait_ns; the finding's
``start_ns`` is that start for the very IO it reports), so the latency needs no clock shared
with anything outside the trace.  Other slow IOs of the same array (a udev probe that waited a
second and completed) must not count: only the reported IO's start does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mdtrace.engine.model import Finding


@dataclass(frozen=True)
class Detection:
    code: str
    array: str
    detected_ns: int           # trace time (CLOCK_MONOTONIC of the traced machine)
    io_start_ns: int | None    # start of the blocked IO the finding is about, if known
    threshold_s: float         # the engine's io_wait_s

    @property
    def latency_s(self) -> float | None:
        if self.io_start_ns is None:
            return None
        return (self.detected_ns - self.io_start_ns) / 1e9


def first_detection(trace: str | os.PathLike[str], code: str = "F7",
                    tick_s: float = 0.25) -> Detection | None:
    """The first time ``code`` is raised when replaying ``trace`` like a live daemon."""
    from mdtrace.config import EngineConfig
    from mdtrace.engine.core import Engine
    from mdtrace.trace import TraceReader

    reader = TraceReader(trace)
    cfg = EngineConfig()
    eng = Engine(cfg, mode="replay", kernel=reader.header.kernel)
    tick = int(tick_s * 1e9)
    io_start: dict[str, int] = {}
    last = None
    for ev in reader:
        if last is not None:
            t = last + tick
            steps = 0
            while t < ev.ts and steps < 100_000:
                for f in eng.advance(t):
                    if f.code == code:
                        return Detection(code, f.array, t, _start(f, io_start),
                                         cfg.io_wait_s)
                t += tick
                steps += 1
        last = ev.ts if last is None else max(last, ev.ts)
        if ev.kind == "io_wait":
            start = ev.ts - int(ev.arg("wait_ns", 0) or 0)
            io_start[ev.array] = min(io_start.get(ev.array, start), start)
        for f in eng.feed(ev):
            if f.code == code:
                return Detection(code, f.array, ev.ts, _start(f, io_start), cfg.io_wait_s)
    return None


def _start(f: Finding, io_start: dict[str, int]) -> int | None:
    """F7's own IO start (its ``start_ns``); else the earliest IO wait seen on the array."""
    if f.code == "F7":
        return f.start_ns
    return io_start.get(f.array)
