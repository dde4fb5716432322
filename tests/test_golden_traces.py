"""Fast tier: real-kernel golden traces (tests/data/golden/<release>/, recorded in the qemu
guest by `mdtrace vm scenarios` + `mdtrace vm golden`) replayed through the engine on every run.

Each trace must (1) contain no raw kernel pointer, (2) give the same findings the guest's
`mdtrace report` gave when it was recorded, (3) decode the lifecycle recorded beside it, and
(4) satisfy the scenario's meaning: healthy syncs run NEEDED/RUNNING -> SYNCING -> DONE -> reaped
with no findings; the frozen-reshape IO scenario raises F7.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "data" / "golden"
TRACES = sorted(GOLDEN.glob("*/*.jsonl.gz"))
HEALTHY = {"resync_raid5", "recovery_raid1", "sync_actions"}


def _ids(p: Path) -> str:
    return f"{p.parent.name}/{p.name.removesuffix('.jsonl.gz')}"


def _expected(trace: Path) -> dict:
    return json.loads(trace.with_name(trace.name.removesuffix(".jsonl.gz")
                                      + ".expected.json").read_text())


if not TRACES:
    def test_golden_traces_present() -> None:
        pytest.skip("no golden traces in tests/data/golden yet: record them in the guest with "
                    "'mdtrace vm scenarios' then 'mdtrace vm golden' (needs mdtrace record)")


@pytest.mark.parametrize("trace", TRACES, ids=_ids)
def test_no_raw_pointers(trace: Path) -> None:
    from mdtrace.vm.golden import raw_pointers

    assert raw_pointers(trace) == []


@pytest.mark.parametrize("trace", TRACES, ids=_ids)
def test_replay_matches_guest(trace: Path) -> None:
    from mdtrace.vm.golden import engine_summary

    exp = _expected(trace)
    got = engine_summary(trace)
    assert got["findings"] == exp["guest_report_findings"], "engine disagrees with guest report"
    assert got["lifecycle"] == exp["lifecycle"]
    assert got["event_kinds"] == exp["event_kinds"]


@pytest.mark.parametrize("trace", TRACES, ids=_ids)
def test_scenario_meaning(trace: Path) -> None:
    from mdtrace.vm.golden import engine_summary

    name = trace.name.removesuffix(".jsonl.gz")
    got = engine_summary(trace)
    if name in HEALTHY:
        assert got["findings"] == [], f"healthy {name} raised {got['findings']}"
        seqs = [s for s in got["lifecycle"].values() if "syncing" in s]
        assert seqs, f"no array reached SYNCING: {got['lifecycle']}"
        for seq in seqs:
            i = seq.index("syncing")
            assert "done" in seq[i:] or "reaped" in seq[i:], seq
    if name == "reshape_frozen_io":
        assert "F7" in got["findings"], got["findings"]
    assert got["event_kinds"].get("do_sync_enter", 0) > 0
