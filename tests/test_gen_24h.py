"""bench/gen_24h.py writes what the change-only BPF contract says, and the report finds in it
what happened: the first 6.2 hours of the generated day (md1's resync, md0's reshape and its
10-minute freeze with three writes blocked across the position, md3's check)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.gen_24h import generate  # noqa: E402
from mdtrace.events import calls  # noqa: E402
from mdtrace.frontends.report import build_report, render  # noqa: E402
from mdtrace.trace import TraceReader  # noqa: E402

S = 1_000_000_000
CR = ("check_recovery_enter", "check_recovery_exit")


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("gen") / "day.jsonl.zst"
    generate(p, hours=6.2)
    return p


def test_change_only_shape(day: Path) -> None:
    evs = list(TraceReader(day))
    cr = [e for e in evs if e.kind in CR]
    # idle arrays report no md_check_recovery at all
    assert {e.array for e in cr} == {"md0", "md1", "md3"}
    # at most one exit a second per array, enters only on a change of the state words
    for name in ("md0", "md1", "md3"):
        exits = [e.ts for e in cr if e.array == name and e.kind == CR[1]]
        span = (exits[-1] - exits[0]) / S
        assert len(exits) <= span + 10, name
        enters = [e for e in cr if e.array == name and e.kind == CR[0]]
        words = [(e.state.recovery, e.state.sync_thread) for e in enters]
        assert all(a != b for a, b in zip(words, words[1:])), name
    # each stands for the calls it folded: 55-75 a second while syncing, plus IO on md0
    n_calls = Counter()
    for e in cr:
        n_calls[e.array] += calls(e)
    assert n_calls["md1"] > 50 * (6.2 * 3600 - 300)
    assert sum(n_calls.values()) > 40 * len(cr)


def test_report_finds_the_freeze(day: Path) -> None:
    model = build_report(day)
    got = sorted((f.code, f.array, f.active) for f in model.findings)
    assert got == [("F7", "md0", False)] * 3
    for f in model.findings:     # the 10-minute freeze at 06:00
        assert 6 * 3600 * S < f.start_ns - model.first_ns < (6 * 3600 + 20) * S
        assert f.end_ns is not None and f.end_ns - f.start_ns > 590 * S
    arrays = model.snapshot.arrays
    assert str(arrays["md3"].lifecycle) == "reaped"          # the check ran and ended
    assert str(arrays["md0"].lifecycle) == "syncing"         # the reshape goes on
    for fmt in ("text", "markdown", "html", "json"):
        assert "md0" in render(model, fmt)
