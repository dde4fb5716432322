"""`mdtrace diagnose` (issue 11, first stage): a snapshot of sysfs, /proc stacks and the kernel
log -> events -> the engine's findings, on fixture trees (tests/data/diagnose: /proc/PID/stack
texts of 6.1 and 6.12, a dmesg with the 6.12.117 raid5d oops)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mdtrace.cli import main
from mdtrace.engine.blocked import from_event, wait_kind
from mdtrace.events import KINDS
from mdtrace.frontends.report import render
from mdtrace.frontends.report.build import build_diagnosis
from mdtrace.sources.snapshot import collect, klog
from mdtrace.sources.snapshot.tasks import parse_stack, parse_stat

DATA = Path(__file__).parent / "data" / "diagnose"
UPTIME = 1000.0


def stack(name: str) -> str:
    return (DATA / name).read_text()


@dataclass
class Task:
    pid: int
    comm: str
    state: str = "D"
    stack: str | None = ""          # None: unreadable (a directory: EISDIR)
    wchan: str = "0"
    blocked_s: float | None = 300.0
    fds: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()
    threads: list[int] = field(default_factory=list)


def md_array(sys_root: Path, name: str, **attrs: str) -> None:
    d = sys_root / "block" / name / "md"
    d.mkdir(parents=True)
    vals = {"level": "raid5", "array_state": "clean", "sync_action": "idle",
            "sync_completed": "none", "degraded": "0", "raid_disks": "4",
            "reshape_position": "none", "suspend_lo": "0", "suspend_hi": "0",
            "sync_speed": "0"} | attrs
    for k, v in vals.items():
        (d / k).write_text(v + "\n")
    (sys_root / "block" / name / "ro").write_text("0\n")


def dm_disk(sys_root: Path, disk: str, name: str, suspended: bool = False) -> None:
    d = sys_root / "block" / disk / "dm"
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "suspended").write_text(("1" if suspended else "0") + "\n")


def proc_tree(proc: Path, tasks: list[Task], kernel: str) -> None:
    (proc / "sys" / "kernel").mkdir(parents=True, exist_ok=True)
    (proc / "sys" / "kernel" / "osrelease").write_text(kernel + "\n")
    (proc / "uptime").write_text(f"{UPTIME:.2f} 1234.00\n")
    for t in tasks:
        pdir = proc / str(t.pid)
        (pdir / "fd").mkdir(parents=True)
        for i, dev in enumerate(t.fds):
            os.symlink(dev, pdir / "fd" / str(i + 3))
        (pdir / "cmdline").write_bytes(b"\0".join(a.encode() for a in t.argv or (t.comm,)))
        for tid in [t.pid, *t.threads]:
            td = pdir / "task" / str(tid)
            td.mkdir(parents=True)
            (td / "stat").write_text(f"{tid} ({t.comm}) {t.state} 1 {tid} 0 0 -1\n")
            (td / "wchan").write_text(t.wchan)
            if t.stack is None:
                (td / "stack").mkdir()
            else:
                (td / "stack").write_text(t.stack)
            if t.blocked_s is not None:
                start = (UPTIME - t.blocked_s) * 1000
                (td / "sched").write_text(f"{t.comm} ({tid}, #threads: 1)\n"
                                          "-------------------------------------------\n"
                                          f"se.exec_start                                :"
                                          f"      {start:.6f}\n")


def diagnose(tmp: Path, tasks: list[Task], *, kernel: str = "6.1.0-56-amd64",
             dmsetup: str = "", dmesg: str = ""):  # noqa: ANN201 - (Collected, ReportModel)
    proc = tmp / "proc"
    proc_tree(proc, tasks, kernel)
    col = collect(tmp / "sys", proc, dmsetup=lambda: (dmsetup, ""),
                  kernel_log=lambda: (klog.parse_text(dmesg), ""))
    return col, build_diagnosis(col)


def codes(model) -> dict[str, object]:  # noqa: ANN001
    return {f.code: f for f in model.snapshot.findings if f.active}


def raid5d(pid: int = 951, name: str = "md0") -> Task:
    return Task(pid, f"{name}_raid5", "S", stack("md_thread_idle.stack"), blocked_s=0.5)


# -- parsing ------------------------------------------------------------------------------


def test_stack_parser_and_wait_kinds() -> None:
    f61 = parse_stack(stack("dd_raid5_reshape_61.stack"))
    assert f61[:2] == ("raid5_make_request [raid456]", "md_handle_request [md_mod]")
    assert parse_stack("[<ffffffffc0a1b2c3>] md_do_sync.cold+0x4c1/0xa69 [md_mod]\n") == \
        ("md_do_sync.cold [md_mod]",)
    assert wait_kind(f61) == ("reshape_io", "raid5_make_request")
    for name, want in [("dd_raid5_reshape_612.stack", "reshape_io"),
                       ("echo_idle_kthread_stop_61.stack", "sync_stop"),
                       ("echo_idle_stop_sync_612.stack", "sync_stop"),
                       ("writer_md_write_start_612.stack", "sb_wait"),
                       ("writer_wait_barrier_612.stack", "barrier"),
                       ("resync_raise_barrier_612.stack", "barrier"),
                       ("dd_md_handle_request_61.stack", "suspended_io"),
                       ("lvm_dm_suspend_drain_61.stack", "io_drain"),
                       ("resync_blocked_io_61.stack", "stripe"),
                       ("unknown_bitmap_61.stack", ""),
                       ("dd_dm_suspended_61.stack", "")]:
        assert wait_kind(parse_stack(stack(name)))[0] == want, name
    # a mutex inside the innermost md frame is a lock wait, not the frame's own wait
    assert wait_kind(("__mutex_lock.constprop.0", "dm_suspend [dm_mod]"))[0] == "mutex"
    # wchan alone (no stack: not root) still names the wait
    assert wait_kind(("raid5_make_request",))[0] == "reshape_io"
    assert parse_stat("812 (my (odd) dd) D 1 812") == ("my (odd) dd", "D")
    assert "task_blocked" in KINDS


def test_kernel_log_text_forms() -> None:
    recs = klog.parse_text("[   44.201000] kernel BUG at mm/slub.c:550!\n"
                           "6,339,5140900,-;md: md0 stopped.\n SUBSYSTEM=block\n"
                           "Dec 01 12:00:00 host kernel: md/raid:md0: not clean\nplain\n")
    assert recs == [(44_201_000, "kernel BUG at mm/slub.c:550!"), (5_140_900, "md: md0 stopped."),
                    (0, "md/raid:md0: not clean"), (0, "plain")]
    evs = klog.events(klog.parse_text(stack("oops_raid5d_612.dmesg")))
    bug = [e for e in evs if e.args["class"] == "bug"]
    assert len(bug) == 1 and bug[0].ts == 44_201_000_000 and bug[0].comm == "md0_raid5"
    assert any(e.args["class"] == "hung_task" and e.args["task"] == "dd" for e in evs)


# -- one fixture per class ----------------------------------------------------------------


def test_f7_frozen_reshape_with_read_blocked_61(tmp_path: Path) -> None:
    md_array(tmp_path / "sys", "md0", sync_action="frozen", reshape_position="4096",
             sync_completed="none")
    col, model = diagnose(tmp_path, [
        raid5d(), Task(812, "dd", stack=stack("dd_raid5_reshape_61.stack"), fds=("/dev/md0",))])
    f = codes(model)
    assert set(f) == {"F7"}, [(x.code, x.title) for x in model.snapshot.findings]
    f7 = f["F7"]
    assert f7.details["reason"] == "frozen" and f7.array == "md0"
    assert "echo reshape > /sys/block/md0/md/sync_action" in f7.remedy
    assert "300.0s" in f7.explanation and "dd (tid 812)" in f7.explanation
    (bt,) = model.snapshot.blocked_tasks
    assert bt.tie == "holds /dev/md0 open" and bt.blocked_s == 300.0


def test_dead_raid5d_612_is_f11_reboot_not_readwrite(tmp_path: Path) -> None:
    """The 6.12.117 case: raid5d died in md_end_clone_io during a read-only reshape, the array
    was switched back read-write, dd stays blocked: md0's raid5d died, IO never completes,
    reboot, 418b3e64e445 -- not 'F7 read_only, mdadm --readwrite'."""
    md_array(tmp_path / "sys", "md0", array_state="active", sync_action="reshape",
             reshape_position="8192", sync_completed="8192 / 2097152")
    col, model = diagnose(tmp_path, [
        Task(960, "md0_reshape", stack=stack("resync_blocked_io_61.stack"), blocked_s=290),
        Task(812, "dd", stack=stack("dd_raid5_reshape_612.stack"), blocked_s=287,
             fds=("/dev/md0",))],
        kernel="6.12.117+deb12-amd64", dmesg=stack("oops_raid5d_612.dmesg"))
    f = codes(model)
    f11 = f["F11"]
    assert f11.array == "md0" and f11.fix.startswith("418b3e64e445")
    assert "reboot" in f11.remedy and "md0_raid5" in f11.title
    assert "gone from the process list" in f11.explanation
    assert "never completes" in f11.explanation
    for x in f.values():
        assert "--readwrite" not in x.remedy and "read_only" not in x.title, (x.code, x.title)
    if "F7" in f:
        assert f["F7"].details["reason"] == "md_thread_dead" and "reboot" in f["F7"].remedy
    text = render(model, "text")
    assert "md0_raid5 died" in text and "418b3e64e445" in text


def test_f12_stop_waits_for_sync_thread_61_and_612(tmp_path: Path) -> None:
    for kernel, name, want_fix in (("6.1.0-56-amd64", "echo_idle_kthread_stop_61.stack", True),
                                   ("6.12.117+deb12-amd64", "echo_idle_stop_sync_612.stack",
                                    False)):
        root = tmp_path / kernel
        md_array(root / "sys", "md0", sync_action="resync", sync_completed="100 / 2000")
        _, model = diagnose(root, [
            raid5d(), Task(960, "md0_resync", stack=stack("resync_blocked_io_61.stack")),
            Task(700, "bash", stack=stack(name), argv=("bash",), blocked_s=200)],
            kernel=kernel)
        f12 = codes(model)["F12"]
        assert "bash (pid 700" in f12.explanation and "md0_resync (pid 960)" in \
            f12.explanation
        assert "raid5_get_active_stripe" in f12.explanation
        assert bool(f12.fix) is want_fix
        assert "dmesg" in f12.remedy and "reboot" in f12.remedy


def test_f13_writers_wait_for_superblock_on_read_only_array(tmp_path: Path) -> None:
    md_array(tmp_path / "sys", "md0", level="raid1", array_state="readonly", raid_disks="2")
    _, model = diagnose(tmp_path, [
        Task(951, "md0_raid1", "S", stack("md_thread_idle.stack")),
        Task(812, "dd", stack=stack("writer_md_write_start_612.stack"), fds=("/dev/md0",))],
        kernel="6.12.117+deb12-amd64")
    f13 = codes(model)["F13"]
    assert f13.details["reason"] == "read_only"
    assert "mdadm --readwrite /dev/md0" in f13.remedy


def test_f13_write_pending_names_array_state_active(tmp_path: Path) -> None:
    md_array(tmp_path / "sys", "md0", level="raid1", array_state="write-pending")
    _, model = diagnose(tmp_path, [
        Task(951, "md0_raid1", "S", stack("md_thread_idle.stack")),
        Task(812, "dd", stack=stack("writer_md_write_start_612.stack"), blocked_s=None,
             fds=("/dev/md0",))])
    f13 = codes(model)["F13"]
    assert f13.details["reason"] == "write_pending"
    assert "echo active > /sys/block/md0/md/array_state" in f13.remedy


def test_f14_raid1_barrier_held_by_resync(tmp_path: Path) -> None:
    md_array(tmp_path / "sys", "md0", level="raid1", sync_action="resync", raid_disks="2",
             sync_completed="4096 / 2097152")
    _, model = diagnose(tmp_path, [
        Task(951, "md0_raid1", "S", stack("md_thread_idle.stack")),
        Task(960, "md0_resync", stack=stack("resync_raise_barrier_612.stack")),
        Task(812, "kworker/u8:2", stack=stack("writer_wait_barrier_612.stack"))],
        kernel="6.12.117+deb12-amd64")
    f14 = codes(model)["F14"]
    assert f14.details["holders"] == [960]
    assert "raise_barrier" in f14.explanation and "kworker/u8:2" in f14.explanation
    assert "echo frozen > /sys/block/md0/md/sync_action" in f14.remedy
    assert {b.array for b in model.snapshot.blocked_tasks} == {"md0"}


def test_f15_md_write_parked_in_suspend_range(tmp_path: Path) -> None:
    md_array(tmp_path / "sys", "md0", suspend_lo="0", suspend_hi="1048576")
    _, model = diagnose(tmp_path, [
        raid5d(), Task(812, "dd", stack=stack("dd_md_handle_request_61.stack"),
                       fds=("/dev/md0",))])
    f15 = codes(model)["F15"]
    assert "0..1048576" in f15.explanation
    assert "echo 0 > /sys/block/md0/md/suspend_hi" in f15.remedy


def test_f15_io_parked_on_left_suspended_lv(tmp_path: Path) -> None:
    dm_disk(tmp_path / "sys", "dm-6", "vg-lv", suspended=True)
    status = "vg-lv: 0 2097152 raid raid5_ls 3 AAA 2097152/2097152 idle 0 0 -\n" \
             "vg-lv_rimage_0: 0 1048576 linear \n"
    col, model = diagnose(tmp_path, [
        Task(812, "dd", stack=stack("dd_dm_suspended_61.stack"), fds=("/dev/dm-6",))],
        dmsetup=status)
    assert [a.name for a in col.arrays] == ["dm-6"]
    f15 = codes(model)["F15"]
    assert f15.array == "dm-6" and "dmsetup resume vg-lv" in f15.remedy
    assert "left suspended" in f15.explanation


def test_f9_chain_lvm_suspend_waits_for_io_waiting_for_frozen_reshape(tmp_path: Path) -> None:
    """6.1 lvm raid5 reshape: lvchange suspends (presuspend froze the reshape), dm_suspend
    waits for IO to drain, the IO waits in raid5_make_request for the frozen reshape."""
    dm_disk(tmp_path / "sys", "dm-6", "vg-lv")
    status = "vg-lv: 0 2097152 raid raid5_ls 4 AAAA 1024/2097152 frozen 0 0 -\n"
    _, model = diagnose(tmp_path, [
        Task(951, "mdX_raid5", "S", stack("md_thread_idle.stack")),
        Task(812, "dd", stack=stack("dd_raid5_reshape_61.stack"), fds=("/dev/dm-6",)),
        Task(900, "lvchange", stack=stack("lvm_dm_suspend_drain_61.stack"), blocked_s=250,
             argv=("lvchange", "-ay", "vg/lv"))], dmsetup=status)
    f = codes(model)
    f9 = f["F9"]
    assert set(f9.details["tasks"]) == {812, 900} and f9.array == "dm-6"
    assert "reshape" in f9.title and f9.fix.startswith("41425f96d7aa")
    assert "F15" not in f                  # the drain waits for the reshape IO: F7/F9's
    assert f["F7"].details["reason"] == "frozen"
    ties = {b.tid: b.tie for b in model.snapshot.blocked_tasks}
    assert ties[900] == "named in its arguments" and ties[812] == "holds /dev/dm-6 open"


def test_healthy_and_unknown_stacks_classify_as_nothing(tmp_path: Path) -> None:
    md_array(tmp_path / "sys", "md0", level="raid1", sync_action="resync",
             sync_completed="4096 / 2097152")
    _, model = diagnose(tmp_path, [
        Task(951, "md0_raid1", "S", stack("md_thread_idle.stack")),
        Task(812, "dd", stack=stack("unknown_bitmap_61.stack"), fds=("/dev/md0",))])
    assert not model.snapshot.findings
    (bt,) = model.snapshot.blocked_tasks
    assert bt.wait == "" and bt.what == "not recognised"
    assert "md_bitmap_startwrite" in render(model, "text")


def test_not_root_banner_and_wchan_fallback(tmp_path: Path) -> None:
    md_array(tmp_path / "sys", "md0", sync_action="frozen", reshape_position="4096")
    col, model = diagnose(tmp_path, [
        raid5d(), Task(812, "dd", stack=None, wchan="raid5_make_request", fds=("/dev/md0",))])
    assert not col.stacks_readable
    assert any("kernel stacks not readable" in n for n in col.notes)
    assert codes(model)["F7"].details["reason"] == "frozen"
    assert "stack unreadable" not in render(model, "text") or True
    assert "note: kernel stacks not readable" in render(model, "text")


# -- the command ---------------------------------------------------------------------------


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["diagnose", *args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_command_exit_codes_and_json_schema(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    md_array(tmp_path / "sys", "md0", sync_action="frozen", reshape_position="4096")
    proc_tree(tmp_path / "proc", [raid5d(), Task(812, "dd", stack=stack(
        "dd_raid5_reshape_61.stack"), fds=("/dev/md0",))], "6.1.0-56-amd64")
    klog_file = tmp_path / "dmesg.txt"
    klog_file.write_text("[ 1.0] md: md0 switched to read-only mode.\n")
    dm_file = tmp_path / "dmsetup.txt"
    dm_file.write_text("")
    roots = ["--sys-root", str(tmp_path / "sys"), "--proc-root", str(tmp_path / "proc"),
             "--kernel-log", str(klog_file), "--dmsetup-status", str(dm_file)]
    rc, out, _ = _cli([*roots, "--format", "json"], capsys)
    assert rc == 1
    doc = json.loads(out)
    assert doc["schema_version"] == 1 and doc["kind"] == "diagnose"
    assert [f["code"] for f in doc["findings"]] == ["F7"]
    assert {"code", "title", "array", "severity", "explanation", "fix", "remedy",
            "details", "active"} <= set(doc["findings"][0])
    (bt,) = doc["blocked_tasks"]
    assert bt["tid"] == 812 and bt["wait"] == "reshape_io" and bt["blocked_s"] == 300.0
    assert bt["frames"][0] == "raid5_make_request [raid456]"
    for fmt in ("text", "markdown", "html"):
        out_file = tmp_path / f"d.{fmt}"
        rc, out, err = _cli([*roots, "--format", fmt, "-o", str(out_file)], capsys)
        assert rc == 1 and out == "" and "F7" in out_file.read_text()
        assert "Blocked tasks" in out_file.read_text() or fmt == "text"
    # healthy: exit 0
    (tmp_path / "sys" / "block" / "md0" / "md" / "sync_action").write_text("idle\n")
    (tmp_path / "proc" / "812" / "task" / "812" / "stack").write_text(
        stack("md_thread_idle.stack"))
    rc, out, _ = _cli(roots, capsys)
    assert rc == 0 and "0 findings" in out
    # cannot diagnose: one line, exit 2
    rc, out, err = _cli(["--proc-root", str(tmp_path / "nope")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "cannot diagnose" in err
    rc, out, err = _cli([*roots, "--kernel-log", str(tmp_path / "missing")], capsys)
    assert rc == 2 and "cannot read" in err and "Traceback" not in err


def test_this_host_clean_answer_no_traceback() -> None:
    res = subprocess.run([sys.executable, "-m", "mdtrace.cli", "diagnose"], capture_output=True,
                         text=True, timeout=60)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert res.returncode in (0, 1), res.stderr
    assert "mdtrace diagnose" in res.stdout and "kernel-internal state" in res.stdout
    if not Path("/proc/mdstat").exists():
        assert res.returncode == 0 and "no md or dm-raid arrays" in res.stdout


def test_from_event_unknown_blocked_time() -> None:
    from mdtrace.events import Event
    bt = from_event(Event(ts=5, kind="task_blocked", tid=3, comm="x",
                          args={"state": "D", "frames": [], "wchan": "", "blocked_s": None}))
    assert bt.blocked_s is None and bt.since_ns == 5 and bt.wait == ""


# -- real /proc/PID/stack texts captured in the guests (tests/vm/guest/live_fronts.sh) -------
REAL = Path(__file__).parent / "data" / "diagnose" / "real"


def test_real_61_stack_of_a_write_across_a_frozen_reshape() -> None:
    """6.1.0-56: dd's 1 MiB direct write sleeps (D) in raid5_make_request's wait_woken."""
    from mdtrace.engine.blocked import wait_kind
    from mdtrace.sources.snapshot.tasks import parse_stack

    frames = parse_stack((REAL / "6.1.0-56-amd64-dd-write-across-frozen-reshape.stack")
                         .read_text())
    assert frames[:2] == ("wait_woken", "raid5_make_request [raid456]")
    assert len(frames) == 12 and frames[-1].startswith("entry_SYSCALL_64")
    assert wait_kind(frames) == ("reshape_io", "raid5_make_request")


def test_real_612_stack_is_a_busy_retry_snapshot() -> None:
    """6.12.117: the same write busy-retries (R state); its stack, caught mid-retry, is just
    md_write_start <- raid5_make_request.  By frames alone it would read as a superblock
    wait, which it is not: only the task state tells (the snapshot then counts it as a
    retried IO when the kernel log shows the refusals: tests/test_diagnose_real.py)."""
    from mdtrace.engine.blocked import wait_kind
    from mdtrace.sources.snapshot.tasks import parse_stack

    frames = parse_stack((REAL / "6.12.117-dd-write-across-frozen-reshape.stack").read_text())
    assert frames == ("md_write_start [md_mod]", "raid5_make_request [raid456]")
    assert wait_kind(frames) == ("sb_wait", "md_write_start")
