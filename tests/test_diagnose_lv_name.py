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
    # the reshape thread idles in md_thread: md_do_sync returned without DONE (the revert),
    # so nothing the user can send unblocks the stop (zoo p3, docs/kernels.md)
    assert "mdX_reshape (pid 1402) is alive but idle in md_thread" in f12.details["sync_thread"]
    assert "returned without setting" in f12.explanation, f12.explanation
    assert f12.remedy.startswith("reboot: mdX_reshape has already returned from md_do_sync"), \
        f12.remedy
    # 6.12 carries 82ec0ae59d02 (the zoo reverted it): no fix to name, the modules to check
    assert not f12.fix and "`modinfo -F filename md_mod`" in f12.remedy, f12.remedy


def test_p3_on_6_7_names_the_fix(tmp_path: Path) -> None:
    """6.7 has the stop that waits for RUNNING (f52f5c71f3d4) but not 82ec0ae59d02 (6.8)."""
    proc, status = _p3_proc(tmp_path, _p3_tasks(), kernel="6.7.12-amd64")
    f12 = active(diagnose(tmp_path, proc, status))["F12"]
    assert f12.fix.startswith("82ec0ae59d02 md: make sure md_do_sync() will set"), f12.fix
    assert "a kernel with 82ec0ae59d02 (6.8) sets DONE" in f12.remedy, f12.remedy


def _p3_proc(tmp_path: Path, tasks: list[RealTask], kernel: str = K612) -> tuple[Path, str]:
    sys_root = tmp_path / "sys"
    dm_disk(sys_root, "dm-6", "mdtvg-r5", False)
    status = "mdtvg-r5: 0 393216 raid raid5_ls 4 AAAA 0/65536 frozen 0 0 -\n"
    return tree(tmp_path, tasks, kernel=kernel, blocked_s=201.0,
                fds={"lvconvert": ("/dev/mapper/mdtvg-r5",)}), status


def test_p3_sync_thread_blocked_keeps_the_member_advice(tmp_path: Path) -> None:
    """The same stop with the reshape thread blocked in md code (not returned): the advice is
    to find what it waits for, with the commands on the dm name."""
    tasks = _p3_tasks()
    busy = ("[<0>] raid5_get_active_stripe+0x10/0x80 [raid456]\n"
            "[<0>] raid5_sync_request+0x10/0x80 [raid456]\n"
            "[<0>] md_do_sync+0x10/0x80 [md_mod]\n[<0>] md_thread+0x9c/0x170 [md_mod]\n")
    tasks[1] = RealTask(1402, "mdX_reshape", "D", "raid5_get_active_stripe", busy)
    proc, status = _p3_proc(tmp_path, tasks)
    f12 = active(diagnose(tmp_path, proc, status))["F12"]
    assert "idle in md_thread" not in f12.details["sync_thread"]
    assert "mdX_reshape (pid 1402) is" in f12.details["sync_thread"]
    assert "`dmsetup status mdtvg-r5`" in f12.remedy, f12.remedy
    assert "`dmsetup message mdtvg-r5 0 idle` would block" in f12.remedy
    assert not f12.fix


def test_idle_sync_thread_unknown_stack_is_not_called_returned(tmp_path: Path) -> None:
    """Without the sync thread's stack (empty: unreadable) nothing says it returned: the generic
    wording stays."""
    tasks = _p3_tasks()
    tasks[1] = RealTask(1402, "mdX_reshape", "S", "md_thread", "")
    proc, status = _p3_proc(tmp_path, tasks)
    f12 = active(diagnose(tmp_path, proc, status))["F12"]
    assert "is alive and not blocked in md code" in f12.details["sync_thread"]
    assert not f12.remedy.startswith("reboot")


def test_md_array_keeps_its_own_name() -> None:
    from mdtrace.engine.arrays import ArrayRec
    from mdtrace.engine.detectors.base import display_name

    assert display_name(ArrayRec(name="md4")) == "md4"
    # a dm-raid target that is not an LVM LV (no VG-LV split): its dm name
    assert display_name(ArrayRec(name="dm-3", kind="dm-raid", dm_name="myraid")) == "myraid"
    assert display_name(ArrayRec(name="dm-3", kind="dm-raid", dm_name="my--vg-r5--lv")) \
        == "my-vg/r5-lv"


def test_idle_sync_thread_before_6_7_is_not_a_lost_reap() -> None:
    """6.1-6.6 stop with kthread_stop (md_unregister_thread), which ends an idle md_thread:
    only a stop waiting in stop_sync_thread (6.7+) waits on DONE."""
    from mdtrace.engine.arrays import ArrayRec
    from mdtrace.engine.blocked import BlockedTask
    from mdtrace.engine.detectors.sync_stop import returned_unreaped
    from mdtrace.events import Event

    arr = ArrayRec(name="md0", level="raid5", threads={"md0_raid5": 10, "md0_resync": 11},
                   idle_threads=frozenset({"md0_resync"}))

    def waiter(frame: str) -> BlockedTask:
        return BlockedTask(tid=20, pid=20, comm="bash", state="D", wchan=frame,
                           frames=(f"{frame} [md_mod]",), blocked_s=300.0, array="md0",
                           tie="open /dev/md0", wait="sync_stop", wait_frame=frame,
                           suspending="", since_ns=0, event=Event(ts=0, kind="task_blocked"))

    assert returned_unreaped(arr, [waiter("stop_sync_thread")]) == "md0_resync"
    assert returned_unreaped(arr, [waiter("md_unregister_thread")]) == ""
    busy = ArrayRec(name="md0", level="raid5", threads=dict(arr.threads or {}))
    assert returned_unreaped(busy, [waiter("stop_sync_thread")]) == ""
