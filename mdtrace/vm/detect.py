"""When would a live `mdtrace run` have raised a finding?  Measured on a recorded trace.

The engine is fed the trace's events in order, with ``advance()`` ticks every ``tick_s`` of trace
time in between (what the live daemon's timer does), so the first tick or event that returns the
finding is the moment it would have been flagged live.  For F7 the IO's own start comes from the
trace too (``io_wait`` events carry ``wait_ns``: start = ts - wait_ns), so the latency needs no
clock shared with anything outside the trace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Detection:
    code: str
    array: str
    detected_ns: int           # trace time (CLOCK_MONOTONIC of the traced machine)
    io_start_ns: int | None    # earliest start of a waiting IO on that array, if any
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
                        return Detection(code, f.array, t, io_start.get(f.array),
                                         cfg.io_wait_s)
                t += tick
                steps += 1
        last = ev.ts if last is None else max(last, ev.ts)
        if ev.kind == "io_wait":
            start = ev.ts - int(ev.arg("wait_ns", 0) or 0)
            io_start[ev.array] = min(io_start.get(ev.array, start), start)
        for f in eng.feed(ev):
            if f.code == code:
                return Detection(code, f.array, ev.ts, io_start.get(f.array), cfg.io_wait_s)
    return None
