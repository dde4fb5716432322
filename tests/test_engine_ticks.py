"""Ticks look only at candidate arrays (engine/core.py ``_tick``): touched by an event since
the last tick, wanted by a tick detector at the last one, or with a tick finding open.  With
change-only md_check_recovery reports an array can stay silent for a long time while a grace
period runs out on it: the tick must still judge it, whoever's events move the clock."""

from __future__ import annotations

from mdtrace.engine.core import Engine
from mdtrace.events import ArrayState, Event
from mdtrace.kernel.flags import Recovery

S = 1_000_000_000
DONE = int(Recovery.RUNNING | Recovery.SYNC | Recovery.DONE)
SYNCING = int(Recovery.RUNNING | Recovery.SYNC)


def _st(rec: int, *, thread: bool, suspended: int = 0) -> ArrayState:
    return ArrayState(recovery=rec, rec=rec, mdf=0, sync_thread=thread, suspended=suspended)


def _ev(ts: int, kind: str, array: str, st: ArrayState | None, **args: object) -> Event:
    return Event(ts=ts, kind=kind, array=array, tid=10 if array == "md0" else 20,
                 mddev=f"p:{array}", state=st, args=dict(args))


def test_a_silent_array_is_judged_while_another_moves_the_clock() -> None:
    eng = Engine()
    # md0: its sync thread set DONE while the array is suspended; the daemon reports that once
    # (change-only) and then nothing more about md0 arrives
    eng.feed(_ev(S, "check_recovery_exit", "md0", _st(DONE, thread=True, suspended=1),
                 calls=40))
    # md1 syncs on, one exit sample a second: the only events from here on
    raised = []
    for k in range(2, 12):
        raised += [(k, f) for f in eng.feed(_ev(k * S, "check_recovery_exit", "md1",
                                                _st(SYNCING, thread=True), calls=65))]
    assert [(f.code, f.array) for _, f in raised] == [("F1", "md0")]
    k, f1 = raised[0]
    # raised at the first tick past reap_grace_s (5 s) after md0's DONE was seen, from then
    assert k == 6 and f1.start_ns == S, (k, f1.start_ns)
    assert eng.snapshot().arrays["md0"].counters == {"check_recovery_exit": 40}


def test_an_open_tick_finding_is_cleared_by_the_next_event() -> None:
    eng = Engine()
    eng.feed(_ev(S, "check_recovery_exit", "md0", _st(DONE, thread=True, suspended=1)))
    for k in range(2, 9):
        eng.feed(_ev(k * S, "io_stats", "md1", None, requests=1))
    assert [f.code for f in eng.findings if f.active] == ["F1"]
    # md0 is resumed and reaped: the tick after that closes F1
    eng.feed(_ev(9 * S, "reap", "md0", _st(DONE, thread=True), mutex_owned=True,
                 mutex_locked=True, caller="md_check_recovery"))
    eng.feed(_ev(9 * S + 1, "thread_unregister", "md0", _st(0, thread=False), sync=True,
                 name="md0_resync", caller="md_reap_sync_thread"))
    eng.feed(_ev(10 * S, "io_stats", "md1", None, requests=1))
    assert [f.code for f in eng.findings if f.active] == []
    assert [f.code for f in eng.findings] == ["F1"]


def test_an_untouched_idle_array_costs_no_detector_calls(monkeypatch) -> None:  # noqa: ANN001
    """The point of the candidate set: a tick does not ask every detector about every array."""
    from mdtrace.engine import core

    asked: list[str] = []

    class Spy:
        CODES = ("F99",)

        @staticmethod
        def wanted(arr, config) -> bool:  # noqa: ANN001
            asked.append(arr.name)
            return False

        @staticmethod
        def check(ctx):  # noqa: ANN001, ANN205
            return []

    monkeypatch.setattr(core, "TICK_DETECTORS", (Spy,))
    eng = Engine()
    eng.feed(_ev(S, "check_recovery_exit", "md0", _st(SYNCING, thread=True)))
    for k in range(2, 22):
        eng.feed(_ev(k * S, "check_recovery_exit", "md1", _st(SYNCING, thread=True)))
    assert asked.count("md0") == 1          # once, at the tick after its event
    assert asked.count("md1") >= 19
