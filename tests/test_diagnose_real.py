"""The stack parser and classifier on real /proc/PID/stack texts from the guests (issue 11).

tests/data/diagnose/real/*.stacks were captured by tests/vm/guest/diagnose_hangs.sh while each
hang stood (``== tid T comm C state S wchan W`` then that task's stack, addresses hidden by
the kernel as ``[<0>]``).  Each test rebuilds a /proc and sysfs tree around the real stacks,
with the array state the guest showed at that moment (its obs.txt), and checks what
`mdtrace diagnose` concludes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mdtrace.engine.blocked import wait_kind
from mdtrace.frontends.report.build import build_diagnosis
from mdtrace.sources.snapshot import collect, klog
from mdtrace.sources.snapshot.tasks import parse_stack, timed_wait

REAL = Path(__file__).parent / "data" / "diagnose" / "real"
UPTIME = 500.0
_HEAD = re.compile(r"^== tid (\d+) comm (\S+) state (\S) wchan (\S*)$")


@dataclass
class RealTask:
    tid: int
    comm: str
    state: str
    wchan: str
    stack: str


def load(name: str) -> list[RealTask]:
    out: list[RealTask] = []
    for line in (REAL / name).read_text().splitlines():
        m = _HEAD.match(line)
        if m:
            out.append(RealTask(int(m.group(1)), m.group(2), m.group(3), m.group(4), ""))
        else:
            assert out and line.startswith("[<0>] "), line     # pointers stripped
            out[-1].stack += line + "\n"
    return out


def tree(tmp: Path, tasks: list[RealTask], *, kernel: str, blocked_s: float = 40.0,
         fds: dict[str, tuple[str, ...]] | None = None, hung_timeout: int = 10) -> Path:
    proc = tmp / "proc"
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "sys" / "kernel" / "osrelease").write_text(kernel + "\n")
    (proc / "sys" / "kernel" / "hung_task_timeout_secs").write_text(f"{hung_timeout}\n")
    (proc / "uptime").write_text(f"{UPTIME:.2f} 100.00\n")
    for t in tasks:
        pdir = proc / str(t.tid)
        (pdir / "fd").mkdir(parents=True)
        for i, dev in enumerate((fds or {}).get(t.comm, ())):
            os.symlink(dev, pdir / "fd" / str(i + 3))
        (pdir / "cmdline").write_bytes(t.comm.encode())
        td = pdir / "task" / str(t.tid)
        td.mkdir(parents=True)
        (td / "stat").write_text(f"{t.tid} ({t.comm}) {t.state} 1 {t.tid} 0 0 -1\n")
        (td / "wchan").write_text(t.wchan)
        (td / "stack").write_text(t.stack)
        start = (UPTIME - blocked_s) * 1000
        (td / "sched").write_text(f"{t.comm} ({t.tid}, #threads: 1)\n---\n"
                                  f"se.exec_start                                :"
                                  f"      {start:.6f}\n")
    return proc


def md_array(sys_root: Path, name: str, **attrs: str) -> None:
    d = sys_root / "block" / name / "md"
    d.mkdir(parents=True)
    vals = {"level": "raid5", "array_state": "clean", "sync_action": "idle",
            "sync_completed": "none", "degraded": "0", "raid_disks": "4",
            "reshape_position": "none", "suspend_lo": "0", "suspend_hi": "0"} | attrs
    for k, v in vals.items():
        (d / k).write_text(v + "\n")
    (sys_root / "block" / name / "ro").write_text(("1" if attrs.get("array_state") ==
                                                    "readonly" else "0") + "\n")


def dm_disk(sys_root: Path, disk: str, name: str, suspended: bool) -> None:
    d = sys_root / "block" / disk / "dm"
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "suspended").write_text(("1" if suspended else "0") + "\n")


def diagnose(tmp: Path, proc: Path, dmsetup: str = "",  # noqa: ANN201 - ReportModel
             dmesg: str = ""):
    col = collect(tmp / "sys", proc, dmsetup=lambda: (dmsetup, ""),
                  kernel_log=lambda: (klog.parse_text(dmesg), ""))
    return build_diagnosis(col)


def active(model) -> dict[str, object]:  # noqa: ANN001
    return {f.code: f for f in model.snapshot.findings if f.active}


def test_real_stacks_parse_with_pointers_stripped() -> None:
    for p in sorted(REAL.glob("*.stacks")):
        tasks = load(p.name)
        assert tasks, p
        for t in tasks:
            frames = parse_stack(t.stack)
            assert frames and not any("0x" in f for f in frames), (p.name, frames)


def test_61_echo_idle_blocked_by_a_suspended_member_is_f12_resume_the_member(
        tmp_path: Path) -> None:
    """6.1.0-56: md4 raid1 on two dm-linear legs resyncing, dleg1 `dmsetup suspend`ed; `echo
    idle` waits in kthread_stop (md_reap_sync_thread -> md_unregister_thread) while md4_resync
    waits in md_do_sync for its queued IO (recovery_active 2048)."""
    tasks = load("6.1.0-56-amd64-echo-idle-member-suspended.stacks")
    by = {t.comm: t for t in tasks}
    assert wait_kind(parse_stack(by["sh"].stack)) == ("sync_stop", "md_unregister_thread")
    assert wait_kind(parse_stack(by["md4_resync"].stack)) == ("sync_thread", "md_do_sync")
    sys_root = tmp_path / "sys"
    md_array(sys_root, "md4", level="raid1", raid_disks="2", sync_action="resync",
             sync_completed="16640 / 131072")
    for disk, name, susp in (("dm-0", "dleg0", False), ("dm-1", "dleg1", True)):
        dm_disk(sys_root, disk, name, susp)
        (sys_root / "block" / "md4" / "slaves").mkdir(exist_ok=True)
        (sys_root / "block" / "md4" / "slaves" / disk).mkdir()
    model = diagnose(tmp_path, tree(tmp_path, tasks, kernel="6.1.0-56-amd64"))
    f = active(model)
    assert set(f) == {"F12"}, sorted(f)
    f12 = f["F12"]
    assert "sh (pid 573" in f12.explanation and "md4_resync (pid 545)" in f12.explanation
    assert "dleg1 is a suspended dm device" in f12.explanation
    assert "`dmsetup resume dleg1`" in f12.remedy and "dleg0" not in f12.remedy
    assert f12.fix          # 6.1 stops the sync thread under reconfig_mutex (f52f5c71f3d4)


def test_61_echo_idle_without_suspended_member_keeps_the_generic_remedy(tmp_path: Path) -> None:
    tasks = load("6.1.0-56-amd64-echo-idle-member-suspended.stacks")
    md_array(tmp_path / "sys", "md4", level="raid1", raid_disks="2", sync_action="resync",
             sync_completed="16640 / 131072")
    f12 = active(diagnose(tmp_path, tree(tmp_path, tasks, kernel="6.1.0-56-amd64")))["F12"]
    assert "dmsetup resume" not in f12.remedy and "reboot" in f12.remedy


def test_61_write_queued_on_a_suspended_lvm_raid5_lv_is_f15_resume(tmp_path: Path) -> None:
    """6.1.0-56: lvd/r5 (dm-6) reshaping, `dmsetup suspend lvd-r5`, a direct write queued by
    dm: dd sleeps in submit_bio_wait with no md frame, tied by the device it holds open;
    dmeventd's DM_DEV_WAIT (dm_wait_event) and the idle mdX_raid5 are not blocked tasks."""
    tasks = load("6.1.0-56-amd64-lvm-suspended-write-queued.stacks")
    sys_root = tmp_path / "sys"
    dm_disk(sys_root, "dm-6", "lvd-r5", True)
    status = "lvd-r5: 0 262144 raid raid5_ls 4 aaaa 20352/65536 frozen 0 8192 -\n"
    proc = tree(tmp_path, tasks, kernel="6.1.0-56-amd64", blocked_s=4.0,
                fds={"dd": ("/dev/mapper/lvd-r5",)})
    model = diagnose(tmp_path, proc, status)
    f = active(model)
    assert set(f) == {"F15"}, sorted(f)
    f15 = f["F15"]
    assert f15.title == "IO parked on suspended lvd-r5"
    assert "dd (pid 1332" in f15.explanation
    assert "`dmsetup resume lvd-r5`" in f15.remedy
    blocked = {b.comm: b for b in model.snapshot.blocked_tasks}
    assert set(blocked) == {"dd"}, sorted(blocked)
    # submit_bio_wait wakes every hung_task_timeout/2 s: the time read is since that wake-up
    assert blocked["dd"].timed_wait == "submit_bio_wait, woken every 5 s"
    assert "since its last timed wake-up" in blocked["dd"].label()


def test_timed_wait_only_while_hung_task_is_armed() -> None:
    frames = parse_stack(load("6.1.0-56-amd64-lvm-suspended-write-queued.stacks")[2].stack)
    assert timed_wait(frames, "submit_bio_wait", 120) == "submit_bio_wait, woken every 60 s"
    assert timed_wait(frames, "submit_bio_wait", 0) == ""      # 0: blk_wait_io waits untimed
    ro = parse_stack(load("6.1.0-56-amd64-readonly-reshape-read.stacks")[-1].stack)
    assert timed_wait(ro, "wait_woken", 120) == ""


def test_61_read_across_a_read_only_reshape_is_f7_read_only(tmp_path: Path) -> None:
    """6.1.0-56: md5 reshaping 3 -> 4, `mdadm --readonly` mid-reshape (array_state readonly,
    sync_action idle, reshape_position 24576); a direct read across it sleeps in
    raid5_make_request's wait_woken; remedy `mdadm --readwrite`."""
    tasks = load("6.1.0-56-amd64-readonly-reshape-read.stacks")
    md_array(tmp_path / "sys", "md5", array_state="readonly", reshape_position="24576")
    proc = tree(tmp_path, tasks, kernel="6.1.0-56-amd64", blocked_s=30.8,
                fds={"dd": ("/dev/md5",)})
    f = active(diagnose(tmp_path, proc))
    assert set(f) == {"F7"}, sorted(f)
    f7 = f["F7"]
    assert "read_only" in f7.title and "dd" in f7.explanation
    assert "--readwrite" in f7.remedy, f7.remedy


def test_kernel_log_hung_task_lines_of_the_guest_parse() -> None:
    text = ("[  173.255472] INFO: task sh:573 blocked for more than 10 seconds.\n"
            "[  173.256000]       Not tainted 6.1.0-56-amd64 #1 Debian 6.1.192-1\n")
    recs = klog.parse_text(text)
    assert recs[0] == (173_255_472, "INFO: task sh:573 blocked for more than 10 seconds.")


def _members(sys_root: Path, md: str, suspended: str) -> None:
    for disk, name in (("dm-0", "dleg0"), ("dm-1", "dleg1")):
        dm_disk(sys_root, disk, name, name == suspended)
        (sys_root / "block" / md / "slaves").mkdir(exist_ok=True)
        (sys_root / "block" / md / "slaves" / disk).mkdir()


def test_612_echo_idle_blocked_in_stop_sync_thread_is_f12_resume_the_member(
        tmp_path: Path) -> None:
    """6.12.117: the same hang waits in stop_sync_thread (6.7+: idle_sync_thread ->
    stop_sync_thread, reconfig_mutex released); a udev worker reading md4 (its read went to
    the suspended leg) is D too, tied to md4 by the open device."""
    tasks = load("6.12.117-echo-idle-member-suspended.stacks")
    by = {t.comm: t for t in tasks}
    assert wait_kind(parse_stack(by["sh"].stack)) == ("sync_stop", "stop_sync_thread")
    sys_root = tmp_path / "sys"
    md_array(sys_root, "md4", level="raid1", raid_disks="2", sync_action="resync",
             sync_completed="16640 / 131072")
    _members(sys_root, "md4", "dleg1")
    proc = tree(tmp_path, tasks, kernel="6.12.117+deb12-amd64",
                fds={"(udev-worker)": ("/dev/md4",)})
    f = active(diagnose(tmp_path, proc))
    assert set(f) == {"F12"}, sorted(f)
    f12 = f["F12"]
    assert "(stop_sync_thread)" in f12.title and "sh (pid 623" in f12.explanation
    assert "`dmsetup resume dleg1`" in f12.remedy
    assert not f12.fix          # 6.7+ has f52f5c71f3d4


def test_612_write_queued_on_a_suspended_lvm_raid5_lv_is_f15(tmp_path: Path) -> None:
    tasks = load("6.12.117-lvm-suspended-write-queued.stacks")
    sys_root = tmp_path / "sys"
    dm_disk(sys_root, "dm-6", "lvd-r5", True)
    status = "lvd-r5: 0 262144 raid raid5_ls 4 AAAA 0/65536 frozen 0 8192 -\n"
    proc = tree(tmp_path, tasks, kernel="6.12.117+deb12-amd64", blocked_s=1.0,
                fds={"dd": ("/dev/mapper/lvd-r5",)})
    model = diagnose(tmp_path, proc, status)
    f = active(model)
    assert set(f) == {"F15"}, sorted(f)
    assert "`dmsetup resume lvd-r5`" in f["F15"].remedy
    assert [b.comm for b in model.snapshot.blocked_tasks] == ["dd"]


def test_612_read_on_a_read_only_reshape_after_the_raid5d_oops_is_f11_reboot(
        tmp_path: Path) -> None:
    """6.12.117: the read across the read-only reshape met the window and md5_raid5 died at
    once (kernel BUG at mm/slub.c:550 in md_end_clone_io <- ops_complete_biofill: the retry
    freed the clone earlier stripes still held; fixed by 418b3e64e445, 7.1).  No md5_raid5
    in /proc; dd sleeps (D) in raid5_make_request.  F11 and F7 both say reboot."""
    tasks = load("6.12.117-readonly-reshape-read-after-oops.stacks")
    assert [t.comm for t in tasks] == ["dd"]
    md_array(tmp_path / "sys", "md5", array_state="readonly", reshape_position="46080")
    dmesg = (REAL / "6.12.117-readonly-reshape-read-oops.dmesg").read_text()
    proc = tree(tmp_path, tasks, kernel="6.12.117+deb12-amd64", blocked_s=23.3,
                fds={"dd": ("/dev/md5",)})
    f = active(diagnose(tmp_path, proc, dmesg=dmesg))
    assert set(f) == {"F7", "F11"}, sorted(f)
    assert "md5_raid5" in f["F11"].explanation and "mm/slub.c:550" in f["F11"].explanation
    assert "ops_complete_biofill" in f["F11"].explanation
    assert f["F11"].remedy.startswith("reboot")
    assert "md_thread_dead" in f["F7"].title and f["F7"].remedy.startswith("reboot")


def test_kallsyms_address_finds_the_module_symbol_only() -> None:
    from mdtrace.sources.snapshot.kcore import kallsyms_address

    text = ("ffffffff81000000 T _stext\n"
            "ffffffffc0a10000 d all_mddevs_lock\t[md_mod]\n"
            "ffffffffc0b20000 d all_mddevs\t[other]\n"
            "ffffffffc0a1b2c0 d all_mddevs\t[md_mod]\n")
    assert kallsyms_address(text, "all_mddevs") == 0xffffffffc0a1b2c0
    assert kallsyms_address("0000000000000000 d all_mddevs\t[md_mod]\n", "all_mddevs") == 0
    assert kallsyms_address("ffffffff82000000 D all_mddevs\n", "all_mddevs") == 0xffffffff82000000
    assert kallsyms_address(text, "md_missing") is None


def _spinning_read(tmp: Path, dmesg: str):  # noqa: ANN202 - ReportModel
    """6.12.117's busy-retried read (state R, no md frame caught) holding /dev/md5 open."""
    md_array(tmp / "sys", "md5", array_state="readonly", reshape_position="24576")
    t = RealTask(1328, "dd", "R", "0", "")
    proc = tree(tmp, [t], kernel="6.12.117+deb12-amd64", fds={"dd": ("/dev/md5",)})
    return diagnose(tmp, proc, dmesg=dmesg)


def test_612_busy_retried_read_is_f7_requeue_from_the_kernel_log(tmp_path: Path) -> None:
    line = "dm-raid456: io across reshape position while reshape can't make progress"
    times = (470.1, 470.2, 475.3, 480.4, 485.5, 490.6, 495.5)    # ratelimited: <= 5 s apart
    dmesg = "".join(f"[  {t:.6f}] {line}\n" for t in times)
    model = _spinning_read(tmp_path, dmesg)
    f = active(model)
    assert set(f) == {"F7"}, sorted(f)
    assert "read_only" in f["F7"].title and "--readwrite" in f["F7"].remedy
    (dd,) = model.snapshot.blocked_tasks
    assert dd.wait == "reshape_io" and dd.state == "R" and dd.blocked_s == 29.9   # 500 - 470.1


def test_a_running_task_is_no_blocked_io_without_fresh_refusals(tmp_path: Path) -> None:
    line = "dm-raid456: io across reshape position while reshape can't make progress"
    for name, dmesg in (("none", ""), ("old", f"[  480.000000] {line}\n")):
        model = _spinning_read(tmp_path / name, dmesg)
        assert active(model) == {} and model.snapshot.blocked_tasks == [], name


def test_612_real_busy_retried_read_caught_in_md_account_bio_is_f7_requeue(
        tmp_path: Path) -> None:
    """6.12.117, measured: the read across the read-only reshape is R, its stack caught in
    raid5_make_request -> md_account_bio -> bio_alloc_clone (no known wait), the log shows a
    burst of 10 refusals every 5 s: F7 read_only, blocked since the first burst."""
    tasks = load("6.12.117-readonly-reshape-read-busy-retry.stacks")
    assert wait_kind(parse_stack(tasks[0].stack)) == ("", "md_account_bio")
    md_array(tmp_path / "sys", "md5", array_state="readonly", reshape_position="24576")
    dmesg = (REAL / "6.12.117-readonly-reshape-read-busy-retry.dmesg").read_text()
    proc = tree(tmp_path, tasks, kernel="6.12.117+deb12-amd64", fds={"dd": ("/dev/md5",)})
    (proc / "uptime").write_text("284.00 100.00\n")
    model = diagnose(tmp_path, proc, dmesg=dmesg)
    f = active(model)
    assert set(f) == {"F7"}, sorted(f)
    assert "read_only" in f["F7"].title and "--readwrite" in f["F7"].remedy
    (dd,) = model.snapshot.blocked_tasks
    assert dd.wait == "reshape_io" and dd.blocked_s == 21.1        # 284 - 262.9025


def test_612_real_busy_retried_write_caught_in_md_write_start_is_f7_requeue(
        tmp_path: Path) -> None:
    """6.12.117, measured (the live guest, 2026-12-03): the 4 KiB write across the frozen
    reshape is R, its stack caught as md_write_start <- raid5_make_request: frames alone read
    as a superblock wait (sb_wait), but a running task does not sleep there; with the log's
    refusals going on it is the retried IO: F7 frozen, not F13.  Without them: nothing."""
    frames = (REAL / "6.12.117-dd-write-across-frozen-reshape.stack").read_text()
    line = "dm-raid456: io across reshape position while reshape can't make progress"
    dmesg = "".join(f"[  {t:.6f}] {line}\n" for t in (480.2, 485.3, 490.4, 495.5))
    for name, log, want in (("refused", dmesg, {"F7"}), ("quiet", "", set())):
        tmp = tmp_path / name
        md_array(tmp / "sys", "md0", sync_action="frozen", reshape_position="24576")
        proc = tree(tmp, [RealTask(1491, "dd", "R", "0", frames)],
                    kernel="6.12.117+deb12-amd64", fds={"dd": ("/dev/md0",)})
        model = diagnose(tmp, proc, dmesg=log)
        f = active(model)
        assert set(f) == want, (name, sorted(f))
        if want:
            assert "frozen" in f["F7"].title and "sync_action" in f["F7"].remedy, f["F7"]
            # no sector is known: what was seen is said (not "W of 0 sectors at sector 0")
            assert "dd (tid 1491) IO (running: refused and re-submitted" in \
                f["F7"].explanation, f["F7"].explanation
            (dd,) = model.snapshot.blocked_tasks
            assert dd.wait == "reshape_io" and dd.blocked_s == 19.8, dd   # 500 - 480.2


def test_61_lvm_suspend_draining_a_write_on_the_frozen_reshape_is_f9_message_idle(
        tmp_path: Path) -> None:
    """6.1.0-56, measured: lvd/r5 reshape frozen (`dmsetup message lvd-r5 0 frozen`), dd's
    write across it asleep in raid5_make_request under raid_map, `dmsetup suspend lvd-r5` in D
    at __dm_suspend -> synchronize_srcu (dd holds dm's SRCU read lock: SIGINT did nothing in
    20 s).  F9 names both; the remedy is dm-raid's `idle` message, then resume."""
    tasks = load("6.1.0-56-amd64-lvm-suspend-drains-write-on-frozen-reshape.stacks")
    by = {t.comm: t for t in tasks}
    assert wait_kind(parse_stack(by["dd"].stack)) == ("reshape_io", "raid5_make_request")
    assert wait_kind(parse_stack(by["dmsetup"].stack)) == ("io_drain", "__dm_suspend")
    sys_root = tmp_path / "sys"
    dm_disk(sys_root, "dm-6", "lvd-r5", False)
    status = "lvd-r5: 0 98304 raid raid5_ls 4 AAAA 0/32768 frozen 0 8192 -\n"
    proc = tree(tmp_path, tasks, kernel="6.1.0-56-amd64", blocked_s=7.0,
                fds={"dd": ("/dev/mapper/lvd-r5",)})
    (proc / "1050" / "cmdline").write_bytes(b"dmsetup\0suspend\0lvd-r5")
    f = active(diagnose(tmp_path, proc, status))
    assert set(f) == {"F7", "F9"}, sorted(f)
    f9 = f["F9"]
    assert "dd/1038 waits for reshape:dm-6" in f9.explanation
    assert "dmsetup/1050 waits for io:dm-6" in f9.explanation
    assert "synchronize_srcu, uninterruptibly" in f9.explanation
    assert "`dmsetup message lvd-r5 0 idle`" in f9.remedy and "`dmsetup resume lvd-r5`" in \
        f9.remedy
    assert "reboot" not in f9.remedy
    assert f9.fix.startswith("41425f96d7aa")
