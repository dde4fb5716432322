"""Bounded work and memory (issue 13, rows 2 and 3), at small sizes: work is *counted*, not
timed (the timed figures are bench/bench_scale.py's)."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from bench.bench_scale import S, array_churn, blocked_ios, feed_all, pid_waits
from mdtrace.config import EngineConfig
from mdtrace.engine.core import Engine
from mdtrace.engine.detectors import reshape_io
from mdtrace.engine.model import Lifecycle
from mdtrace.engine.retention import MAX_CLOSED, MAX_STOPPED
from mdtrace.engine.waitfor import WaitForGraph
from mdtrace.events import Event
from mdtrace.frontends.exporter.collector import MAX_LABEL_VALUES, SnapshotCollector


def _scrape(engine: Engine) -> str:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(engine.snapshot))
    return generate_latest(reg).decode()


def _f7_verdicts(monkeypatch: pytest.MonkeyPatch, n: int) -> tuple[int, int, int]:
    """(verdicts on io_wait events, io_wait events, verdicts in all) for ``n`` blocked IOs."""
    counts = {"event": 0, "events": 0, "all": 0}
    real = reshape_io.check

    def counting(ctx):  # type: ignore[no-untyped-def]
        out = real(ctx)
        counts["all"] += len(out)
        if ctx.ev is not None and ctx.ev.kind == "io_wait":
            counts["event"] += len(out)
            counts["events"] += 1
        return out

    monkeypatch.setattr(reshape_io, "check", counting)
    feed_all(Engine(mode="replay"), blocked_ios(n, reports=6))
    return counts["event"], counts["events"], counts["all"]


def test_f7_judges_one_io_per_io_wait_and_grows_linearly(monkeypatch: pytest.MonkeyPatch) -> None:
    small = _f7_verdicts(monkeypatch, 50)
    big = _f7_verdicts(monkeypatch, 200)
    for on_events, events, _ in (small, big):
        assert on_events <= events     # it judged every blocked IO on every io_wait before
    assert big[2] <= 4 * small[2] * 1.2, (small, big)   # 4x the IOs: ~4x the verdicts


def test_wait_for_graph_cap_is_real_and_begin_is_cheap() -> None:
    g = WaitForGraph(max_waits=100)
    for tid in range(1000):
        g.begin("w", f"suspend:md{tid % 3}", Event(ts=tid, kind="wait_begin", tid=tid))
    assert g.count == 100 and len(g.waits) == 100 and g.dropped == 900
    assert sum(len(v) for v in g.waits.values()) == 100   # no empty per-task entries
    g.end_resource("suspend:md0")
    assert g.count == sum(len(v) for v in g.waits.values()) == 66
    assert all(w.resource != "suspend:md0" for per in g.waits.values() for w in per.values())


def test_cycle_search_visits_resources_not_every_waiting_task() -> None:
    """40k pids waiting on resources nobody waiting provides: each check is O(resources)."""
    works = []
    for n in (2000, 8000):
        eng = Engine(mode="replay")
        eng._waits.max_waits = 10 * n
        feed_all(eng, pid_waits(n, seconds=5))
        assert eng._waits.count == n
        works.append(eng._waits.work)
    assert works[1] <= works[0] * 1.2, works     # 4x the waiting tasks, the same work


def test_live_engine_retires_stopped_arrays_and_their_series() -> None:
    eng = Engine(mode="live")
    feed_all(eng, array_churn(500, every_ns=S // 10))
    snap = eng.snapshot()
    assert len(snap.arrays) <= MAX_STOPPED
    assert snap.health.arrays_retired >= 500 - MAX_STOPPED
    text = _scrape(eng)
    assert 'array="md0"' not in text and 'array="md499"' in text
    # the name comes back: the generation count continues from the tombstone
    last = eng.snapshot().arrays["md499"].generation
    eng.advance(eng.snapshot().now_ns + 400 * S)            # past retention_s (300 s)
    assert eng.snapshot().arrays == {}
    eng.feed(Event(ts=eng.snapshot().now_ns + 1, kind="array_create", array="md499", mddev="p:x",
                   args={"level": "raid1"}))
    assert eng.snapshot().arrays["md499"].generation == last + 1
    assert eng.lifecycle_of("md0") is Lifecycle.STOPPED   # tombstone: still known stopped


def test_post_mortem_engine_keeps_every_array_for_the_report() -> None:
    eng = Engine(mode="replay")
    feed_all(eng, array_churn(300, every_ns=S // 10))
    snap = eng.snapshot()
    assert list(snap.arrays) == [f"md{i}" for i in range(300)]   # all, first-seen order
    assert sum(a.retired for a in snap.arrays.values()) >= 300 - MAX_STOPPED
    assert all(a.lifecycle is Lifecycle.STOPPED for a in snap.arrays.values())
    # ... while the exporter serving that engine leaves the retired ones out
    text = _scrape(eng)
    live = sum(not a.retired for a in snap.arrays.values())
    assert f"mdtrace_arrays {float(live)}" in text


def test_closed_findings_forgotten_after_retention_counter_kept() -> None:
    cfg = dataclasses.replace(EngineConfig(), retention_s=10.0)
    eng = Engine(cfg, mode="live")
    feed_all(eng, blocked_ios(40, reports=6))        # 40 F7 raised, then every IO completes
    assert len(eng.findings) == 40 and not any(f.active for f in eng.findings)
    eng.advance(eng.snapshot().now_ns + 11 * S)
    assert eng.findings == []
    assert eng.snapshot().health.findings_raised == {"F7": 40}
    assert 'mdtrace_findings_raised_total{code="F7"} 40.0' in _scrape(eng)
    # the post-mortem engine keeps them
    pm = Engine(cfg, mode="replay")
    feed_all(pm, blocked_ios(40, reports=6))
    pm.advance(pm.snapshot().now_ns + 11 * S)
    assert len(pm.findings) == 40


def test_closed_findings_capped_in_a_live_engine() -> None:
    eng = Engine(mode="live")
    feed_all(eng, blocked_ios(MAX_CLOSED + 200, reports=6))
    assert len(eng.findings) <= MAX_CLOSED


def test_trace_derived_labels_are_bounded() -> None:
    eng = Engine(mode="live")
    for i in range(300):
        eng.feed(Event(ts=S + i, kind=f"kind{i}"))
        eng.feed(Event(ts=S + i, kind="lost", args={"count": 1, "probe": f"probe{i}" * 40}))
    text = _scrape(eng)
    events = [ln for ln in text.splitlines() if ln.startswith("mdtrace_events_total{")]
    lost = [ln for ln in text.splitlines() if ln.startswith("mdtrace_events_lost_total{")]
    assert len(events) <= MAX_LABEL_VALUES + 1 and len(lost) <= MAX_LABEL_VALUES + 1
    assert any('event="other"' in ln for ln in events)
    assert sum(float(ln.rsplit(" ", 1)[1]) for ln in lost) == 300   # nothing lost by folding
    assert max(len(ln) for ln in lost) < 300


def test_a_stop_ends_the_wait_for_entries_of_its_blocked_io() -> None:
    eng = Engine(mode="live")
    evs = list(blocked_ios(30, reports=2))[:-31]     # the IOs never complete...
    feed_all(eng, iter(evs))
    assert eng._waits.count == 30
    eng.feed(Event(ts=eng.snapshot().now_ns + 1, kind="array_stop", array="md0", mddev="p:1"))
    assert eng._waits.count == 0 and eng._waits.waits == {}   # ...the array stopped
