"""dm devices that are not raid targets are context of their raid LV, never arrays."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdtrace.engine.core import Engine
from mdtrace.engine.dm_context import owner, summary
from mdtrace.events import ArrayState, Event
from mdtrace.trace import TraceReader

GOLDEN = Path(__file__).parent / "data" / "golden"


def test_owner_is_the_longest_raid_lv_prefix() -> None:
    lvs = ["vg-r5", "vg-r5_x", "vg-r1"]
    assert owner("vg-r5_rimage_0", lvs) == "vg-r5"
    assert owner("vg-r5_x_rmeta_1", lvs) == "vg-r5_x"
    assert owner("vg-r50_rimage_0", lvs) == ""       # a prefix of the name, not of an LV
    assert owner("vg-other", lvs) == ""


@pytest.mark.parametrize("kernel", ["6.1.0-56-amd64", "6.12.117+deb12-amd64"])
def test_lvm_sub_lvs_are_not_arrays(kernel: str) -> None:
    eng = Engine(kernel=kernel)
    for ev in TraceReader(GOLDEN / kernel / "lvm_raid5_reshape.jsonl.gz"):
        eng.feed(ev)
    eng.finish()
    snap = eng.snapshot()
    assert list(snap.arrays) == ["dm-6"]
    arr = snap.arrays["dm-6"]
    assert arr.kind == "dm-raid" and arr.dm_name == "mdtvg-r5"
    members = sorted(m.dm_name for m in arr.dm_members)
    assert members == sorted([f"mdtvg-r5_r{k}_{i}" for k in ("image", "meta")
                              for i in range(4)])
    assert all(m.owner == "mdtvg-r5" for m in snap.dm_devices)
    assert summary(arr.dm_members) == "8 sub-LVs, all active"


def _dm(ts: int, kind: str, name: str, dm_name: str, tid: int = 7, **args: object) -> Event:
    return Event(ts=ts, kind=kind, array=name, dm_name=dm_name, tid=tid, comm="lvm",
                 args=dict(args))


def test_suspended_sub_lv_is_shown_under_its_lv_and_resume_clears_it() -> None:
    eng = Engine(kernel="6.12.117+deb12-amd64")
    st = ArrayState(recovery=0, flags=0, ro=0, suspended=0, sync_thread=False,
                    reshape_pos=None, curr_resync=0, resync_max=0, level=5)
    eng.feed(Event(ts=1, kind="array_create", array="dm-6", dm_name="vg-lv", mddev="p:1",
                   state=st, args={"level": "raid5", "kind": "dm-raid"}))
    eng.feed(_dm(2, "dm_suspend_enter", "dm-1", "vg-lv_rimage_0", flags=1))
    members = eng.snapshot().arrays["dm-6"].dm_members
    assert [m.label() for m in members] == ["vg-lv_rimage_0 (suspending by lvm (7))"]
    eng.feed(_dm(3, "dm_suspend_exit", "dm-1", "vg-lv_rimage_0", rc=0))
    snap = eng.snapshot()
    assert summary(snap.arrays["dm-6"].dm_members) == "1 sub-LV: vg-lv_rimage_0 (suspended)"
    assert "dm-1" not in snap.arrays
    eng.feed(_dm(4, "dm_resume_exit", "dm-1", "vg-lv_rimage_0", rc=0))
    assert summary(eng.snapshot().arrays["dm-6"].dm_members) == "1 sub-LV, all active"


def test_raid_lv_suspended_before_its_first_md_event_keeps_the_suspend() -> None:
    """dm_suspend of a new raid LV can precede the md probes' first word on it."""
    eng = Engine(kernel="6.12.117+deb12-amd64")
    eng.feed(_dm(2, "dm_suspend_enter", "dm-6", "vg-lv", flags=1))
    eng.feed(_dm(3, "dm_suspend_exit", "dm-6", "vg-lv", rc=0))
    assert eng.snapshot().arrays == {}
    st = ArrayState(recovery=0, flags=0, ro=0, suspended=1, sync_thread=False,
                    reshape_pos=None, curr_resync=0, resync_max=0, level=5)
    eng.feed(Event(ts=4, kind="check_recovery_enter", array="dm-6", dm_name="vg-lv",
                   mddev="p:1", state=st))
    snap = eng.snapshot()
    assert snap.arrays["dm-6"].dm_suspended is True
    assert snap.dm_devices == []
