"""Pilot tests over the scenario library replayed through the REAL engine: the TUI shows the
arrays the trace creates and exactly the expected finding codes (healthy resync: none; F7 stuck
reshape IO; F1 DONE-not-reaped).  Skips until the engine and scenario library are present."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from mdtrace.engine.core import Engine
from mdtrace.frontends.tui.app import TopApp
from mdtrace.frontends.tui.feed import Feeder
from mdtrace.sources.replay import ReplaySource
from tests.scenarios import SCENARIOS

CASES = ["healthy_resync", "f7_frozen_reshape_io_buggy", "f1_suspended_not_reaped_buggy"]


@pytest.mark.parametrize("name", CASES)
def test_scenario_rows_and_findings(name: str, tmp_path: Path) -> None:
    if name not in SCENARIOS:
        pytest.skip(f"scenario {name} not in the library")
    sc = SCENARIOS[name]
    trace = sc.write_trace(tmp_path / f"{name}.jsonl")
    feeder = Feeder(ReplaySource(str(trace)), Engine(mode="replay"))
    feeder.start()
    assert feeder.done.wait(60), "replay did not finish"
    assert feeder.error is None, repr(feeder.error)
    arrays = {ev.array for ev in sc.events() if ev.array}

    async def go() -> None:
        app = TopApp(feeder.poll, interval=0.05, is_done=feeder.done.is_set,
                     frame_lock=feeder.frame_lock)
        async with app.run_test(size=(180, 50)) as pilot:
            await pilot.pause()
            t = app.query_one("#arrays", DataTable)
            shown = {str(t.get_row_at(i)[0]).split(" ")[0] for i in range(t.row_count)}
            assert arrays <= shown | {""}, (arrays, shown)
            text = str(app.query_one("#findings", Static).render())
            snap = app.snapshot
            assert snap is not None
            codes = {f.code for f in snap.findings}
            assert codes == set(sc.expected), (codes, sc.expected)
            for code in sc.expected:
                assert f"{code} " in text, text
                f = next(f for f in snap.findings if f.code == code)
                if f.remedy:
                    assert f.remedy.split()[0] in text
            if not sc.expected:
                assert "No findings." in text
            assert "trace finished" in str(app.query_one("#status", Static).render())
    try:
        asyncio.run(go())
    finally:
        feeder.close()
