"""Change-only md_check_recovery reports (issue 12): the ``calls`` argument end to end.

The BPF reports an enter / exit only when the array's state words change, plus one exit a
second per array with the positions; ``calls`` (a0 of the record; 0 or 1 mean just itself)
is how many calls of that kind the event stands for.  The decoder maps it, the reader
range-checks it, the engine counts it wherever it counts md_check_recovery calls, and a
change-only stream made from a real old-shape trace gives the engine what the full stream
gives it.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest

from mdtrace.engine.core import Engine
from mdtrace.events import ArrayState, Event, calls, check
from mdtrace.frontends.report import build_report, render
from mdtrace.kernel.flags import RECOVERY_6_11, FlagTable
from mdtrace.pointers import PointerHasher
from mdtrace.sources.bcc_decode import RAW, Ev, RawDecoder
from mdtrace.trace import TraceError, TraceHeader, TraceReader, TraceWriter

REPO = Path(__file__).resolve().parents[1]
GOLDEN = sorted(glob.glob(str(REPO / "tests/data/golden/*/*.jsonl.gz")))
ENTER, EXIT = "check_recovery_enter", "check_recovery_exit"
S = 1_000_000_000


def _raw(kind: int, a0: int) -> bytes:
    return RAW.pack(123, 0xFFFF8881_2345_6000, 1 << 7 | 1 << 1, 0, (1 << 64) - 1, 0, 0,
                    a0, 0, 0, 0, kind, 1, 100, 101, 0, 0, 5, 1, 1, 0, 0, b"md0_raid5", b"md0",
                    b"", b"")


@pytest.mark.parametrize("kind", [Ev.CHECK_RECOVERY_ENTER, Ev.CHECK_RECOVERY_EXIT])
def test_decoder_maps_a0_to_calls(kind: Ev) -> None:
    dec = RawDecoder(FlagTable.from_enums(RECOVERY_6_11, {}), PointerHasher(b"x" * 16),
                     ksym=lambda a: "", dm_names=lambda d: "")
    for a0, args in ((0, {}), (1, {}), (2, {"calls": 2}), (437, {"calls": 437})):
        ev = dec.decode(_raw(kind, a0))
        assert ev is not None and ev.args == args, a0
        assert calls(ev) == max(a0, 1) and check(ev) is None
    stop = dec.decode(_raw(Ev.ARRAY_STOP, 5))       # a0 means nothing there
    assert stop is not None and stop.kind == "array_stop" and stop.args == {}


def _ev(kind: str, ts: int, **args: object) -> Event:
    return Event(ts=ts, kind=kind, array="md0", tid=500, mddev="p:1",
                 state=ArrayState(recovery=1 << 7 | 1 << 1, sync_thread=True, rec=0, mdf=0),
                 args=dict(args))


@pytest.mark.parametrize("bad", [0, -1, True, "3", 1.5, 1 << 64, None])
def test_check_refuses_a_bad_count(bad: object) -> None:
    why = check(_ev(ENTER, 1, calls=bad))
    assert why is not None and "'calls'" in why and "positive integer" in why, why


def test_a_bad_count_is_a_bad_line_in_a_trace(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    with TraceWriter(p, TraceHeader(kernel="6.12.1", source="bcc")) as w:
        w.write(_ev(ENTER, S, calls=3))
        w.write(_ev(EXIT, 2 * S, calls=0))
    with pytest.raises(TraceError) as exc:
        list(TraceReader(p))
    msg = str(exc.value)
    assert "bad.jsonl:3:" in msg and "calls" in msg and "\n" not in msg
    r = TraceReader(p, skip_bad=True)
    assert [calls(e) for e in r] == [3] and r.bad_lines == 1


def test_calls_only_count_for_md_check_recovery() -> None:
    assert calls(Event(ts=1, kind="io_stats", array="md0", args={"calls": 9})) == 1
    assert calls(_ev(EXIT, 1)) == 1 and calls(_ev(EXIT, 1, calls=64)) == 64


def test_engine_counts_calls_not_events() -> None:
    eng = Engine()
    eng.feed(_ev(ENTER, S, calls=70))
    eng.feed(_ev(EXIT, S + 1, calls=71))
    eng.feed(_ev(EXIT, 2 * S))                        # old shape: one call
    eng.feed(Event(ts=3 * S, kind="io_stats", array="md0", mddev="p:1",
                   args={"requests": 1}))
    snap = eng.snapshot()
    assert snap.arrays["md0"].counters == {ENTER: 70, EXIT: 72, "io_stats": 1}
    assert snap.health.events_by_kind == {ENTER: 70, EXIT: 72, "io_stats": 1}
    assert snap.health.events_total == 143


# -- a change-only stream from a real old-shape trace ---------------------------------------
def _words(ev: Event) -> tuple:
    st = ev.state
    assert st is not None
    return (st.recovery, st.flags, st.ro, st.suspended, st.sync_thread, st.reshape_pos is None)


def change_only(events: list[Event]) -> list[Event]:
    """What the change-only BPF would have written for the same calls: per array (struct mddev)
    and kind, an event when the state words differ from the last reported one of its kind, else an
    exit once a second; ``calls`` counts the calls folded into it.  The last call of each
    kind is always reported (so that no call goes uncounted at the end of the trace)."""
    last: dict[tuple[str, str, str], tuple] = {}
    last_exit: dict[tuple[str, str], int] = {}
    pending: dict[tuple[str, str, str], int] = {}
    held: dict[tuple[str, str, str], tuple[int, Event]] = {}
    out: list[Event | None] = []
    for ev in events:
        if ev.kind not in (ENTER, EXIT) or ev.state is None:
            out.append(ev)
            continue
        key = (ev.array, ev.mddev, ev.kind)     # the BPF keeps it per struct mddev
        pending[key] = pending.get(key, 0) + 1
        w = _words(ev)
        if w == last.get(key) and (ev.kind == ENTER or
                                   ev.ts - last_exit.get(key[:2], 0) < S):
            held[key] = (len(out), ev)       # the latest unreported call of its kind
            out.append(None)
            continue
        n, pending[key] = pending[key], 0
        held.pop(key, None)
        last[key] = w
        if ev.kind == EXIT:
            last_exit[key[:2]] = ev.ts
        out.append(Event(**{**{f: getattr(ev, f) for f in ev.__struct_fields__},
                            "args": {"calls": n} if n > 1 else {}}))
    for key, (i, ev) in held.items():          # the trace's end: flush what is pending
        n = pending[key]
        out[i] = Event(**{**{f: getattr(ev, f) for f in ev.__struct_fields__},
                          "args": {"calls": n} if n > 1 else {}})
    return [e for e in out if e is not None]


def _life(history: list[tuple[int, str]]) -> list[str]:
    out: list[str] = []
    for _, state in history:
        if str(state) not in ("idle", "needed") and (not out or out[-1] != str(state)):
            out.append(str(state))
    return out


def _copy(src: str, dst: Path, events: list[Event]) -> None:
    header = TraceReader(src).header
    with TraceWriter(dst, header) as w:
        for ev in events:
            w.write(ev)


@pytest.mark.parametrize("path", GOLDEN, ids=[p.split("golden/")[-1] for p in GOLDEN])
def test_change_only_stream_tells_the_engine_what_the_full_one_does(path: str,
                                                                    tmp_path: Path) -> None:
    full = list(TraceReader(path))
    thin = change_only(full)
    n_cr = sum(e.kind in (ENTER, EXIT) for e in full)
    assert sum(e.kind in (ENTER, EXIT) for e in thin) < n_cr / 2, "nothing was folded"
    p = tmp_path / "thin.jsonl.gz"
    _copy(path, p, thin)
    a, b = build_report(path), build_report(p)
    # every finding (class, array, evidence kinds), every array's counters and lifecycle
    assert [(f.code, f.array, f.active) for f in a.findings] == \
        [(f.code, f.array, f.active) for f in b.findings]
    mddevs: dict[str, set[str]] = {}
    for ev in full:
        mddevs.setdefault(ev.array, set()).add(ev.mddev)
    for name, va in a.snapshot.arrays.items():
        vb = b.snapshot.arrays[name]
        if len(mddevs[name]) == 1:
            # (two dm tables under one name alternate generations: the BPF counts per
            # struct mddev, so calls folded across a generation land in the other one)
            assert va.counters == vb.counters, name
        assert va.lifecycle == vb.lifecycle, name
        # the sync thread's life, without the daemon's NEEDED-at-enter / clear-by-exit
        # flicker (idle <-> needed), which a change-only stream reports only when it changes
        assert _life(va.history) == _life(vb.history), name
    assert a.snapshot.health.events_by_kind == b.snapshot.health.events_by_kind
    # the report counts calls, so its event totals agree too, while the file holds fewer
    ja, jb = json.loads(render(a, "json")), json.loads(render(b, "json"))
    assert ja["health"]["events_by_kind"] == jb["health"]["events_by_kind"]
    assert {n: t["events"] for n, t in ja["timelines"].items()} == \
        {n: t["events"] for n, t in jb["timelines"].items()}
    assert b.events_read < a.events_read
