"""A live session started after the hang: the start-up snapshot finds it before any probe, the
re-scans follow the blocked task, and its finding ends once the task is unblocked."""

from __future__ import annotations

import shutil
from pathlib import Path

from test_diagnose import Task, md_array, proc_tree, raid5d, stack

from mdtrace.config import EngineConfig
from mdtrace.engine.core import Engine
from mdtrace.live import prime
from mdtrace.sources.snapshot import klog
from mdtrace.sources.snapshot.watch import BlockedTaskWatch

NOW = 5_000_000_000_000


def _watch(tmp: Path, clock: list[int]) -> BlockedTaskWatch:
    return BlockedTaskWatch(tmp / "sys", tmp / "proc", dmsetup=lambda: ("", ""),
                            kernel_log=lambda: (klog.parse_text(""), ""),
                            clock=lambda: clock[0])


def _active(eng: Engine) -> list[tuple[str, str]]:
    return sorted((f.code, f.array) for f in eng.findings if f.active)


def test_blocked_write_found_at_start_followed_and_ended(tmp_path: Path) -> None:
    md_array(tmp_path / "sys", "md0", sync_action="frozen", reshape_position="4096")
    dd = Task(812, "dd", stack=stack("dd_raid5_reshape_61.stack"), fds=("/dev/md0",),
              blocked_s=7.0)
    proc_tree(tmp_path / "proc", [raid5d(), dd], "6.1.0-56-amd64")
    clock = [NOW]
    watch = _watch(tmp_path, clock)
    eng = Engine(EngineConfig(io_wait_s=5.0), mode="live", kernel="6.1.0-56-amd64")
    # blocked 7 s before mdtrace started: F7 at once, before any probe exists
    found = prime(eng, watch, clock=lambda: clock[0])
    assert ("F7", "md0") in [(f.code, f.array) for f in found if f.active]
    f7 = next(f for f in eng.findings if f.code == "F7")
    assert f7.start_ns <= NOW and "dd" in f7.explanation
    # still blocked at the next scan: re-reported, the same finding stays
    clock[0] += 2_000_000_000
    again = watch.rescan()
    assert [e.kind for e in again] == ["task_blocked"]
    for ev in again:
        eng.feed(ev)
    eng.advance(clock[0])
    assert _active(eng) == [("F7", "md0")]
    # the remedy: the write completes, the task leaves md code
    shutil.rmtree(tmp_path / "proc" / "812")
    clock[0] += 2_000_000_000
    gone = watch.rescan()
    assert [(e.kind, e.tid, e.array) for e in gone] == [("task_unblocked", 812, "md0")]
    for ev in gone:
        eng.feed(ev)
    eng.advance(clock[0])
    assert _active(eng) == []
    snap = eng.snapshot()
    assert snap.blocked_tasks == [] and snap.arrays["md0"].blocked_io == []


def test_a_short_wait_at_start_becomes_f7_when_rescans_see_it_pass_the_threshold(
        tmp_path: Path) -> None:
    md_array(tmp_path / "sys", "md0", sync_action="frozen", reshape_position="4096")
    dd = Task(812, "dd", stack=stack("dd_raid5_reshape_61.stack"), fds=("/dev/md0",),
              blocked_s=1.0)
    proc_tree(tmp_path / "proc", [raid5d(), dd], "6.1.0-56-amd64")
    clock = [NOW]
    watch = _watch(tmp_path, clock)
    eng = Engine(EngineConfig(io_wait_s=5.0), mode="live", kernel="6.1.0-56-amd64")
    assert [f for f in prime(eng, watch, clock=lambda: clock[0]) if f.active] == []
    for _ in range(3):                      # 1 s + 3 x 2 s: past the 5 s threshold
        clock[0] += 2_000_000_000
        for ev in watch.rescan():
            eng.feed(ev)
        eng.advance(clock[0])
    assert _active(eng) == [("F7", "md0")]


def test_unreadable_snapshot_is_a_warning_not_a_failure() -> None:
    class Broken:
        def startup(self) -> list:
            raise PermissionError("/proc: denied")

    said: list[str] = []
    eng = Engine(mode="live", kernel="6.1.0-56-amd64")
    assert prime(eng, Broken(), warn=said.append) == []
    assert said and "start-up snapshot not read" in said[0]
