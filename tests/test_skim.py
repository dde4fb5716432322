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
    out, ops, skimmed, _, _, blind, _, _ = _twins(tc, tp, b"\n".join(EDGE_LINES) + b"\n")
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


FOLD_T = b'{"t":%d,"k":"check_recovery_enter","a":"md0","c":1,"p":9,"i":9,"m":"md0_raid5",' \
    b'"md":"p:1","s":{"r":130,"st":true,"cr":%d,"rm":1048576,"lv":5}}'
FOLD_P = b'{"t":%d,"k":"progress","a":"md0","p":10,"i":10,"m":"md0_resync","md":"p:1",' \
    b'"s":{"r":130,"st":true,"cr":%d,"rm":1048576,"lv":5},' \
    b'"x":{"done":%d,"total":1048576,"action":"resync","speed_kbs":%d}}'
FOLD_IO = b'{"t":%d,"k":"io_stats","a":"md0","p":11,"i":11,"m":"fio","md":"p:1",' \
    b'"s":{"r":130,"st":true,"cr":%d,"rm":1048576,"lv":5},"x":{"requests":%d,"slow":0}}'
# (line, folds?) after FOLD_T, an ordinary FOLD_P and an ordinary FOLD_IO line
FOLD_CASES = [
    (FOLD_P % (10, 300, 300, 7), True),                            # numbers move
    (FOLD_IO % (11, 310, 99), True),
    (FOLD_T % (12, 310), True),                                    # a re-read after them
    (FOLD_P.replace(b'"resync"', b'"check"') % (13, 320, 320, 1), False),  # other action
    (FOLD_P.replace(b'"md":"p:1"', b'"dn":"vg-lv","md":"p:1"') % (14, 330, 330, 1), False),
    (FOLD_P.replace(b'"md":"p:1"', b'"md":"p:2"') % (15, 330, 330, 1), False),  # identity
    (FOLD_P.replace(b'"r":130', b'"r":131') % (16, 330, 330, 1), False),  # other flags
    (FOLD_P.replace(b'"m":"md0_resync"', b'"m":"md0_resync2"') % (17, 330, 330, 1), False),
    (FOLD_P.replace(b'"resync"', b'"re\\u0073ync"') % (18, 330, 330, 1), False),  # escape
    (FOLD_P.replace(b',"total":1048576', b'') % (19, 330, 330, 1), False),   # no total
    (FOLD_P.replace(b'"speed_kbs":%d', b'"speed_kbs":1.5') % (20, 330, 330), False),  # float
    (FOLD_P.replace(b'"lv":5}', b'"lv":5,"cr":1}') % (21, 330, 330, 1), False),  # 2nd cr
    (b'{"t":22,"k":"progress","a":"md0","x":{"done":5,"total":9,"action":"resync"}}', False),
    (FOLD_P % (23, 340, 340, 2), True),
    (FOLD_P % (24, 10**19, 340, 2), False),                        # cr past 18 digits
]


def _fold_block(line: bytes) -> bytes:
    lines = [FOLD_T % (1, 100), FOLD_P % (2, 100, 100, 5), FOLD_IO % (3, 100, 7),
             FOLD_T % (4, 200), line, FOLD_T % (30, 200)]
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("i", range(len(FOLD_CASES)))
def test_fold_rules(i: int, tmp_path: Path) -> None:
    """io_stats / progress lines fold into a run only when the engine would change nothing
    but counters, time, the position, resync_max and the sync action; C and Python agree,
    and the report equals the plain path's either way."""
    line, folds = FOLD_CASES[i]
    block = _fold_block(line)
    out = skim.scan_py({}, block, 0, 0, TICK)[0].split(b"\n")
    assert (line not in out) == folds
    assert (FOLD_T % (4, 200)) not in out     # a re-read
    if skim.ACCELERATED:
        _twins({}, {}, block)
    header = b'{"format":"mdtrace-trace","version":1,"kernel":"6.12.117"}\n'
    path = tmp_path / "fold.jsonl"
    path.write_bytes(header + block)
    _reports_equal(path, skip_bad=True)


def test_fold_moves_reach_engine_and_report(tmp_path: Path) -> None:
    """Folded progress lines: sysfs samples, speed and sync_action as the plain path has."""
    lines = [FOLD_T % (10**9, 100), FOLD_P % (10**9 + 1, 100, 100, 5)]
    for i in range(1, 400):
        ts = 10**9 + i * 50_000_000
        lines += [FOLD_T % (ts, 100 + 1000 * i), FOLD_P % (ts + 1, 100 + 1000 * i,
                                                          100 + 1000 * i + 7, i)]
        if i % 7 == 0:
            lines.append(FOLD_IO % (ts + 2, 100 + 1000 * i, i))
    header = b'{"format":"mdtrace-trace","version":1,"kernel":"6.12.117"}\n'
    path = tmp_path / "moves.jsonl"
    path.write_bytes(header + b"\n".join(lines) + b"\n")
    _reports_equal(path)
    arr = _engine_state(path, True, False)[0]["md0"]
    assert arr.sync_action == "resync" and arr.counters["progress"] == 400
    assert arr.prog_token == (100 + 1000 * 399, -1, 100 + 1000 * 399 + 7)
    assert arr.speed > 0


@needs_c
def test_moves_twins_agree() -> None:
    from mdtrace import moves
    rnd = random.Random(3)
    for _ in range(300):
        n = rnd.randrange(0, 60)
        ts = rnd.randrange(10**9)
        ms = []
        for _ in range(n):
            ts += rnd.choice([0, 1, 10**8, 6 * 10**8, 2 * 10**9])
            ms.append((ts, rnd.choice([0, 2, 3, 4, 4096, 8192, 10**6]), rnd.choice([-1, 0, 77]),
                       rnd.choice([0, 1, 2]), rnd.choice([0, 4, 4096, 10**6]),
                       rnd.choice([0, 1 << 20])))
        packed = moves.pack(ms)
        token = rnd.choice([None, (4, -1, 0), (4096, 77, 4), (2**64 - 1, -1, 0)])
        ref = rnd.choice([None, (ts - 10**9, 3), (0, 2**64 - 1)])
        args = (token, ref, rnd.choice([0.0, 12.5]), rnd.randrange(10**9), rnd.randrange(10**9))
        assert moves.fold(packed, *args) == moves.fold_py(packed, *args)
        start = rnd.choice([[], [(1, 4096, 1 << 20)], [(1, 2**64 - 1, 1 << 20)]])
        a, b = list(start), list(start)
        cap = rnd.choice([2, 5, 4096])
        rm = rnd.choice([0, 1 << 20])
        moves.points(a, packed, rm, cap)
        moves.points_py(b, packed, rm, cap)
        assert a == b and len(a) <= cap + 1


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
    _reports_equal(cut)          # issue 13: a cut trace reads without flags (abrupt end)
    b = build_report(cut, skim=False)
    a = build_report(cut, skim=True, prefetch=True)
    assert a.abrupt_end == b.abrupt_end and "cut short" in a.abrupt_end


_KINDS = ["check_recovery_enter", "check_recovery_exit"] * 6 + [
    "thread_register", "do_sync_enter", "do_sync_exit", "reap", "thread_unregister",
    "progress", "lock", "array_stop", "array_create", "io_wait", "sync_action"] + [
    "progress", "io_stats"] * 3
_STATES = [_st([]), _st(["NEEDED"]), _st(["RUNNING", "SYNC"], thread=True),
           _st(["RUNNING", "SYNC"], cr=4096, thread=True),
           _st(["RUNNING", "SYNC"], cr=8192, thread=True),
           _st(["RUNNING", "SYNC"], cr=10**6, thread=True),
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
        elif kind == "progress" and draw(st.booleans()):
            args = {"done": draw(st.sampled_from([0, 3, 4096, 8192, 10**6])),
                    "total": draw(st.sampled_from([0, 1 << 20, 1 << 21])),
                    "action": draw(st.sampled_from(["resync", "reshape", ""])),
                    "speed_kbs": draw(st.integers(0, 10**6))}
        elif kind == "io_stats":
            args = {"requests": draw(st.integers(0, 10**6)), "slow": draw(st.integers(0, 3))}
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
