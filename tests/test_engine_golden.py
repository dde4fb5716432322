"""The engine over real-kernel recordings (tests/data/golden): the 6.8/6.9 md fixes
(ad39c08186f8, 82ec0ae59d02, ...) show up as findings on the 6.1 kernel (before them) and are
absent on 6.12 (after them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mdtrace.config import EngineConfig
from mdtrace.engine.core import Engine
from mdtrace.engine.model import Lifecycle
from mdtrace.events import ArrayState, Event
from mdtrace.kernel.flags import FlagTable, Recovery
from mdtrace.trace import TraceReader

GOLDEN = Path(__file__).parent / "data" / "golden"
OLD, NEW = "6.1.0-56-amd64", "6.12.117+deb12-amd64"


def _codes(kernel: str, name: str, config: EngineConfig | None = None) -> set[str]:
    reader = TraceReader(GOLDEN / kernel / f"{name}.jsonl.gz")
    eng = Engine(config, kernel=reader.header.kernel)
    for ev in reader:
        eng.feed(ev)
    eng.finish()
    return {f.code for f in eng.findings}


def test_reshape_registered_directly_only_before_the_fix() -> None:
    # ad39c08186f8 (6.8): raid5_start_reshape no longer registers the sync thread itself
    assert "F4" in _codes(OLD, "reshape_frozen_io")
    assert "F4" not in _codes(NEW, "reshape_frozen_io")


def test_dm_raid_reap_without_mutex_only_before_the_fix() -> None:
    # cd32b27a66db (6.9): raid_message no longer calls md_reap_sync_thread directly
    assert "F6" in _codes(OLD, "lvm_raid5_reshape")
    assert _codes(NEW, "lvm_raid5_reshape") == set()


@pytest.mark.parametrize("grace", [0.1, 2.0, 10.0])
def test_lvm_table_reload_is_not_f3_at_any_grace(grace: float) -> None:
    # 6.1 lvm2 reshape: the reloaded table's reshape thread leaves md_do_sync without DONE
    # (MD_RECOVERY_WAIT) around the replaced table's array_stop; the stop path reaps it
    config = EngineConfig().with_overrides({"done_grace_s": grace})
    assert "F3" not in _codes(OLD, "lvm_raid5_reshape", config)
    assert _codes(OLD, "lvm_raid5_reshape", config) == _codes(OLD, "lvm_raid5_reshape")


@pytest.mark.parametrize("grace", ["0.1", "10"])
def test_lvm_table_reload_report_has_no_f3(grace: str) -> None:
    res = subprocess.run([sys.executable, "-m", "mdtrace.cli", "report", "--format", "json",
                          "--threshold", f"done_grace_s={grace}",
                          str(GOLDEN / OLD / "lvm_raid5_reshape.jsonl.gz")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    codes = {f["code"] for f in json.loads(res.stdout)["findings"]}
    assert "F3" not in codes and "F6" in codes


@pytest.mark.parametrize("kernel", [OLD, NEW])
def test_frozen_reshape_io_is_f7_with_reason(kernel: str) -> None:
    reader = TraceReader(GOLDEN / kernel / "reshape_frozen_io.jsonl.gz")
    eng = Engine(kernel=reader.header.kernel)
    for ev in reader:
        eng.feed(ev)
    eng.finish()
    f7 = [f for f in eng.findings if f.code == "F7"]
    assert f7 and all(f.details["reason"] == "frozen" for f in f7)
    assert "sync_action" in f7[0].remedy


def _ev(ts: int, kind: str, rec: int, thread: bool, **args: object) -> Event:
    table = FlagTable.for_release(NEW)
    st = ArrayState(recovery=table.recovery_raw(rec), sync_thread=thread)
    st.rec = rec
    st.mdf = 0
    return Event(ts=ts, kind=kind, array="md9", state=st, args=dict(args))


def test_f1_done_never_reaped_on_suspended_array_and_clears_on_reap() -> None:
    eng = Engine(kernel=NEW)
    run = Recovery.RUNNING | Recovery.SYNC
    eng.feed(_ev(1, "thread_register", run, True, sync=True, caller="md_start_sync"))
    eng.feed(_ev(2, "do_sync_enter", run, True))
    done = run | Recovery.DONE
    eng.feed(_ev(3, "do_sync_exit", done, True))
    ev = _ev(4, "check_recovery_exit", done, True)
    assert ev.state is not None
    ev.state.suspended = 1
    eng.feed(ev)
    assert eng.snapshot().arrays["md9"].lifecycle is Lifecycle.DONE
    assert not eng.advance(int(4e9))  # within the grace period
    raised = eng.advance(int(10e9))
    assert [f.code for f in raised] == ["F1"]
    eng.feed(_ev(int(11e9), "reap", done, True, mutex_owned=True, caller="md_check_recovery"))
    eng.feed(_ev(int(11e9) + 1, "check_recovery_exit", Recovery.NONE, False))
    eng.advance(int(12e9))
    assert not any(f.active for f in eng.findings)


def test_f3_exit_without_done() -> None:
    eng = Engine(kernel=NEW)
    run = Recovery.RUNNING | Recovery.SYNC
    eng.feed(_ev(1, "do_sync_enter", run, True))
    eng.feed(_ev(2, "do_sync_exit", run, True))
    assert [f.code for f in eng.advance(int(5e9))] == ["F3"]
