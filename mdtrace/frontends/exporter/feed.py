"""Feeds a source into an engine in a background thread; scrapes read snapshots under a lock.

Same pattern as the TUI's Feeder (the engine is not thread-safe: every engine call under one
lock), plus what an exporter needs: a version number that changes with every engine change
(the HTTP layer reuses a rendered scrape while it does not), live ticks so time-based
detectors fire when the kernel is quiet, and ``loop`` for demo replays (a fresh source and
engine per pass; counters then reset, which Prometheus' rate() handles).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from mdtrace.engine.model import Snapshot
from mdtrace.frontends.exporter.collector import ExtraHealth

LOOP_PAUSE_S = 2.0


class Feed(Protocol):
    """What the exporter app and command use of a feeder: this replay feeder, or the live
    session (mdtrace.live.LiveSession) that `mdtrace run` shares."""

    live: bool
    done: threading.Event
    error: BaseException | None

    def start(self) -> None: ...
    def close(self) -> None: ...
    def snapshot(self) -> Snapshot: ...
    def version(self) -> int: ...
    def extra(self) -> Any: ...


class ExporterFeeder:
    def __init__(self, open_source: Callable[[], Any], make_engine: Callable[[Any], Any], *,
                 live: bool, loop: bool = False, tick_s: float = 1.0) -> None:
        self._open_source = open_source
        self._make_engine = make_engine
        self.live = live
        self.loop = loop
        self.tick_s = tick_s
        self.stop = threading.Event()
        self.done = threading.Event()  # replay fed completely (first pass), or feeder ended
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._version = 0
        self._loops = 0
        self._replay_done = False
        self.source: Any = open_source()
        self.engine: Any = make_engine(self.source)
        self._thread = threading.Thread(target=self._run, name="mdtrace-exporter-feed",
                                        daemon=True)
        self._ticker = threading.Thread(target=self._tick, name="mdtrace-exporter-tick",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()
        if self.live:
            self._ticker.start()

    # -- feeding -----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                for ev in self.source.events(self.stop):
                    with self._lock:
                        self.engine.feed(ev)
                        self._version += 1
                    if self.stop.is_set():
                        break
                if self.live or self.stop.is_set():
                    break
                with self._lock:
                    self.engine.finish()
                    self._replay_done = True
                    self._loops += 1
                    self._version += 1
                self.done.set()
                if not self.loop or self.stop.wait(LOOP_PAUSE_S):
                    break
                source = self._open_source()
                engine = self._make_engine(source)
                with self._lock:
                    self._close_source()
                    self.source, self.engine = source, engine
                    self._replay_done = False
                    self._version += 1
        except BaseException as exc:  # noqa: BLE001 - surfaced by the command, one line
            self.error = exc
            self.stop.set()
        finally:
            self.done.set()

    def _tick(self) -> None:
        while not self.stop.wait(self.tick_s):
            with self._lock:
                self.engine.advance(time.monotonic_ns())
                self._version += 1

    # -- reading (any thread) ----------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self._lock:
            snap: Snapshot = self.engine.snapshot()
            return snap

    def version(self) -> int:
        return self._version

    def extra(self) -> ExtraHealth:
        h: dict[str, Any] = {}
        health = getattr(self.source, "health", None)
        if health is not None:
            try:
                h = health() or {}
            except Exception:  # noqa: BLE001 - health is best-effort
                h = {}
        return ExtraHealth(lost=int(h.get("lost", 0) or 0),
                           bad_lines=int(h.get("bad_lines", 0) or 0),
                           replay_done=self._replay_done, replay_loops=self._loops,
                           source=str(getattr(self.source, "name", "")))

    def _close_source(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - closing is best-effort
                pass

    def close(self) -> None:
        self.stop.set()
        self._thread.join(timeout=5)
        if self._ticker.is_alive():
            self._ticker.join(timeout=2)
        self._close_source()
