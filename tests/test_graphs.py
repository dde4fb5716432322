"""Lock-order and wait-for graphs on hand-built events (engine/locks.py, engine/waitfor.py)."""

from __future__ import annotations

from mdtrace.engine.locks import LockGraph
from mdtrace.engine.waitfor import WaitForGraph
from mdtrace.events import Event


def _lock(ts: int, tid: int, cls: str, op: str, inst: str = "") -> Event:
    return Event(ts=ts, kind="lock", array="md0", tid=tid, comm=f"t{tid}",
                 args={"lock": cls, "lock_id": inst or cls, "op": op})


def _take(g: LockGraph, ts: int, tid: int, cls: str) -> list:
    g.on_lock(_lock(ts, tid, cls, "acquire"))
    return g.on_lock(_lock(ts + 1, tid, cls, "acquired"))


def test_three_class_cycle_is_found_transitively() -> None:
    g = LockGraph()
    assert _take(g, 1, 1, "A") == [] and _take(g, 2, 1, "B") == []
    g.on_lock(_lock(3, 1, "B", "release"))
    g.on_lock(_lock(4, 1, "A", "release"))
    assert _take(g, 5, 2, "B") == [] and _take(g, 6, 2, "C") == []
    g.on_lock(_lock(7, 2, "C", "release"))
    g.on_lock(_lock(8, 2, "B", "release"))
    assert _take(g, 9, 3, "C") == []
    inv = _take(g, 11, 3, "A")
    assert len(inv) == 1
    assert inv[0].cycle == ["C", "A", "B", "C"]
    assert [(e.first, e.second) for e in inv[0].edges] == [("C", "A"), ("A", "B"), ("B", "C")]
    assert g.held == {3: g.held[3]} and [h.cls for h in g.held[3]] == ["C", "A"]


def test_same_order_twice_is_no_inversion_and_counts() -> None:
    g = LockGraph()
    for base, tid in ((0, 1), (10, 2)):
        _take(g, base, tid, "A")
        assert _take(g, base + 2, tid, "B") == []
        g.on_lock(_lock(base + 4, tid, "B", "release"))
        g.on_lock(_lock(base + 5, tid, "A", "release"))
    assert g.edges[("A", "B")].count == 2 and g.held == {} and g.owner == {}


def test_contention_only_mode_builds_no_order_and_no_holders() -> None:
    g = LockGraph()
    g.on_lock(_lock(1, 1, "A", "contend"))
    assert g.waiting[1][0] == "A"
    g.on_lock(_lock(2, 1, "A", "acquired"))
    g.on_lock(_lock(3, 1, "B", "contend"))
    assert g.on_lock(_lock(4, 1, "B", "acquired")) == []
    assert g.edges == {} and g.owner == {} and g.waiting == {}


def _ev(ts: int, tid: int) -> Event:
    return Event(ts=ts, kind="wait_begin", array="md0", tid=tid, comm=f"t{tid}")


def test_wait_for_cycle_and_its_end() -> None:
    g = WaitForGraph()
    owners = {"lock:L1": [2], "lock:L2": [1], "lock:L3": [9]}
    g.begin("lock", "lock:L1", _ev(10, 1))
    assert g.cycles(lambda r: owners.get(r, [])) == []
    g.begin("lock", "lock:L2", _ev(20, 2))
    cycles = g.cycles(lambda r: owners.get(r, []))
    assert len(cycles) == 1
    assert cycles[0].since_ns == 20
    assert {w.tid for w, _ in cycles[0].steps} == {1, 2}
    g.end(2, "lock")
    assert g.cycles(lambda r: owners.get(r, [])) == []


def test_provider_not_waiting_breaks_the_chain() -> None:
    g = WaitForGraph()
    g.begin("a", "io:md0", _ev(1, 1))
    g.begin("b", "reshape:md0", _ev(2, 2))
    # task 2's reshape is provided by the running sync thread 3, which waits for nothing
    assert g.cycles(lambda r: {"io:md0": [2], "reshape:md0": [3]}[r]) == []
    # ... unless the reshape waits for task 1 (the suspender): a cycle 1 -> 2 -> 1
    cyc = g.cycles(lambda r: {"io:md0": [2], "reshape:md0": [1]}[r])
    assert len(cyc) == 1 and len(cyc[0].steps) == 2
    g.end_resource("reshape:md0")
    assert g.waits == {1: g.waits[1]}
