"""The scenario catalogue: healthy runs, and for each failure class F1-F10 a *buggy* kernel run
(the engine must raise the class) and a *fixed* kernel run of the same operations (it must
not).  Each builder's docstring names the kernel code path it follows."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from tests.scenarios.builder import Scenario, Sim

K61, K67, K68, K612 = "6.1.0-56-amd64", "6.7.12-amd64", "6.8.12-amd64", "6.12.117+deb12-amd64"


# -- healthy -----------------------------------------------------------------------------------
def healthy_resync(sim: Sim) -> None:
    """mdadm --create raid5 on 6.12: resync, DONE, reaped by the daemon, mdadm --stop."""
    mdadm = sim.task("mdadm")
    md = sim.array("md0")
    md.create(mdadm)
    md.start_sync("resync")
    md.run_sync("resync", 20)
    md.end_sync("resync")
    md.reap()
    sim.idle(md, 3)
    md.stop(mdadm)


def healthy_recovery(sim: Sim) -> None:
    """raid1 on 6.1: mdadm --fail/--remove/--add, recovery onto the new disk, reaped."""
    mdadm = sim.task("mdadm")
    md = sim.array("md1", level=1)
    md.create(mdadm)
    sim.idle(md, 2)
    md.start_sync("recover")
    md.run_sync("recover", 10)
    md.end_sync("recover")
    md.reap()
    sim.idle(md, 2)


def healthy_reshape(sim: Sim) -> None:
    """mdadm --grow --raid-devices=4 on 6.12: action_store -> raid5_start_reshape sets NEEDED
    (no direct register), md_start_sync registers, IO across the position waits ~1.2 s while
    the reshape moves past it, reshape ends, reaped."""
    mdadm, fio = sim.task("mdadm"), sim.task("fio")
    md = sim.array("md0")
    md.create(mdadm)
    md.emit("start_reshape", mdadm, caller="action_store", phase="enter")
    md.reshape_pos = 0
    md.set("NEEDED", "RESHAPE")
    md.emit("start_reshape", mdadm, caller="action_store", phase="exit", rc=0)
    md.clear("NEEDED")
    md.emit("check_recovery_enter", md.daemon)
    md.set("RUNNING")
    md.emit("check_recovery_exit", md.daemon)
    md.register_sync("reshape", sim.task("kworker/1:1"), "md_start_sync")
    md.reshape_past_io(fio, 250_000, upto=200_000, past=260_000, waited_s=1.4)
    md.run_sync("reshape", 10, start=260_000, enter=False, reshape=True)
    md.end_sync("reshape")
    md.reshape_pos = None
    md.reap()
    sim.idle(md, 2)


def healthy_dm_reshape(sim: Sim) -> None:
    """lvconvert --stripes on 6.12 (dm-raid), then dmsetup suspend/resume mid-reshape:
    raid_presuspend freezes and stops the sync thread (md_frozen_sync_thread), the daemon
    reaps it, raid_resume unfreezes and md_start_sync continues from reshape_position."""
    lvm, dms = sim.task("lvconvert"), sim.task("dmsetup")
    lv = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5")
    lv.create(lvm)
    lv.reshape_pos = 0
    lv.start_sync("reshape")
    lv.run_sync("reshape", 4, end=60_000, reshape=True)
    _suspend_fixed(sim, lv, dms)
    sim.idle(lv, 3)
    _resume_continue(sim, lv, dms, 60_000)


def _suspend_fixed(sim: Sim, lv, dms) -> None:  # noqa: ANN001 - Arr, Task
    """6.9+ dm_suspend: raid_presuspend -> md_frozen_sync_thread (FROZEN, INTR) waits for the
    daemon to reap; raid5_prepare_suspend wakes blocked IO; postsuspend; suspended."""
    lv.emit("dm_suspend_enter", dms, dm_name=lv.dm_name, dm_dev="252:6", flags=0)
    lv.emit("raid_target", dms, hook="presuspend", phase="enter")
    lv.set("FROZEN")
    lv.end_sync("reshape", intr=True)
    lv.reap()
    lv.set("FROZEN")
    lv.emit("raid_target", dms, hook="presuspend", phase="exit")
    lv.emit("raid_target", dms, hook="postsuspend", phase="enter")
    lv.suspended = 1
    lv.emit("raid_target", dms, hook="postsuspend", phase="exit")
    lv.emit("dm_suspend_exit", dms, dm_name=lv.dm_name, dm_dev="252:6", rc=0)


def _resume_continue(sim: Sim, lv, dms, pos: int) -> None:  # noqa: ANN001
    lv.emit("dm_resume_enter", dms, dm_name=lv.dm_name, dm_dev="252:6")
    lv.emit("raid_target", dms, hook="preresume", phase="enter")
    lv.emit("raid_target", dms, hook="preresume", phase="exit", rc=0)
    lv.emit("raid_target", dms, hook="resume", phase="enter")
    lv.suspended = 0
    lv.clear("FROZEN")
    lv.emit("raid_target", dms, hook="resume", phase="exit")
    lv.emit("dm_resume_exit", dms, dm_name=lv.dm_name, dm_dev="252:6", rc=0)
    lv.start_sync("reshape")
    lv.run_sync("reshape", 6, start=pos, reshape=True)
    lv.end_sync("reshape")
    lv.reshape_pos = None
    lv.reap()
    sim.idle(lv, 2)


# -- F1 / F2: DONE never reaped ----------------------------------------------------------------
def _done_while(sim: Sim, *, suspended: bool, reaps: bool) -> None:
    """dm-raid check finishing while the array is suspended (F1) or read-only (F2).  Before
    1baae052cccd / 55a48ad2db64 (6.8) md_check_recovery returns early for both, so the daemon
    keeps running without reaping; after them it reaps."""
    lvm = sim.task("lvchange")
    lv = sim.array("dm-3", kind="dm-raid", dm_name="vg-mirror", level=1)
    lv.create(lvm)
    lv.start_sync("check")
    lv.run_sync("check", 4)
    if suspended:
        lv.suspended = 1
    else:
        lv.ro = 1
    lv.end_sync("check")
    if reaps:
        lv.reap()
    sim.idle(lv, 12)






# -- F3: md_do_sync returns without DONE ---------------------------------------------------------
def _no_done(sim: Sim, *, sets_done: bool) -> None:
    """dm-raid resync interrupted (`lvchange --syncaction frozen` sets INTR): 6.7's md_do_sync
    has early-return paths that skip `set_bit(MD_RECOVERY_DONE)`; 82ec0ae59d02 (6.8) makes
    every exit set it so the daemon reaps."""
    lvm = sim.task("lvchange")
    lv = sim.array("dm-4", kind="dm-raid", dm_name="vg-r5b")
    lv.create(lvm)
    lv.start_sync("resync")
    lv.run_sync("resync", 3, end=40_000)
    lv.emit("raid_target", lvm, hook="message", phase="enter", argv="frozen")
    lv.set("FROZEN")
    lv.emit("raid_target", lvm, hook="message", phase="exit", rc=0)
    lv.end_sync("resync", done=sets_done, intr=True)
    if sets_done:
        lv.reap()
    sim.idle(lv, 6)


def _reshape_reload(sim: Sim, *, fixed: bool) -> None:
    """lvconvert --stripes on dm-raid, as the 6.1 golden lvm_raid5_reshape shows: lvm2 loads a
    table (C) requesting the reshape next to the live one (B), resumes it (raid_preresume ->
    rs_start_reshape: MD_RECOVERY_WAIT; 6.1's raid5_start_reshape registers the thread, F4),
    B's raid_dtr -> md_stop (array_stop), then C's reshape thread leaves md_do_sync at once:
    without DONE on 6.1 (the WAIT early return), with INTR|DONE and reaped on 6.12
    (82ec0ae59d02).  Seconds later lvm2 reloads again: D's raid5_run re-registers the
    interrupted reshape (6.1, F4), C's postsuspend -> __md_stop_writes unregisters and reaps
    its thread without DONE, C stops, D resumes and reshapes.  Nothing waits for C's DONE."""
    lvm = sim.task("lvconvert")
    b = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5", ident="b")
    b.create(lvm)
    sim.idle(b, 2)
    c = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5", ident="c")
    c.create(lvm)
    c.suspended = 1
    c.emit("mddev_suspend", lvm, phase="exit", rc=0)
    b.emit("raid_target", lvm, hook="postsuspend", phase="enter")
    b.set("FROZEN")
    b.suspended = 1
    b.emit("raid_target", lvm, hook="postsuspend", phase="exit")
    c.emit("raid_target", lvm, hook="preresume", phase="enter")
    c.emit("start_reshape", lvm, caller="raid_preresume", phase="enter")
    c.reshape_pos = 0
    c.set("FROZEN", "WAIT", "RESHAPE")
    if not fixed:
        c.set("RUNNING")
        c.register_sync("reshape", lvm, "raid5_start_reshape")
    c.emit("start_reshape", lvm, caller="raid_preresume", phase="exit", rc=0)
    c.emit("raid_target", lvm, hook="preresume", phase="exit", rc=0)
    c.suspended = 0
    c.clear("FROZEN")
    c.emit("raid_target", lvm, hook="resume", phase="exit")
    b.stop(lvm)                                   # the old table's raid_dtr -> md_stop
    sim.sleep(0.0035)
    if fixed:
        c.start_sync("reshape")
        c.emit("do_sync_enter", c.sync_task, thread="mdX_reshape", action="reshape")
        c.end_sync("reshape", intr=True)          # 6.8+: the WAIT exit sets DONE
        c.reap()
    else:
        c.emit("do_sync_enter", c.sync_task, thread="mdX_reshape", action="reshape")
        c.end_sync("reshape", done=False)         # 6.1: `if (... WAIT) return;`
    sim.idle(c, 6, every_s=0.5)                   # lvm2 prepares the next table (> grace)
    d = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5", ident="d")
    d.create(lvm)
    d.reshape_pos = 0
    d.set("RESHAPE")
    d.suspended = 1
    d.emit("mddev_suspend", lvm, phase="exit", rc=0)
    c.emit("raid_target", lvm, hook="postsuspend", phase="enter")
    c.set("INTR", "FROZEN")
    if not fixed:
        c.emit("thread_unregister", lvm, name="mdX_reshape", caller="__md_stop_writes",
               sync=True, run="md_do_sync")
        c.reap(by=lvm, caller="__md_stop_writes")
    c.suspended = 1
    c.emit("raid_target", lvm, hook="postsuspend", phase="exit")
    c.stop(lvm)
    d.suspended = 0
    d.emit("raid_target", lvm, hook="resume", phase="exit")
    if fixed:
        d.start_sync("reshape")
    else:
        d.set("RUNNING")
        d.register_sync("reshape", lvm, "raid5_run.cold")
    d.run_sync("reshape", 4, reshape=True)
    d.end_sync("reshape")
    d.reshape_pos = None
    d.reap()
    sim.idle(d, 2)




# -- F4: sync thread registered outside the daemon --
def _grow(sim: Sim, *, direct: bool) -> None:
    """mdadm --grow: action_store -> raid5_start_reshape.  6.1 registers the reshape thread
    itself and sets RUNNING (steps 1-2 skipped); since ad39c08186f8 (6.8) it sets NEEDED and
    md_start_sync registers it."""
    mdadm = sim.task("mdadm")
    md = sim.array("md0")
    md.create(mdadm)
    md.emit("start_reshape", mdadm, caller="action_store", phase="enter")
    md.reshape_pos = 0
    if direct:
        md.set("NEEDED", "RUNNING", "RESHAPE")
        md.register_sync("reshape", mdadm, "raid5_start_reshape")
        md.emit("start_reshape", mdadm, caller="action_store", phase="exit", rc=0)
    else:
        md.set("NEEDED", "RESHAPE")
        md.emit("start_reshape", mdadm, caller="action_store", phase="exit", rc=0)
        md.clear("NEEDED")
        md.emit("check_recovery_enter", md.daemon)
        md.set("RUNNING")
        md.emit("check_recovery_exit", md.daemon)
        md.register_sync("reshape", sim.task("kworker/1:1"), "md_start_sync")
    md.run_sync("reshape", 8, reshape=True)
    md.end_sync("reshape")
    md.reshape_pos = None
    md.reap()
    sim.idle(md, 2)




# -- F5: start_reshape over an interrupted reshape ----------------------------------------------
def f5_buggy(sim: Sim) -> None:
    """6.8 dm-raid: dmsetup suspend mid-reshape -> raid_postsuspend -> md_stop_writes stops the
    sync thread, which now sets DONE (82ec0ae59d02) and is reaped; dmsetup resume ->
    raid_preresume -> rs_start_reshape -> raid5_start_reshape again although reshape_position
    records the unfinished reshape (fixed by 16c4770c75b1, 6.9)."""
    lvm, dms = sim.task("lvconvert"), sim.task("dmsetup")
    lv = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5")
    lv.create(lvm)
    lv.reshape_pos = 0
    lv.start_sync("reshape")
    lv.run_sync("reshape", 4, end=60_000, reshape=True)
    lv.emit("dm_suspend_enter", dms, dm_name=lv.dm_name, dm_dev="252:6", flags=0)
    lv.emit("raid_target", dms, hook="postsuspend", phase="enter")
    lv.emit("thread_unregister", dms, name=lv.sync_task.comm if lv.sync_task else "",
            caller="__md_stop_writes", sync=True, run="md_do_sync")
    lv.end_sync("reshape", intr=True)
    lv.reap(by=dms, caller="__md_stop_writes")
    lv.suspended = 1
    lv.emit("raid_target", dms, hook="postsuspend", phase="exit")
    lv.emit("dm_suspend_exit", dms, dm_name=lv.dm_name, dm_dev="252:6", rc=0)
    sim.idle(lv, 2)
    lv.emit("dm_resume_enter", dms, dm_name=lv.dm_name, dm_dev="252:6")
    lv.emit("raid_target", dms, hook="preresume", phase="enter")
    lv.emit("start_reshape", dms, caller="raid_preresume", phase="enter")
    lv.set("NEEDED", "RESHAPE")
    lv.emit("start_reshape", dms, caller="raid_preresume", phase="exit", rc=0)
    lv.emit("raid_target", dms, hook="preresume", phase="exit", rc=0)
    lv.suspended = 0
    lv.emit("raid_target", dms, hook="resume", phase="enter")
    lv.emit("raid_target", dms, hook="resume", phase="exit")
    lv.emit("dm_resume_exit", dms, dm_name=lv.dm_name, dm_dev="252:6", rc=0)
    lv.clear("NEEDED")
    lv.start_sync("reshape")
    lv.run_sync("reshape", 6, start=60_000, reshape=True)
    lv.end_sync("reshape")
    lv.reshape_pos = None
    lv.reap()


def f5_fixed(sim: Sim) -> None:
    """6.12 dm-raid, same suspend/resume mid-reshape: raid_presuspend freezes the sync thread
    (16c4770c75b1), resume unfreezes it and md_start_sync *continues* the reshape from
    reshape_position; start_reshape is not called again."""
    healthy_dm_reshape(sim)


# -- F6: reap without reconfig_mutex -------------------------------------------------------------
def _syncaction_idle(sim: Sim, *, direct_reap: bool) -> None:
    """`lvchange --syncaction idle` during a dm-raid check: 6.1's raid_message calls
    md_reap_sync_thread itself without reconfig_mutex; since cd32b27a66db (6.9) it uses
    md_idle_sync_thread and the daemon reaps holding the mutex."""
    lvm = sim.task("lvchange")
    lv = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5")
    lv.create(lvm)
    lv.start_sync("check")
    lv.run_sync("check", 3, end=50_000)
    lv.emit("raid_target", lvm, hook="message", phase="enter", argv="idle")
    lv.end_sync("check", intr=True)
    if direct_reap:
        lv.reap(by=lvm, caller="raid_message", owned=False)
    else:
        lv.reap()
    lv.emit("raid_target", lvm, hook="message", phase="exit", rc=0)
    sim.idle(lv, 3)




# -- F7: IO across the reshape position while reshape cannot move --------------------------------
def f7_buggy(sim: Sim) -> None:
    """6.8 dm-raid: `lvchange --syncaction frozen` during a reshape (raid_message sets FROZEN,
    the sync thread stops), then a write across the reshape position: raid5_make_request
    sleeps on wait_for_overlap (6.7/6.8) and nothing will ever move the reshape."""
    lvm, fio = sim.task("lvchange"), sim.task("fio")
    lv = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5")
    lv.create(lvm)
    lv.reshape_pos = 0
    lv.start_sync("reshape")
    lv.run_sync("reshape", 4, end=80_000, reshape=True)
    lv.emit("raid_target", lvm, hook="message", phase="enter", argv="frozen")
    lv.set("FROZEN")
    lv.end_sync("reshape", intr=True)
    lv.reap()
    lv.set("FROZEN", "RESHAPE")
    lv.emit("raid_target", lvm, hook="message", phase="exit", rc=0)
    for i in range(1, 13):
        sim.sleep(1.0)
        lv.io_blocked(fio, 81_920, float(i))
        lv.daemon_pass()


def f7_fixed(sim: Sim) -> None:
    """6.12 dm-raid after lvconvert's suspend/resume: 2f03d0c2cd45/16c4770c75b1 keep the
    reshape frozen only while suspended, so it runs; a write across the position waits ~1.5 s
    while the reshape moves past it, then completes."""
    lvm, fio = sim.task("lvconvert"), sim.task("fio")
    lv = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5")
    lv.create(lvm)
    lv.reshape_pos = 0
    lv.start_sync("reshape")
    lv.reshape_past_io(fio, 90_000, upto=80_000, past=100_000, waited_s=1.5)
    lv.run_sync("reshape", 4, start=100_000, enter=False, reshape=True)
    lv.end_sync("reshape")
    lv.reshape_pos = None
    lv.reap()


# -- F8: lock-order inversion --
def _lock_orders(sim: Sim, *, inverted: bool) -> None:
    """`mdtrace record --locks --locks-full` on a 6.7 kernel.  Path 1 (md's
    mddev_suspend_and_lock, e.g. a sysfs store): suspend_mutex then reconfig_mutex.  Path 2:
    a store that takes reconfig_mutex first and then calls mddev_suspend (the order 6.7
    replaced with mddev_suspend_and_lock); the fixed path uses the same helper as path 1."""
    a, b = sim.task("mdadm"), sim.task("udev-worker")
    md = sim.array("md0")
    md.create(a)
    md.lock(a, "suspend_mutex", "acquire")
    md.lock(a, "suspend_mutex", "acquired")
    md.lock(a, "reconfig_mutex", "acquire")
    md.lock(a, "reconfig_mutex", "acquired")
    md.lock(a, "reconfig_mutex", "release")
    md.lock(a, "suspend_mutex", "release")
    sim.idle(md, 2)
    first, second = ("reconfig_mutex", "suspend_mutex") if inverted else \
        ("suspend_mutex", "reconfig_mutex")
    md.lock(b, first, "acquire")
    md.lock(b, first, "acquired")
    md.lock(b, second, "acquire")
    md.lock(b, second, "acquired")
    md.lock(b, second, "release")
    md.lock(b, first, "release")
    sim.idle(md, 2)




# -- F9: wait-for cycle --
def _suspend_during_blocked_io(sim: Sim, *, fixed: bool) -> None:
    """lvm2's lvconvert-raid-reshape.sh: a dm-raid reshape that cannot move (MD_RECOVERY_WAIT
    until the LV is resumed), a write across the reshape position, then lvm suspends the LV.
    6.8: dm_suspend waits for the write, the write sleeps until the reshape moves, the
    reshape waits for the resume that follows the suspend: deadlock.  6.9+ (41425f96d7aa):
    raid5_prepare_suspend wakes the write, raid5_make_request returns STRIPE_WAIT_RESHAPE,
    dm requeues it, the suspend completes, the resume lets the reshape run, the write passes."""
    lvm, fio = sim.task("lvconvert"), sim.task("fio")
    lv = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5")
    lv.create(lvm)
    lv.reshape_pos = 40_000
    lv.set("WAIT", "RESHAPE")
    lv.daemon_pass()
    sim.sleep(1.0)
    lv.io_blocked(fio, 40_960, 1.0, mode="requeue" if fixed else "sleep")
    sim.sleep(0.5)
    lv.emit("dm_suspend_enter", lvm, dm_name=lv.dm_name, dm_dev="252:6", flags=0)
    if not fixed:
        for i in range(2, 14):
            sim.sleep(1.0)
            lv.io_blocked(fio, 40_960, float(i))
            lv.daemon_pass()
        return
    lv.emit("raid_target", lvm, hook="presuspend", phase="enter")
    lv.set("FROZEN")
    lv.io_blocked(fio, 40_960, 1.6, done=True, mode="requeue")
    lv.emit("raid_target", lvm, hook="presuspend", phase="exit")
    lv.emit("raid_target", lvm, hook="postsuspend", phase="enter")
    lv.suspended = 1
    lv.emit("raid_target", lvm, hook="postsuspend", phase="exit")
    lv.emit("dm_suspend_exit", lvm, dm_name=lv.dm_name, dm_dev="252:6", rc=0)
    sim.sleep(0.2)
    lv.emit("dm_resume_enter", lvm, dm_name=lv.dm_name, dm_dev="252:6")
    lv.emit("raid_target", lvm, hook="resume", phase="enter")
    lv.suspended = 0
    lv.clear("FROZEN", "WAIT")
    lv.emit("raid_target", lvm, hook="resume", phase="exit")
    lv.emit("dm_resume_exit", lvm, dm_name=lv.dm_name, dm_dev="252:6", rc=0)
    lv.start_sync("reshape")
    lv.run_sync("reshape", 6, start=40_000, reshape=True)
    lv.end_sync("reshape")
    lv.reshape_pos = None
    lv.reap()




# -- F10: stalled sync --
def _resync_progress(sim: Sim, *, stalls: bool) -> None:
    """A raid5 resync observed by the sysfs poller every 5 s.  Buggy: a member stops answering
    and curr_resync stays put for 100 s with RUNNING set and nothing frozen.  Fixed: a slow
    (speed_limit_max=1000) but moving resync."""
    mdadm, poller = sim.task("mdadm"), sim.task("mdtrace")
    md = sim.array("md0")
    md.create(mdadm)
    md.start_sync("resync")
    md.run_sync("resync", 5, end=300_000)
    for _ in range(20):
        sim.sleep(5.0)
        if not stalls:
            md.curr_resync += 2_000
        sim.progress(md, poller)
        md.daemon_pass()




def _s(name: str, kernel: str, expected: set[str], build: Callable[[Sim], None]) -> Scenario:
    fn = build.func if isinstance(build, partial) else build
    return Scenario(name, kernel, (fn.__doc__ or "").strip(), frozenset(expected), build)


ALL: list[Scenario] = [
    _s("healthy_resync", K612, set(), healthy_resync),
    _s("healthy_recovery", K61, set(), healthy_recovery),
    _s("healthy_reshape", K612, set(), healthy_reshape),
    _s("healthy_dm_reshape", K612, set(), healthy_dm_reshape),
    _s("f1_suspended_not_reaped_buggy", K67, {"F1"},
       partial(_done_while, suspended=True, reaps=False)),
    _s("f1_suspended_not_reaped_fixed", K68, set(),
       partial(_done_while, suspended=True, reaps=True)),
    _s("f2_readonly_not_reaped_buggy", K67, {"F2"},
       partial(_done_while, suspended=False, reaps=False)),
    _s("f2_readonly_not_reaped_fixed", K68, set(),
       partial(_done_while, suspended=False, reaps=True)),
    _s("f3_do_sync_without_done_buggy", K67, {"F3"}, partial(_no_done, sets_done=False)),
    _s("f3_do_sync_without_done_fixed", K68, set(), partial(_no_done, sets_done=True)),
    _s("f3_reload_stopped_array_buggy", K61, {"F4"}, partial(_reshape_reload, fixed=False)),
    _s("f3_reload_stopped_array_fixed", K612, set(), partial(_reshape_reload, fixed=True)),
    _s("f4_register_outside_daemon_buggy", K61, {"F4"}, partial(_grow, direct=True)),
    _s("f4_register_outside_daemon_fixed", K612, set(), partial(_grow, direct=False)),
    _s("f5_restart_interrupted_reshape_buggy", K68, {"F5"}, f5_buggy),
    _s("f5_restart_interrupted_reshape_fixed", K612, set(), f5_fixed),
    _s("f6_reap_without_mutex_buggy", K61, {"F6"}, partial(_syncaction_idle, direct_reap=True)),
    _s("f6_reap_without_mutex_fixed", K612, set(),
       partial(_syncaction_idle, direct_reap=False)),
    _s("f7_frozen_reshape_io_buggy", K68, {"F7"}, f7_buggy),
    _s("f7_frozen_reshape_io_fixed", K612, set(), f7_fixed),
    _s("f8_lock_order_inversion_buggy", K67, {"F8"}, partial(_lock_orders, inverted=True)),
    _s("f8_lock_order_inversion_fixed", K67, set(), partial(_lock_orders, inverted=False)),
    _s("f9_dm_suspend_reshape_deadlock_buggy", K68, {"F7", "F9"},
       partial(_suspend_during_blocked_io, fixed=False)),
    _s("f9_dm_suspend_reshape_deadlock_fixed", K612, set(),
       partial(_suspend_during_blocked_io, fixed=True)),
    _s("f10_stalled_resync_buggy", K612, {"F10"}, partial(_resync_progress, stalls=True)),
    _s("f10_stalled_resync_fixed", K612, set(), partial(_resync_progress, stalls=False)),
]
