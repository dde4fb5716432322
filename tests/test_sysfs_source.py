"""sysfs poller on a fake /sys + /proc/mdstat tree."""

from __future__ import annotations

import threading
from pathlib import Path

from mdtrace.sources.sysfs import SysfsSource, parse_mdstat

MDSTAT = """Personalities : [raid6] [raid5] [raid4] [raid1]
md0 : active raid5 vdd[2] vdc[1] vdb[0]
      65536 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/3] [UUU]
      [=====>...............]  resync = 27.1% (8896/32768) finish=0.2min speed=1000K/sec

md1 : inactive vde[0](S)
      262144 blocks super 1.2

unused devices: <none>
"""


def _md(root: Path, name: str, **attrs: str) -> Path:
    d = root / "sys" / "block" / name / "md"
    d.mkdir(parents=True, exist_ok=True)
    base = {"level": "raid5", "array_state": "clean", "sync_action": "idle",
            "sync_completed": "none", "degraded": "0", "raid_disks": "3",
            "reshape_position": "none", "sync_speed": "none"}
    base.update(attrs)
    for k, v in base.items():
        (d / k).write_text(v + "\n")
    return d


def _src(tmp: Path) -> SysfsSource:
    (tmp / "proc").mkdir(exist_ok=True)
    (tmp / "proc" / "mdstat").write_text(MDSTAT)
    return SysfsSource(sys_root=tmp / "sys", proc_root=tmp / "proc", interval=0.01,
                       dmsetup=None)


def test_parse_mdstat() -> None:
    assert parse_mdstat(MDSTAT) == {"md0": "raid5", "md1": ""}


def test_state_progress_and_stop(tmp_path: Path) -> None:
    d = _md(tmp_path, "md0", sync_action="resync", array_state="active",
            sync_completed="17792 / 65536", sync_speed="1000 (1000)")
    src = _src(tmp_path)
    evs = src.poll(now_ns=1)
    kinds = [(e.kind, e.array) for e in evs]
    assert ("sysfs_state", "md0") in kinds and ("progress", "md0") in kinds
    assert ("sysfs_state", "md1") in kinds                 # known from mdstat only
    st = next(e for e in evs if e.kind == "sysfs_state" and e.array == "md0")
    assert st.args["sync_action"] == "resync" and st.args["raid_disks"] == 3
    pr = next(e for e in evs if e.kind == "progress")
    assert (pr.args["done"], pr.args["total"], pr.args["speed_kbs"]) == (17792, 65536, 1000)
    assert src.poll(now_ns=2) == []                        # nothing changed, nothing said
    (d / "sync_completed").write_text("20000 / 65536\n")
    assert [e.kind for e in src.poll(now_ns=3)] == ["progress"]
    (d / "sync_action").write_text("reshape\n")
    (d / "reshape_position").write_text("4096\n")
    (d / "array_state").write_text("readonly\n")
    ev = src.poll(now_ns=4)[0]
    assert ev.kind == "sysfs_state" and ev.args["reshape_position"] == 4096 and ev.args["ro"] == 1
    import shutil

    shutil.rmtree(tmp_path / "sys" / "block" / "md0")
    (tmp_path / "proc" / "mdstat").write_text("Personalities :\nunused devices: <none>\n")
    stops = [e.array for e in src.poll(now_ns=5) if e.kind == "array_stop"]
    assert sorted(stops) == ["md0", "md1"]


def test_events_stream_stops(tmp_path: Path) -> None:
    _md(tmp_path, "md0")
    src = _src(tmp_path)
    stop = threading.Event()
    got = []
    for ev in src.events(stop):
        got.append(ev)
        if len(got) >= 3:
            stop.set()
    assert got[0].kind == "probe_status" and got[0].args["method"] == "poll"
    assert src.header.source == "sysfs"


def test_no_md_at_all(tmp_path: Path) -> None:
    src = SysfsSource(sys_root=tmp_path / "nosys", proc_root=tmp_path / "noproc",
                      dmsetup=lambda: "")
    assert src.poll() == []


DMSETUP = """vgt-lvt: 0 32768 raid raid1 2 AA 16384/32768 resync 0 0 -
vgt-lvt_rimage_0: 0 32768 linear
vg2-r5: 0 262144 raid raid5_ls 4 AAAD 262144/262144 idle 0 0 -
"""


def test_dm_raid_from_dmsetup(tmp_path: Path) -> None:
    from mdtrace.sources.sysfs import parse_dmsetup_status

    got = parse_dmsetup_status(DMSETUP)
    assert sorted(got) == ["vg2-r5", "vgt-lvt"]
    assert got["vg2-r5"].degraded == 1 and got["vg2-r5"].raid_disks == 4
    (tmp_path / "sys/block/dm-4/dm").mkdir(parents=True)
    (tmp_path / "sys/block/dm-4/dm/name").write_text("vgt-lvt\n")
    src = SysfsSource(sys_root=tmp_path / "sys", proc_root=tmp_path / "proc",
                      dmsetup=lambda: DMSETUP)
    evs = src.poll(now_ns=1)
    st = {e.array: e for e in evs if e.kind == "sysfs_state"}
    assert st["dm-4"].dm_name == "vgt-lvt" and st["dm-4"].args["kind"] == "dm-raid"
    assert st["dm-4"].args["sync_action"] == "resync" and st["dm-4"].args["level"] == "raid1"
    assert "vg2-r5" in st                           # no dm-N known: keyed by its dm name
    pr = next(e for e in evs if e.kind == "progress" and e.array == "dm-4")
    assert (pr.args["done"], pr.args["total"]) == (16384, 32768)


def test_unchanged_position_is_resampled_while_syncing(tmp_path: Path) -> None:
    """F10 needs evidence that a running sync did NOT move: the poller re-samples it."""
    from mdtrace.sources.sysfs import SAMPLE_NS

    d = _md(tmp_path, "md0", sync_action="resync", array_state="active",
            sync_completed="17792 / 65536", sync_speed="0 (0)")
    src = _src(tmp_path)
    assert [e.kind for e in src.progress_only(now_ns=1)] == ["progress"]
    assert src.progress_only(now_ns=2) == []
    again = src.progress_only(now_ns=1 + SAMPLE_NS)
    assert [e.args["done"] for e in again] == [17792]
    (d / "sync_action").write_text("idle\n")
    assert src.progress_only(now_ns=1 + 3 * SAMPLE_NS) == []
