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


def test_bytes_that_are_not_utf8_are_bad_lines_whatever_msgspec_raises(tmp_path: Path) -> None:
    """msgspec 0.19.0 (Python 3.9) raises UnicodeDecodeError where 0.23 raises DecodeError: a
    non-UTF-8 byte in a string must be a bad line (or a bad header), never a traceback."""
    p = tmp_path / "t.jsonl"
    with TraceWriter(p, TraceHeader(kernel="6.1.0", source="test")) as w:
        for i in range(3):
            w.write(Event(ts=i, kind="check_recovery_exit", array=f"md{i}"))
    lines = p.read_bytes().splitlines(keepends=True)
    assert b'"md1"' in lines[2]
    lines[2] = lines[2].replace(b'"md1"', b'"md\x80"')
    p.write_bytes(b"".join(lines))
    with pytest.raises(TraceError, match=":3: line is not valid JSON"):
        list(TraceReader(p))
    r = TraceReader(p, skip_bad=True)
    assert [e.array for e in r] == ["md0", "md2"] and r.bad_lines == 1
    p.write_bytes(lines[0].replace(b'"6.1.0"', b'"6.1\xe2\x28"') + lines[1])
    with pytest.raises(TraceError, match="not an mdtrace trace"):
        list(TraceReader(p))
