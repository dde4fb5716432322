"""The skimmer (mdtrace.skim) changes nothing but speed: the C twin gives the Python reference's
result byte for byte, and a report built from skimmed blocks equals one built by decoding and
feeding every event, on every scenario, the real golden traces, edge-case lines and random
streams."""

from __future__ import annotations

import glob
import os
import random
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdtrace import skim
from mdtrace.engine.core import TICK_NS, Engine
from mdtrace.events import ArrayState, Event
from mdtrace.frontends.report import build_report, render
from mdtrace.frontends.report.build import TimelineRecorder, feed_all
from mdtrace.kernel.flags import RECOVERY_6_11, FlagTable
from mdtrace.trace import TraceError, TraceHeader, TraceReader, TraceWriter
from tests.scenarios import SCENARIOS

REPO = Path(__file__).resolve().parent.parent
GOLDEN = sorted(glob.glob(str(REPO / "tests/data/golden/**/*.jsonl*"), recursive=True))
TICK = 100_000_000
needs_c = pytest.mark.skipif(not skim.ACCELERATED, reason="mdtrace._skimc not built")


def test_c_skimmer_is_built_where_required() -> None:
    """scripts/test.sh sets MDTRACE_REQUIRE_SKIMC: a silently failed optional build would
    otherwise only show as a slower report."""
    if os.environ.get("MDTRACE_REQUIRE_SKIMC"):
        assert skim.ACCELERATED, "mdtrace._skimc did not build (see pip install -e . output)"


def _engine_state(path: str | Path, skimmed: bool, skip_bad: bool,
                  prefetch: bool | None = False) -> tuple:
    """Everything the engine and the timeline recorder hold after the whole trace."""
    reader = TraceReader(path, skip_bad=skip_bad)
    eng = Engine(kernel=reader.header.kernel)
    rec = TimelineRecorder(eng)
    batches = (reader.skim_batches(eng.clock, TICK_NS, prefetch) if skimmed
               else ((b, None) for b in reader.batches()))
    feed_all(eng, batches, rec)
    eng.finish()
    return (eng._arrays, eng._findings, eng._health, eng.clock(), rec.timelines,
            rec.first_ns, rec.last_ns, reader.events_read, reader.bad_lines, reader.errors,
            reader.truncated)


def _reports_equal(path: str | Path, skip_bad: bool = False) -> None:
    """Skimmed (with and without the read-ahead process) == every event decoded and fed."""
    b = build_report(path, skim=False, skip_bad=skip_bad)
    plain = _engine_state(path, False, skip_bad)
    for prefetch in (False, True):
        a = build_report(path, skim=True, skip_bad=skip_bad, prefetch=prefetch)
        assert a.events_read == b.events_read
        assert a.bad_lines == b.bad_lines and a.errors == b.errors
        for fmt in ("json", "text"):
            assert render(a, fmt) == render(b, fmt), (fmt, prefetch)
        # and not only what the report shows: every field of every array record, finding,
        # timeline point and the clock
        assert _engine_state(path, True, skip_bad, prefetch) == plain, prefetch


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_report_same_with_and_without_skimming_scenarios(name: str, tmp_path: Path) -> None:
    _reports_equal(SCENARIOS[name].write_trace(tmp_path / f"{name}.jsonl"))


@pytest.mark.parametrize("path", GOLDEN, ids=[p.split("golden/")[-1] for p in GOLDEN])
def test_report_same_with_and_without_skimming_golden(path: str) -> None:
    _reports_equal(path)


# -- the two twins ----------------------------------------------------------------------------

def _st(rec: list[str], cr: int = 0, thread: bool = False) -> ArrayState:
    raw = 0
    for n in rec:
        raw |= 1 << RECOVERY_6_11[n]
    return ArrayState(recovery=raw, sync_thread=thread, curr_resync=cr, resync_max=1 << 20,
                      level=5)


def _line(ev: Event) -> bytes:
    return msgspec.json.encode(ev)


EDGE_LINES = [
    b'{"t":5,"k":"check_recovery_enter","a":"md0","s":{"r":0}}',
    b'{"t":6,"k":"check_recovery_exit","a":"md0","s":{"r":0}}',          # repeat
    b'{"t":7,"k":"check_recovery_enter","a":"md0","s":{"r":0}}',          # repeat
    b'{"t":8,"k":"check_recovery_enter","a":"md0"}',                      # no state
    b'{"t":9,"k":"check_recovery_enter","a":"md0"}',                      # not a template
    b'{"t":9,"k":"check_recovery_enter","a":"md1","s":{"r":1}}',
    b'{"t":10,"k":"check_recovery_exit","a":"md1","s":{"r":1}}',          # repeat
    b'{"t":3,"k":"check_recovery_exit","a":"md1","s":{"r":1}}',           # repeat, older
    b'{"t":4,"k":"lost","x":{"count":1}}',                                # array-less, behind
    b'{"t":11,"k":"check_recovery_exit","a":"md1","s":{"r":1},"a":"md2"}',  # 2nd "a": blind
    b'{"t":12,"k":"check_recovery_exit","a":"md1","s":{"r":1}}',
]


def _twins(templates_c: dict, templates_py: dict, block: bytes, now: int = 0,
           last_tick: int = 0, tick: int = TICK) -> tuple:
    a = skim.scan_c(templates_c, block, now, last_tick, tick)
    b = skim.scan_py(templates_py, block, now, last_tick, tick)
    assert a == b
    assert templates_c == templates_py
    return b


@needs_c
def test_twins_agree_on_edge_lines() -> None:
    tc: dict = {}
    tp: dict = {}
    out, ops, skimmed, _, _, blind = _twins(tc, tp, b"\n".join(EDGE_LINES) + b"\n")
    assert skimmed == 4
    # the line after the second "a" key is never skimmed, templates are forgotten
    assert out.endswith(EDGE_LINES[-1] + b"\n") and tc == {}
    for bad in (b'{"k":"x","t":1}', b'{"t":1,"k":"a\\"b","a":"md0"}', b"garbage",
                b'{"t":1,"k":"check_recovery_enter","a":"m\\u0064","s":{}}',
                '{"t":1,"k":"check_recovery_enter","a":"mé","s":{}}'.encode(),
                b'{"t":12345678901234567890,"k":"lost"}', b"   ",
                b'{"t":1,"k":"lost","x":{"a":1}}'):
        _twins({}, {}, EDGE_LINES[0] + b"\n" + bad + b"\n" + EDGE_LINES[1] + b"\n")


@needs_c
def test_twins_agree_on_ticks_and_random_blocks() -> None:
    rnd = random.Random(7)
    names = ["md0", "md1", "dm-3"]
    states = [_st([]), _st(["NEEDED"]), _st(["RUNNING", "SYNC"], thread=True),
              _st(["RUNNING", "SYNC", "DONE"], thread=True)]
    for _ in range(40):
        ts = rnd.randrange(10**9)
        lines = []
        for _ in range(rnd.randrange(1, 400)):
            ts += rnd.randrange(-5_000_000, 60_000_000)   # sometimes backwards
            kind = rnd.choice(["check_recovery_enter", "check_recovery_exit"] * 4 +
                              ["progress", "lock", "lost"])
            arr = "" if kind == "lost" else rnd.choice(names)
            lines.append(_line(Event(ts=max(ts, 0), kind=kind, array=arr, tid=7,
                                     state=rnd.choice(states[:2] * 6 + states) if arr else None)))
        block = b"\n".join(lines) + b"\n"
        tc: dict = {}
        tp: dict = {}
        now = rnd.randrange(10**9)
        for part in (block, block):     # templates carry over between blocks
            _twins(tc, tp, part, now, now - rnd.randrange(TICK), TICK)


@needs_c
def test_twins_agree_on_the_bench_mix(tmp_path: Path) -> None:
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench/bench_report.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = tmp_path / "bench.jsonl"
    mod.generate(path, 30_000)
    data = path.read_bytes()
    data = data[data.index(b"\n") + 1:]
    tc: dict = {}
    tp: dict = {}
    total = i = 0
    while i < len(data):
        j = data.rfind(b"\n", 0, i + (1 << 18)) + 1
        total += _twins(tc, tp, data[i:j])[2]
        i = j
    assert total > 10_000   # most of that mix is re-reads
    _reports_equal(path)


# -- the reader's skimmed path --------------------------------------------------------------

def _write(path: Path, events: list[Event]) -> Path:
    header = TraceHeader(kernel="6.12.117", source="test",
                         flag_tables=FlagTable.for_release("6.12.117"))
    with TraceWriter(path, header) as w:
        for ev in events:
            w.write(ev)
    return path


def test_bad_line_in_a_skimmed_block_reads_like_the_plain_path(tmp_path: Path) -> None:
    evs = [Event(ts=10**9 + i * 10**6, kind="check_recovery_enter", array="md0", tid=9,
                 state=_st([])) for i in range(300)]
    path = _write(tmp_path / "t.jsonl", evs)
    lines = path.read_bytes().split(b"\n")
    lines.insert(150, b'{"t":5,"k":"check_recovery_enter","a":"md0","s":{"r":"x"}}')
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(lines))
    _reports_equal(bad, skip_bad=True)
    with pytest.raises(TraceError) as b:
        build_report(bad, skim=False)
    assert ":151:" in str(b.value)
    for prefetch in (False, True):
        with pytest.raises(TraceError) as a:
            build_report(bad, skim=True, prefetch=prefetch)
        assert str(a.value) == str(b.value)


def _big_trace(tmp_path: Path, n: int = 40_000) -> Path:
    """A bench-mix trace spanning many read blocks (the read-ahead path's unit)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench/bench_report.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = tmp_path / "big.jsonl"
    mod.generate(path, n)
    return path


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_read_ahead_falls_back_exactly_at_a_bad_or_foreign_line(tmp_path: Path,
                                                                  where: float) -> None:
    """A bad line (the worker's check fails) or a line in another writer's field order (the
    replayed clock is no longer exact) in the middle of a many-block trace: from that block
    on the reader skims with the engine's clock; results equal the plain path's."""
    lines = _big_trace(tmp_path).read_bytes().split(b"\n")
    at = int(len(lines) * where)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(lines[:at] + [b'{"t":5,"k":"io_stats","a":"md0","x":7}']
                               + lines[at:]))
    _reports_equal(bad, skip_bad=True)
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_bytes(b"\n".join(lines[:at] + [b'{"k":"lost","t":' + lines[at][5:15] + b"}"]
                                   + lines[at:]))
    _reports_equal(foreign)


def test_read_ahead_truncated_compressed_trace(tmp_path: Path) -> None:
    import gzip
    raw = _big_trace(tmp_path).read_bytes()
    gz = gzip.compress(raw)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gz[: len(gz) * 2 // 3])
    _reports_equal(cut, skip_bad=True)
    with pytest.raises(TraceError) as b:
        build_report(cut, skim=False)
    with pytest.raises(TraceError) as a:
        build_report(cut, skim=True, prefetch=True)
    assert str(a.value) == str(b.value) and "truncated" in str(a.value)


_KINDS = ["check_recovery_enter", "check_recovery_exit"] * 6 + [
    "thread_register", "do_sync_enter", "do_sync_exit", "reap", "thread_unregister",
    "progress", "lock", "array_stop", "array_create", "io_wait", "sync_action"]
_STATES = [_st([]), _st(["NEEDED"]), _st(["RUNNING", "SYNC"], thread=True),
           _st(["RUNNING", "SYNC"], cr=4096, thread=True),
           _st(["RUNNING", "SYNC", "DONE"], thread=True), _st(["RUNNING", "RESHAPE", "FROZEN"])]


@st.composite
def _streams(draw: st.DrawFn) -> list[Event]:
    n = draw(st.integers(1, 120))
    ts = 10**9
    out = []
    for _ in range(n):
        ts += draw(st.sampled_from([0, 1, 10**6, 5 * 10**7, 10**8, 3 * 10**9, -10**6]))
        kind = draw(st.sampled_from(_KINDS))
        arr = draw(st.sampled_from(["md0", "md1", "dm-2"]))
        args: dict = {}
        if kind in ("thread_register", "thread_unregister"):
            args = {"name": f"{arr}_resync", "caller": "md_start_sync", "sync": True}
        elif kind == "reap":
            args = {"mutex_owned": draw(st.booleans()), "caller": "md_check_recovery"}
        elif kind == "io_wait":
            args = {"sector": 8, "sectors": 8, "wait_ns": 6 * 10**9, "done": draw(st.booleans()),
                    "io_id": "io1", "mode": "requeue"}
        elif kind == "lock":
            args = {"lock": "reconfig_mutex", "lock_id": "l1",
                    "op": draw(st.sampled_from(["acquire", "release"]))}
        out.append(Event(ts=max(ts, 0), kind=kind, array=arr, tid=draw(st.sampled_from([5, 6])),
                         dm_name=draw(st.sampled_from(["", "", "vg-lv"])),
                         mddev=draw(st.sampled_from(["p:1", "p:1", "", "p:2"])),
                         state=draw(st.sampled_from(_STATES + [None])), args=args))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(events=_streams())
def test_random_streams_report_the_same_skimmed(events: list[Event], tmp_path: Path) -> None:
    _reports_equal(_write(tmp_path / "r.jsonl", events))


def test_first_skimmed_exit_starts_the_not_reaped_clock(tmp_path: Path) -> None:
    """DONE first seen by an md_check_recovery entry, then only identical re-reads: the first
    skimmed exit is when 'DONE, not yet reaped' starts (what F1/F2 time from)."""
    done = _st(["RUNNING", "SYNC", "DONE"], thread=True)
    t0 = 10**9
    evs = [Event(ts=t0, kind="thread_register", array="md0", tid=5, state=_st(["RUNNING"]),
                 args={"name": "md0_resync", "caller": "md_start_sync", "sync": True}),
           Event(ts=t0 + 1, kind="do_sync_enter", array="md0", tid=6,
                 state=_st(["RUNNING", "SYNC"], thread=True)),
           Event(ts=t0 + 2, kind="check_recovery_enter", array="md0", tid=5, state=done)]
    evs += [Event(ts=t0 + 3_000_000 * (i + 1), kind=k, array="md0", tid=5, state=done)
            for i, k in enumerate(["check_recovery_exit", "check_recovery_enter"] * 3000)]
    path = _write(tmp_path / "f1.jsonl", evs)
    _reports_equal(path)
    arr = _engine_state(path, True, False)[0]["md0"]
    assert arr.done_since == t0 + 3_000_000
