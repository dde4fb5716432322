"""Background thread: pull events from a Source into an Engine; the UI polls snapshots.

The engine is not thread-safe, so every engine call happens under one lock; the UI thread only
takes a snapshot under that lock at its own frame rate, so a fast replay never floods it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from mdtrace.engine.model import Snapshot
from mdtrace.events import Event


def events_since(recent: deque[Event], seq: int, since: int) -> list[Event]:
    """The events of ``recent`` (the last ones of ``seq`` fed) newer than sequence ``since``:
    what the TUI's event log has not shown yet (bounded by what ``recent`` keeps)."""
    n = min(seq - since, len(recent))
    return list(recent)[-n:] if n > 0 else []


class Feeder:
    """Feeds ``source.events()`` into ``engine``; keeps the last ``keep`` events for the log."""

    def __init__(self, source: Any, engine: Any, *, keep: int = 2000,
                 live: bool = False) -> None:
        self.source = source
        self.engine = engine
        self.live = live
        self.stop = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.RLock()  # re-entrant: the UI holds it across poll + draw
        self._recent: deque[Event] = deque(maxlen=keep)
        self._seq = 0
        self.first_ts: int | None = None   # the trace start: the TUI's time origin
        self._ui_waiting = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mdtrace-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            last_tick = time.monotonic()
            for ev in self.source.events(self.stop):
                if self.first_ts is None:
                    self.first_ts = ev.ts
                with self._lock:
                    self.engine.feed(ev)
                    self._recent.append(ev)
                    self._seq += 1
                if self._ui_waiting.is_set():
                    # The UI wants a frame: step aside so a full-speed replay cannot starve it
                    # (re-taking the lock at once would win it back before the UI thread runs).
                    time.sleep(0.0005)
                if self.live and time.monotonic() - last_tick > 1.0:
                    last_tick = time.monotonic()
                    with self._lock:
                        self.engine.advance(ev.ts)
                if self.stop.is_set():
                    break
            if not self.live and not self.stop.is_set():
                with self._lock:
                    self.engine.finish()
        except BaseException as exc:  # surfaced in the UI, never a silent dead thread
            self.error = exc
        finally:
            self.done.set()

    def poll(self, since: int) -> tuple[Snapshot, list[Event], int]:
        """Current snapshot, events newer than sequence ``since`` (bounded), new sequence."""
        self._ui_waiting.set()
        with self._lock:
            self._ui_waiting.clear()
            return self.engine.snapshot(), events_since(self._recent, self._seq, since), \
                self._seq

    @property
    def frame_lock(self) -> threading.RLock:
        """Hold while drawing a frame so the feeder pauses instead of fighting for the GIL."""
        return self._lock

    def close(self) -> None:
        self.stop.set()
        self._thread.join(timeout=2.0)
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
