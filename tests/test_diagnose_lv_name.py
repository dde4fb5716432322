"""`mdtrace diagnose` names a dm-raid LV as lvm2 does (VG/LV) in what it says of it.

Real data: the zoo's p3 hang (82ec0ae59d02 reverted on 6.12.117; vmtest/zoo): lvm2's
lvconvert blocked in stop_sync_thread <- md_stop_writes <- raid_postsuspend on the LV
mdtvg/r5 (dm-6, dm name mdtvg-r5), its reshape thread alive and not blocked.  The frames are
the ones the guest's diagnose recorded (tests/data/golden/zoo_p3__lvm_reshape_suspend.
diagnose.json), rebuilt into a /proc tree as tests/test_diagnose_real.py does for the other
captured hangs.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_diagnose_real import RealTask, active, diagnose, dm_disk, tree

GOLDEN = Path(__file__).parent / "data" / "golden"
P3_DIAG = GOLDEN / "zoo_p3__lvm_reshape_suspend.diagnose.json"
K612 = "6.12.117+deb12-amd64"


def _p3_tasks() -> list[RealTask]:
    rec = json.loads(P3_DIAG.read_text())
    f12 = next(f for f in rec["findings"] if f["code"] == "F12")
    t = f12["details"]["tasks"][0]
    frames = t["stack"].split(" <- ")
    stack = "".join(f"[<0>] {fr.split(' ')[0]}+0x10/0x80"
                    + (f" {fr.split(' ', 1)[1]}" if " " in fr else "") + "\n" for fr in frames)
    # the reshape thread the guest saw alive (pid 1402) and the daemon, both sleeping
    idle = "[<0>] md_thread+0x9c/0x170 [md_mod]\n[<0>] kthread+0xcf/0x100\n"
    return [RealTask(t["tid"], t["comm"], t["state"], frames[0].split(" ")[0], stack),
            RealTask(1402, "mdX_reshape", "S", "md_thread", idle),
            RealTask(1394, "mdX_raid5", "S", "md_thread", idle)]


def test_p3_f12_names_the_lv_by_its_lvm_name(tmp_path: Path) -> None:
    tasks = _p3_tasks()
    assert tasks[0].comm == "lvconvert" and "raid_postsuspend" in tasks[0].stack
    sys_root = tmp_path / "sys"
    dm_disk(sys_root, "dm-6", "mdtvg-r5", False)
    status = "mdtvg-r5: 0 393216 raid raid5_ls 4 AAAA 0/65536 frozen 0 0 -\n"
    proc = tree(tmp_path, tasks, kernel=K612, blocked_s=201.0,
                fds={"lvconvert": ("/dev/mapper/mdtvg-r5",)})
    f = active(diagnose(tmp_path, proc, status))
    assert set(f) == {"F12"}, sorted(f)
    f12 = f["F12"]
    # the LV as lvm2 names it in the words; the record name stays the join key
    assert f12.title == "stopping mdtvg/r5's sync thread hangs (stop_sync_thread)", f12.title
    assert "waits for mdtvg/r5's sync thread to stop" in f12.explanation
    assert f12.details["name"] == "mdtvg/r5" and f12.array == "dm-6"
    # commands keep the dm name
    assert "`dmsetup status mdtvg-r5`" in f12.remedy
    assert "`dmsetup message mdtvg-r5 0 idle` would block" in f12.remedy
    assert "mdX_reshape (pid 1402) is alive and not blocked" in f12.details["sync_thread"]


def test_md_array_keeps_its_own_name() -> None:
    from mdtrace.engine.arrays import ArrayRec
    from mdtrace.engine.detectors.base import display_name

    assert display_name(ArrayRec(name="md4")) == "md4"
    # a dm-raid target that is not an LVM LV (no VG-LV split): its dm name
    assert display_name(ArrayRec(name="dm-3", kind="dm-raid", dm_name="myraid")) == "myraid"
    assert display_name(ArrayRec(name="dm-3", kind="dm-raid", dm_name="my--vg-r5--lv")) \
        == "my-vg/r5-lv"
