"""Remedies name the command that works for the array's kind: md's sysfs sync_action and mdadm
for md arrays; lvchange (check|repair, permissions) or dm-raid target messages and dmsetup
resume for dm-raid arrays, which have no /sys/block/dm-N/md directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.core import Engine
from mdtrace.engine.detectors import (
    deadlock,
    no_done,
    not_reaped,
    reap_mutex,
    register_outside,
    reshape_io,
    restart_reshape,
    stall,
)
from mdtrace.engine.detectors.base import (
    Context,
    is_dm,
    lvm_name,
    readwrite_cmd,
    resume_cmd,
    sync_action_cmd,
)
from mdtrace.engine.model import Lifecycle
from mdtrace.events import ArrayState, Event, canonicalise
from mdtrace.kernel.flags import Recovery
from tests.scenarios.builder import Sim

S = 1_000_000_000
DETECTORS = Path(__file__).parents[1] / "mdtrace" / "engine" / "detectors"


def _md() -> ArrayRec:
    return ArrayRec(name="md0")


def _lv() -> ArrayRec:
    return ArrayRec(name="dm-6", kind="dm-raid", dm_name="my--vg-r5--lv")


def test_md_commands() -> None:
    arr = _md()
    assert not is_dm(arr)
    assert sync_action_cmd(arr, "idle") == "echo idle > /sys/block/md0/md/sync_action"
    assert resume_cmd(arr) == "echo active > /sys/block/md0/md/array_state"
    assert readwrite_cmd(arr) == "mdadm --readwrite /dev/md0"


def test_lvm_dm_raid_commands_undouble_dashes() -> None:
    arr = _lv()
    assert lvm_name(arr.dm_name) == "my-vg/r5-lv"
    assert sync_action_cmd(arr, "repair") == "lvchange --syncaction repair my-vg/r5-lv"
    # lvchange --syncaction takes only check|repair: the rest are dm-raid messages
    assert sync_action_cmd(arr, "idle") == "dmsetup message my--vg-r5--lv 0 idle"
    assert sync_action_cmd(arr, "frozen") == "dmsetup message my--vg-r5--lv 0 frozen"
    # dm-raid has no "reshape" message: idle unfreezes and the daemon continues it
    assert sync_action_cmd(arr, "reshape") == "dmsetup message my--vg-r5--lv 0 idle"
    assert resume_cmd(arr) == "dmsetup resume my--vg-r5--lv"
    assert readwrite_cmd(arr) == "lvchange -p rw my-vg/r5-lv"


@pytest.mark.parametrize(("dm_name", "want"), [
    ("vg-lv", "vg/lv"), ("vg-lv_rimage_0", "vg/lv_rimage_0"), ("a--b-c--d", "a-b/c-d"),
    ("vg-lv-real", None), ("raidset", None), ("-lv", None), ("vg-", None), ("", None),
])
def test_lvm_name(dm_name: str, want: str | None) -> None:
    assert lvm_name(dm_name) == want


def test_plain_dm_commands() -> None:
    arr = ArrayRec(name="dm-2", kind="dm-raid", dm_name="raidset")
    assert sync_action_cmd(arr, "check") == "dmsetup message raidset 0 check"
    assert sync_action_cmd(arr, "idle") == "dmsetup message raidset 0 idle"
    assert readwrite_cmd(arr) == resume_cmd(arr) == "dmsetup resume raidset"
    # an md-kind record named dm-N (its dm name not seen yet) is still dm-raid
    bare = ArrayRec(name="dm-3")
    assert is_dm(bare) and sync_action_cmd(bare, "idle") == "dmsetup message /dev/dm-3 0 idle"


def test_no_detector_hard_codes_md_sysfs() -> None:
    for p in sorted(DETECTORS.glob("*.py")):
        if p.name != "base.py":
            assert "/md/sync_action" not in p.read_text(), p.name


# -- one per detector: a dm-raid array's remedy has no /sys/block path -----------------------
def _ctx(arr: ArrayRec, ev: Event | None = None, now: int = 100 * S,
         kernel: str = "6.1.0-56-amd64") -> Context:
    return Context(arr, ev, now, EngineConfig(), kernel)


# F3 hangs only from f52f5c71f3d4 (6.7) on: the stock kernel that has it and lacks 82ec0ae59d02
K67 = "6.7.12-amd64"


def _ev(kind: str, arr: ArrayRec, **args: object) -> Event:
    st = ArrayState(recovery=0, sync_thread=True, reshape_pos=4096)
    st.rec, st.mdf = int(Recovery.RUNNING | Recovery.RESHAPE), 0
    return Event(ts=S, kind=kind, array=arr.name, dm_name=arr.dm_name, state=st, args=args)


def _remedies(verdicts: list) -> list[str]:  # noqa: ANN401 - Verdicts
    out = [v.finding.remedy for v in verdicts if v.finding is not None]
    assert out
    return out


def _f1_f2(suspended: bool) -> list[str]:
    arr = _lv()
    arr.done_since, arr.sync_thread = 0, True
    arr.suspended, arr.ro = (1, 0) if suspended else (0, 1)
    return _remedies(not_reaped.check(_ctx(arr)))


def _f3() -> list[str]:
    arr = _lv()
    arr.exit_without_done, arr.sync_thread = 0, True
    return _remedies(no_done.check(_ctx(arr, kernel=K67)))


def _f4() -> list[str]:
    arr = _lv()
    ev = _ev("thread_register", arr, sync=True, caller="raid5_start_reshape")
    return _remedies(register_outside.check(_ctx(arr, ev)))


def _f5() -> list[str]:
    arr = _lv()
    ev = _ev("start_reshape", arr, caller="raid_preresume", phase="enter")
    return _remedies(restart_reshape.check(_ctx(arr, ev)))


def _f6() -> list[str]:
    arr = _lv()
    ev = _ev("reap", arr, mutex_owned=False, caller="raid_message")
    return _remedies(reap_mutex.check(_ctx(arr, ev)))


def _f7() -> list[str]:
    reasons = ("read_only", "frozen", "wait", "dm_suspended", "suspended", "no_sync_thread")
    return [reshape_io._remedy(_lv(), r) for r in reasons]


def _f8() -> list[str]:
    sim = Sim("6.7.12-amd64")
    a, b = sim.task("lvchange"), sim.task("dmsetup")
    lv = sim.array("dm-6", kind="dm-raid", dm_name="vg-r5")
    lv.create(a)
    for task, order in ((a, ("suspend_mutex", "reconfig_mutex")),
                        (b, ("reconfig_mutex", "suspend_mutex"))):
        for lock in order:
            lv.lock(task, lock, "acquire")
            lv.lock(task, lock, "acquired")
        for lock in reversed(order):
            lv.lock(task, lock, "release")
    eng = Engine(kernel=sim.kernel)
    for ev in sim.events:
        eng.feed(canonicalise(ev, sim.table))
    return [f.remedy for f in eng.findings if f.code == "F8"]


def _f9() -> list[str]:
    arr = _lv()
    return [deadlock._remedy(k, arr) for k in ("reshape", "thread", "suspend", "lock", "io")]


def _f10() -> list[str]:
    arr = _lv()
    arr.lifecycle, arr.sync_thread = Lifecycle.SYNCING, True
    arr.recovery = int(Recovery.RUNNING | Recovery.SYNC)
    arr.prog_token, arr.curr_resync = (5000, -1, 0), 5000
    arr.prog_changed_ns, arr.prog_seen_ns = S, 90 * S
    return _remedies(stall.check(_ctx(arr)))


@pytest.mark.parametrize("remedies", [
    pytest.param(lambda: _f1_f2(True), id="F1"), pytest.param(lambda: _f1_f2(False), id="F2"),
    pytest.param(_f3, id="F3"), pytest.param(_f4, id="F4"), pytest.param(_f5, id="F5"),
    pytest.param(_f6, id="F6"), pytest.param(_f7, id="F7"), pytest.param(_f8, id="F8"),
    pytest.param(_f9, id="F9"), pytest.param(_f10, id="F10"),
])
def test_dm_raid_remedy_has_no_md_sysfs_path(remedies) -> None:  # noqa: ANN001
    got = remedies()
    assert got and all(r and "/sys/block" not in r for r in got), got


def test_dm_raid_remedies_name_the_lv() -> None:
    assert "dmsetup resume my--vg-r5--lv" in _f1_f2(True)[0]
    assert "lvchange -p rw my-vg/r5-lv" in _f1_f2(False)[0]
    # named as what not to do: on 6.7+ idle is stop_sync_thread, which waits for DONE
    f3 = _f3()[0]
    assert f3.startswith("do not ask the sync thread to stop: `dmsetup message "
                         "my--vg-r5--lv 0 idle`") and "hang (F12)" in f3, f3
    assert "dmsetup status my--vg-r5--lv" in _f10()[0] and "mdX_(resync|reshape)" in _f10()[0]


def test_md_remedies_keep_sysfs() -> None:
    arr = _md()
    arr.exit_without_done, arr.sync_thread = 0, True
    f3 = _remedies(no_done.check(_ctx(arr, kernel=K67)))[0]
    assert "`echo idle > /sys/block/md0/md/sync_action`" in f3 and "mdadm --stop /dev/md0" in f3
    assert "echo reshape > /sys/block/md0/md/sync_action" in reshape_io._remedy(arr, "frozen")
