"""50 concurrent scrapers against a real `mdtrace exporter` process replaying (and looping)
a real trace, so the engine changes while it is scraped: no errors allowed; p50/p99 printed.
The fast tier runs 4 s; the 30 s acceptance run is marked slow (`pytest -m slow`)."""

from __future__ import annotations

import pytest
from test_exporter_support import FROZEN, exporter_proc, http_get, parse, value

from vmtest.exporter_load import scrape_load

CLIENTS = 50


def _load(duration_s: float, capsys: pytest.CaptureFixture[str]) -> None:
    with exporter_proc("--replay", str(FROZEN), "--speed", "50", "--loop") as url:
        before = value(parse(http_get(url)[1].decode()), "mdtrace_events_total",
                       event="check_recovery_enter") or 0
        res = scrape_load(url, clients=CLIENTS, duration_s=duration_s)
        after = parse(http_get(url)[1].decode())
    with capsys.disabled():
        print(f"\nexporter scrape load: {res.summary()}")
    assert res.errors == [], res.errors[:5]
    assert res.scrapes >= CLIENTS * duration_s * 0.5  # each client >= one scrape per 2 s
    assert res.quantile(0.99) < 5.0, res.summary()
    # the replay really progressed (or looped) while being scraped
    moved = (value(after, "mdtrace_events_total", event="check_recovery_enter") or 0) != before
    assert moved or (value(after, "mdtrace_replay_loops_total") or 0) > 0


def test_50_concurrent_scrapers_short(capsys: pytest.CaptureFixture[str]) -> None:
    _load(4.0, capsys)


@pytest.mark.slow
def test_50_concurrent_scrapers_30s(capsys: pytest.CaptureFixture[str]) -> None:
    _load(30.0, capsys)
