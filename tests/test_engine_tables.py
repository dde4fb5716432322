"""Two mddevs under one dm name (a dm-raid table reload) and F3's exit ownership.

lvm2 loads the new table (raid_ctr: a new mddev under the same dm-N) while the old one is
active, resumes it, and only then does dm destroy the old one (raid_dtr -> md_stop): the
replaced table's array_stop lands milliseconds around the new table's md_do_sync exit
(3.5 ms on 6.1, 12 ms on the zoo's 6.12 p3).  The engine keeps one record per mddev
(engine/core.py _other_mddev) and a stop owns only its own mddev's exit
(engine/detectors/no_done.py).  Real data: the zoo's p3 golden (82ec0ae59d02 reverted on
6.12.117, lvconvert hangs in stop_sync_thread) and the 6.1 lvm2 reshape golden, where the
same exit is by design (f52f5c71f3d4, 6.7, is what makes a stop wait for DONE).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mdtrace.config import EngineConfig
from mdtrace.engine.core import Engine
from mdtrace.engine.detectors.base import fix_missing, fix_seen
from mdtrace.engine.findings import FindingStore
from mdtrace.engine.model import Finding, Severity
from mdtrace.events import canonicalise
from mdtrace.trace import TraceReader
from tests.scenarios.builder import Sim

GOLDEN = Path(__file__).parent / "data" / "golden"
P3 = GOLDEN / "zoo_p3__lvm_reshape_suspend.jsonl.gz"
LVM61 = GOLDEN / "6.1.0-56-amd64" / "lvm_raid5_reshape.jsonl.gz"
K61, K67 = "6.1.0-56-amd64", "6.7.12-amd64"


def _replay(path: Path, kernel: str | None = None, grace: float = 2.0) -> Engine:
    reader = TraceReader(path)
    eng = Engine(EngineConfig().with_overrides({"done_grace_s": grace}),
                 kernel=reader.header.kernel if kernel is None else kernel)
    for ev in reader:
        eng.feed(ev)
    eng.finish()
    return eng


def _f3(eng: Engine) -> list[Finding]:
    return [f for f in eng.findings if f.code == "F3"]


# -- real data -------------------------------------------------------------------------------


@pytest.mark.parametrize("grace", [0.1, 2.0, 10.0])
def test_p3_f3_on_the_new_tables_mddev_until_the_end(grace: float) -> None:
    """p3: the replaced table's array_stop (mddev p:dddc32eec413) 12 ms before the new table's
    exit (p:f266da63d530) does not own it; F3 opens at the exit and stays open through the
    next table load's events (a third mddev, p:f7a14cf1248a, 5 s later) to the trace's end."""
    eng = _replay(P3, grace=grace)
    f3 = _f3(eng)
    assert len(f3) == 1 and f3[0].active, [(f.key, f.end_ns) for f in f3]
    f = f3[0]
    assert f.start_ns == 270_357_989_404        # the do_sync_exit without DONE
    ev = next(e for e in TraceReader(P3) if e.kind == "do_sync_exit" and e.ts == f.start_ns)
    stop = next(e for e in TraceReader(P3) if e.kind == "array_stop"
                and 0 < f.start_ns - e.ts < 20_000_000)
    assert stop.mddev != ev.mddev == "p:f266da63d530"
    assert f.array == "dm-6" and f.details["recovery"] == ["RUNNING", "WAIT", "RESHAPE"]


def test_p3_without_the_mddev_records_would_lose_the_exit() -> None:
    """The new table load's events (another mddev) come before the old table's stuck
    postsuspend: the exit's record must survive them.  The record that holds F3 is the one
    the postsuspend events land on again (same generation)."""
    eng = _replay(P3)
    f = _f3(eng)[0]
    gen = int(f.key.rsplit(":", 1)[1])
    view = eng.snapshot().arrays["dm-6"]
    assert view.generation == gen                   # the postsuspend's mddev, come back
    assert "F3" in view.findings_active


@pytest.mark.parametrize("grace", [0.1, 2.0, 10.0])
def test_p3_trace_on_a_kernel_before_f52f5c71f3d4_is_by_design(grace: float) -> None:
    """The same events judged as 6.1's: its stops kthread_stop the thread and never wait
    for DONE, so the exit is not F3 (whatever the grace)."""
    assert not _f3(_replay(P3, kernel=K61, grace=grace))


def test_61_reload_judged_as_67_is_f3_until_the_stop_path_takes_the_thread() -> None:
    """The converse on the real 6.1 lvm2 reshape: judged as a 6.7 kernel (stops wait for
    DONE), the new table's WAIT exit (mddev p:d780f8f1bc9e, 3.5 ms after the replaced table's
    stop) is F3, and it closes when 6.1's postsuspend -> __md_stop_writes unregisters the
    thread 2.2 s later.  As recorded (6.1) there is none: tests/test_engine_golden.py."""
    f3 = _f3(_replay(LVM61, kernel=K67))
    assert len(f3) == 1
    f = f3[0]
    assert f.start_ns == 127_608_891_495 and f.end_ns is not None
    unreg = next(e for e in TraceReader(LVM61) if e.kind == "thread_unregister"
                 and e.args.get("caller") == "__md_stop_writes" and e.ts > f.start_ns)
    assert unreg.ts <= f.end_ns < unreg.ts + 200_000_000      # the next tick after it
    assert not _f3(_replay(LVM61))


# -- the rule on synthetic streams -------------------------------------------------------------


def _reload(sim: Sim, own_stop_after_s: float | None) -> None:
    """Old table B live; new table C loaded, resumed; B's raid_dtr (array_stop) 3.5 ms
    before C's reshape thread leaves md_do_sync with WAIT and without DONE; C stays live
    (optionally its own stop follows)."""
    lvm = sim.task("lvconvert")
    b = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5", ident="b")
    b.create(lvm)
    sim.idle(b, 2)
    c = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5", ident="c")
    c.create(lvm)
    c.set("WAIT", "RESHAPE")
    c.reshape_pos = 0
    b.stop(lvm)
    sim.sleep(0.0035)
    c.start_sync("reshape")
    c.emit("do_sync_enter", c.sync_task, thread="mdX_reshape", action="reshape")
    c.end_sync("reshape", done=False)
    if own_stop_after_s is not None:
        sim.idle(c, own_stop_after_s, every_s=0.1)
        c.stop(lvm)
    sim.idle(sim.array("md1"), 6)


def _run(sim: Sim, grace: float = 2.0) -> Engine:
    eng = Engine(EngineConfig().with_overrides({"done_grace_s": grace}), kernel=sim.kernel)
    for ev in sim.events:
        eng.feed(canonicalise(ev, sim.table))
    eng.finish()
    return eng


@pytest.mark.parametrize("grace", [0.1, 2.0])
def test_another_mddevs_stop_does_not_own_the_exit(grace: float) -> None:
    sim = Sim(K67)
    _reload(sim, None)
    assert [f.array for f in _f3(_run(sim, grace))] == ["dm-6"]


@pytest.mark.parametrize("grace", [0.1, 2.0])
def test_the_own_mddevs_stop_owns_the_exit(grace: float) -> None:
    sim = Sim(K67)
    _reload(sim, 0.5)                      # C's own raid_dtr -> md_stop 0.5 s later
    assert not _f3(_run(sim, grace))


def test_a_displaced_record_keeps_its_grace_running() -> None:
    """C's exit, then at once a third table D's events only (C silent, as a hung table is):
    the tick judges C where it waits, so F3 comes while D's events come in, and D's own
    stop does not close C's finding."""
    sim = Sim(K67)
    lvm = sim.task("lvconvert")
    c = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5", ident="c")
    c.create(lvm)
    c.set("WAIT", "RESHAPE")
    c.start_sync("reshape")
    c.emit("do_sync_enter", c.sync_task, thread="mdX_reshape", action="reshape")
    c.end_sync("reshape", done=False)
    d = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5", ident="d")
    d.create(lvm)
    sim.idle(d, 4)
    d.stop(lvm)
    d_stop = sim.events[-1].ts
    sim.idle(sim.array("md1"), 2)
    eng = _run(sim)
    f3 = _f3(eng)
    assert len(f3) == 1 and f3[0].active
    assert f3[0].start_ns < d_stop


# -- finding store and fix text ------------------------------------------------------------------


def _finding(code: str) -> Finding:
    return Finding(code=code, title="t", array="dm-6", start_ns=1, severity=Severity.WARNING,
                   explanation="e", remedy="r")


def test_close_array_closes_one_generation_and_the_graph_findings() -> None:
    fs = FindingStore()
    fs.add("F3:dm-6:5", _finding("F3"), 5)
    fs.add("F7:dm-6:6:x", _finding("F7"), 6)
    fs.add("F9:cycle", _finding("F9"))                # graph finding: no generation
    fs.close_array("dm-6", 10, 6)
    assert fs.get("F3:dm-6:5").active                 # type: ignore[union-attr]
    assert not fs.get("F7:dm-6:6:x").active            # type: ignore[union-attr]
    assert not fs.get("F9:cycle").active               # type: ignore[union-attr]
    fs.close_array("dm-6", 11)
    assert not fs.get("F3:dm-6:5").active              # type: ignore[union-attr]
    assert "dm-6" not in fs.open


def test_fix_seen_says_what_the_version_cannot() -> None:
    commit = "82ec0ae59d02 md: make sure md_do_sync() will set MD_RECOVERY_DONE"
    old = fix_seen(K67, (6, 8), commit, "md_do_sync returned without DONE")
    # before the fix: as fix_missing says it, and the plain upgrade advice
    assert old.line == fix_missing(K67, (6, 8), commit + " (6.8)") == commit + " (6.8)"
    assert old.upgrade == "upgrade to a kernel with the fix"
    assert fix_seen("", (6, 8), commit, "x").line == commit + " (6.8)"
    new = fix_seen("6.12.117+deb12-amd64", (6, 8), commit, "md_do_sync returned without DONE")
    assert new.line == (f"fixed upstream by {commit} (in 6.8); this kernel "
                        "(6.12.117+deb12-amd64) is 6.8 or later by its version but behaves "
                        "as if it lacks it (md_do_sync returned without DONE)")
    assert "lacks 82ec0ae59d02" in new.upgrade and "upgrade to a kernel" not in new.upgrade
    # fix_missing (findings that are not the bug's own evidence) still drops it
    assert fix_missing("6.12.117+deb12-amd64", (6, 8), commit) == ""


def test_f1_on_a_fixed_by_version_kernel_names_the_fix() -> None:
    """F1 (DONE never reaped on a suspended array) on 6.12: 1baae052cccd is in 6.8, so the
    kernel seen doing it behaves as if it lacks it (the zoo's p1 is such a build)."""
    from mdtrace.engine.arrays import ArrayRec
    from mdtrace.engine.detectors import not_reaped
    from mdtrace.engine.detectors.base import Context

    arr = ArrayRec(name="dm-6", kind="dm-raid", dm_name="vg-r5")
    arr.done_since, arr.sync_thread, arr.suspended = 0, True, 1
    got = [v.finding for v in not_reaped.check(Context(arr, None, int(100e9), EngineConfig(),
                                                       "6.12.117+deb12-amd64"))
           if v.finding is not None]
    assert [f.code for f in got] == ["F1"]
    assert got[0].fix.startswith("fixed upstream by 1baae052cccd") and \
        "behaves as if it lacks it (DONE not reaped on a suspended array)" in got[0].fix
    assert "lacks 1baae052cccd" in got[0].remedy
    old = [v.finding for v in not_reaped.check(Context(arr, None, int(100e9), EngineConfig(),
                                                       K67)) if v.finding is not None]
    assert old[0].fix == "1baae052cccd md: don't ignore suspended array in " \
        "md_check_recovery() (6.8)" and old[0].remedy.endswith("upgrade to a kernel with the fix.")
