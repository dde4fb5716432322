"""Issue 16: sysfs values node_exporter's md collector gets wrong or lacks, end to end through
the sysfs poller (fixture /sys and /proc trees, a fake `dmsetup status`) and the engine to
the exported metrics: ``sync_completed`` = ``delayed`` / ``none`` (procfs fails a whole
scrape on ``delayed``), a reshape (node_exporter exports no reshape state), and a dm-raid LV
(absent from /proc/mdstat and /sys/block/md*, so node_exporter has nothing for it)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from test_exporter_support import parse, value

from mdtrace.engine.core import Engine
from mdtrace.frontends.exporter.collector import SnapshotCollector
from mdtrace.sources.sysfs import SysfsSource

MDSTAT = """Personalities : [raid1] [raid6] [raid5] [raid4]
md0 : active raid5 vdd[3] vdc[2] vdb[1] vda[0]
      1046528 blocks super 1.2 level 5, 512k chunk, algorithm 2 [4/4] [UUUU]

unused devices: <none>
"""


def _md(root: Path, name: str, **attrs: str) -> None:
    d = root / "sys" / "block" / name / "md"
    d.mkdir(parents=True)
    base = {"level": "raid5", "array_state": "clean", "sync_action": "idle",
            "sync_completed": "none", "degraded": "0", "raid_disks": "4",
            "reshape_position": "none", "sync_speed": "none"}
    for k, v in {**base, **attrs}.items():
        (d / k).write_text(v + "\n")


def _tree(tmp: Path, **attrs: str) -> Path:
    (tmp / "proc").mkdir(parents=True)
    (tmp / "proc" / "mdstat").write_text(MDSTAT)
    _md(tmp, "md0", **attrs)
    return tmp


def _scrape(root: Path, dmsetup: str = "", polls: int = 1) -> dict:
    src = SysfsSource(sys_root=root / "sys", proc_root=root / "proc",
                      dmsetup=lambda: dmsetup)
    eng = Engine(mode="sysfs")
    for i in range(polls):
        for ev in src.poll(now_ns=(i + 1) * 1_000_000_000):
            eng.feed(ev)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(eng.snapshot))
    return parse(generate_latest(reg).decode())


def test_sync_completed_delayed_is_a_value_not_a_failed_scrape(tmp_path: Path) -> None:
    # a resync waiting for another array on the same disks: sync_action resync, 'delayed'
    s = _scrape(_tree(tmp_path, sync_action="resync", sync_completed="delayed",
                      array_state="active"))
    assert value(s, "mdtrace_array_sync_action", array="md0", action="resync") == 1
    assert value(s, "mdtrace_array_sync_action", array="md0", action="idle") == 0
    # no position yet: nothing done, no range known (total absent), and no error
    assert value(s, "mdtrace_array_sync_completed_bytes", array="md0") == 0
    assert value(s, "mdtrace_array_sync_total_bytes", array="md0") is None
    assert value(s, "mdtrace_arrays") == 1


def test_sync_completed_none_idle_array(tmp_path: Path) -> None:
    s = _scrape(_tree(tmp_path))
    assert value(s, "mdtrace_array_sync_action", array="md0", action="idle") == 1
    assert value(s, "mdtrace_array_sync_completed_bytes", array="md0") == 0
    assert value(s, "mdtrace_array_sync_total_bytes", array="md0") is None
    assert value(s, "mdtrace_array_reshape_position_bytes", array="md0") is None
    assert value(s, "mdtrace_array_disks_required", array="md0") == 4


RESHAPE = {"sync_action": "reshape", "sync_completed": "24576 / 2093056",
           "reshape_position": "12288", "array_state": "active", "raid_disks": "5"}


def test_reshape_state_and_progress(tmp_path: Path) -> None:
    s = _scrape(_tree(tmp_path, **RESHAPE))
    assert value(s, "mdtrace_array_sync_action", array="md0", action="reshape") == 1
    assert value(s, "mdtrace_array_state", array="md0", state="reshape") == 1
    assert value(s, "mdtrace_array_sync_completed_bytes", array="md0") == 24576 * 512
    assert value(s, "mdtrace_array_sync_total_bytes", array="md0") == 2093056 * 512
    assert value(s, "mdtrace_array_disks_required", array="md0") == 5


def test_dm_raid_lv_from_dmsetup_status(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    dm = root / "sys" / "block" / "dm-6" / "dm"
    dm.mkdir(parents=True)
    (dm / "name").write_text("mdtvg-r5\n")
    # what `dmsetup status --target raid` printed for the LV mid-reshape in the 6.1 guest
    status = "mdtvg-r5: 0 262144 raid raid5_ls 4 aaaA 38528/131072 reshape 0 0 -\n"
    s = _scrape(root, dmsetup=status)
    assert value(s, "mdtrace_arrays") == 2
    assert value(s, "mdtrace_array_sync_action", array="dm-6", device="mdtvg-r5",
                 action="reshape") == 1
    assert value(s, "mdtrace_array_sync_completed_bytes", array="dm-6") == 38528 * 512
    assert value(s, "mdtrace_array_sync_total_bytes", array="dm-6") == 131072 * 512
    assert value(s, "mdtrace_array_disks_required", array="dm-6") == 4
    info = [k for k in s if k[0] == "mdtrace_array_info" and ("array", "dm-6") in k[1]]
    assert info and ("kind", "dm-raid") in info[0][1]
    # a dead leg ('D') is a degraded disk
    s = _scrape(root, dmsetup=status.replace("aaaA", "aDaA"))
    assert value(s, "mdtrace_array_degraded_disks", array="dm-6") == 1


def test_reshape_position_from_sysfs(tmp_path: Path) -> None:
    s = _scrape(_tree(tmp_path, **RESHAPE))
    assert value(s, "mdtrace_array_reshape_position_bytes", array="md0") == 12288 * 512
