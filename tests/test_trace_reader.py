"""Trace reader: round trip, and arbitrary bytes after a header never escape as anything but
TraceError (property test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdtrace.events import ArrayState, Event
from mdtrace.trace import TraceError, TraceHeader, TraceReader, TraceWriter


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    p = tmp_path / f"t{suffix}"
    evs = [Event(ts=i, kind="check_recovery_exit", array="md0",
                 state=ArrayState(recovery=i % 8, sync_thread=bool(i % 2))) for i in range(5000)]
    with TraceWriter(p, TraceHeader(kernel="6.12.117+deb12-amd64", source="test")) as w:
        for ev in evs:
            w.write(ev)
    got = list(TraceReader(p))
    assert [(e.ts, e.state.recovery) for e in got] == [(e.ts, e.state.recovery) for e in evs]
    assert got[3].state is not None and got[3].state.rec >= 0


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_trace_error(tmp_path: Path, tail: bytes) -> None:
    p = tmp_path / "fuzz.jsonl"
    header = b'{"format": "mdtrace-trace", "version": 1, "kernel": "6.1.0"}\n'
    p.write_bytes(header + tail)
    try:
        list(TraceReader(p))
    except TraceError as exc:
        assert "\n" not in str(exc)
    # skip_bad never raises on line-level garbage
    list(TraceReader(p, skip_bad=True))
