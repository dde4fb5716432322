"""The live session shared by run, top and the exporter: time-based findings fire on a quiet
array from the session's own ticks (not only when an event arrives), every front end's view
reads from one engine, source errors surface, close() detaches the source."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest

from mdtrace.config import EngineConfig
from mdtrace.engine.core import Engine
from mdtrace.events import Event
from mdtrace.live import LiveSession
from tests.scenarios.builder import Sim
from tests.scenarios.catalog import _no_done


class QuietSource:
    """Yields its events, then nothing until stopped (a live array gone quiet)."""

    name = "synthetic"

    def __init__(self, events: list[Event], fail: BaseException | None = None) -> None:
        self._events, self._fail = events, fail
        self.closed = False

    def events(self, stop: threading.Event):  # noqa: ANN201
        yield from self._events
        if self._fail is not None:
            raise self._fail
        while not stop.wait(0.05):
            pass

    def close(self) -> None:
        self.closed = True

    def health(self) -> dict[str, int]:
        return {"lost": 3}


def _f3_events() -> tuple[list[Event], int]:
    """A 6.7 dm-raid sync that leaves md_do_sync without DONE, cut right after the exit: no
    later event, so only a tick can raise F3 once done_grace_s has passed."""
    sim = Sim("6.7.0")
    partial(_no_done, sets_done=False)(sim)
    from mdtrace.events import canonicalise

    evs = [canonicalise(e, sim.table) for e in sim.events]
    cut = max(i for i, e in enumerate(evs) if e.kind == "do_sync_exit")
    return evs[:cut + 1], evs[cut].ts


def _wait(pred, timeout: float = 10.0) -> bool:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_quiet_array_finding_comes_from_ticks() -> None:
    evs, exit_ts = _f3_events()
    t = {"now": exit_ts}

    def clock() -> int:            # the monotonic clock, moving 0.5 s per tick
        t["now"] += 500_000_000
        return t["now"]

    seen: list[str] = []
    src = QuietSource(evs)
    s = LiveSession(src, Engine(EngineConfig(), mode="live", kernel="6.7.0"), tick_s=0.05,
                    progress_s=0, kernel_log=False, clock=clock,
                    on_findings=lambda fs: seen.extend(f.code for f in fs))
    s.start()
    try:
        assert _wait(lambda: "F3" in seen), seen
        assert s.events == len(evs)
        assert any(f.code == "F3" and f.active for f in s.findings())
        snap, new, seq = s.poll(0)
        assert seq == len(evs) and len(new) == len(evs) and "dm-4" in snap.arrays
        assert s.version() > 0 and s.extra().lost == 3 and s.extra().source == "synthetic"
    finally:
        s.close()
    assert src.closed and s.done.is_set() and s.error is None


def test_without_ticks_the_same_stream_raises_nothing() -> None:
    """The control: fed alone (no clock moving), F3 cannot fire: the ticks above did it."""
    evs, _ = _f3_events()
    eng = Engine(EngineConfig(), mode="live", kernel="6.7.0")
    got = [f.code for ev in evs for f in eng.feed(ev)]
    assert "F3" not in got


def test_source_error_surfaces_and_ends_the_session() -> None:
    src = QuietSource([], fail=OSError("ring buffer gone"))
    s = LiveSession(src, Engine(), tick_s=0.05, progress_s=0, kernel_log=False)
    s.start()
    assert s.done.wait(5)
    s.close()
    assert isinstance(s.error, OSError) and src.closed


def test_tick_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LiveSession(QuietSource([]), Engine(), tick_s=0)
