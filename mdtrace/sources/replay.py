"""Replay a recorded trace as a Source, optionally paced in (scaled) real time.

``speed=None`` or 0 replays as fast as possible; ``speed=N`` plays N trace-seconds per
wall-second, so a demo or a TUI test sees the hang unfold as it did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from mdtrace.events import Event
from mdtrace.trace import TraceReader


class ReplaySource:
    name = "replay"

    def __init__(self, path: str, *, speed: float | None = None, skip_bad: bool = False) -> None:
        self.path = path
        self.speed = speed or None
        self._reader = TraceReader(path, skip_bad=skip_bad)
        self.header = self._reader.header
        self._lost = 0
        self._probes: dict[str, dict[str, Any]] = {}

    def events(self, stop: threading.Event | None = None) -> Iterator[Event]:
        first_ts: int | None = None
        wall0 = time.monotonic()
        for ev in self._reader:
            if stop is not None and stop.is_set():
                return
            if ev.kind == "lost":
                self._lost += int(ev.args.get("count", 0))
            elif ev.kind == "probe_status":
                self._probes[str(ev.args.get("probe", ""))] = dict(ev.args)
            if self.speed:
                if first_ts is None:
                    first_ts = ev.ts
                due = wall0 + (ev.ts - first_ts) / 1e9 / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    if stop is not None:
                        if stop.wait(delay):
                            return
                    else:
                        time.sleep(delay)
            yield ev

    def health(self) -> dict[str, Any]:
        return {
            "mode": "replay", "lost": self._lost, "probes": dict(self._probes),
            "bad_lines": self._reader.bad_lines, "errors": list(self._reader.errors),
        }

    def close(self) -> None:
        self._reader.close()
