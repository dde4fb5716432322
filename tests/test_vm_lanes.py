"""The vm tier's guest lanes (tests/vm/conftest.py): jobs of different kernels run at the same
time, each lane in collection order; a job's exception reaches its own fixture."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "vm_conftest", Path(__file__).parent / "vm" / "conftest.py")
assert _spec and _spec.loader
lanes_mod = importlib.util.module_from_spec(_spec)
sys.modules["vm_conftest"] = lanes_mod     # its dataclass looks its module up there
_spec.loader.exec_module(lanes_mod)


@pytest.fixture
def no_guest(monkeypatch: pytest.MonkeyPatch) -> None:
    import vmtest
    import vmtest.scenarios

    monkeypatch.setattr(vmtest.scenarios, "tier_problem", lambda _k="6.12": None)
    monkeypatch.setattr(vmtest, "image_for", lambda _k: None)
    monkeypatch.delenv("MDTRACE_VM_RECHECK", raising=False)


def test_two_kernels_run_side_by_side_each_in_order(no_guest) -> None:  # noqa: ANN001
    both = threading.Barrier(2, timeout=10)   # broken unless both lanes are in a job at once
    order: list[str] = []

    def job(name: str):  # noqa: ANN202
        def run(kernel: str) -> str:
            if name == "bpf":
                both.wait()
            order.append(f"{name}[{kernel}]")
            return f"{name}:{kernel}"
        return run

    plan = [("bpf", k, job("bpf"), k) for k in ("6.1", "6.12")] + \
           [("live", k, job("live"), k) for k in ("6.1", "6.12")]
    lanes = lanes_mod.GuestLanes(plan, 2)
    try:
        assert lanes.result("live", "6.12") == "live:6.12"
        assert lanes.result("bpf", "6.1") == "bpf:6.1"
        # every job waited for: close() cancels what has not started (live[6.1] had not,
        # once, on a loaded CI host: the order check then missed it)
        assert lanes.result("live", "6.1") == "live:6.1"
    finally:
        lanes.close()
    assert order.index("bpf[6.1]") < order.index("live[6.1]")
    assert order.index("bpf[6.12]") < order.index("live[6.12]")


def test_one_lane_runs_one_job_at_a_time_and_errors_reach_the_fixture(no_guest) -> None:  # noqa: ANN001
    running = []
    overlap = []

    def run(kernel: str) -> str:
        running.append(kernel)
        overlap.append(len(running))
        running.remove(kernel)
        if kernel == "6.12":
            raise RuntimeError("guest failed")
        return kernel

    lanes = lanes_mod.GuestLanes([("m", k, run, k) for k in ("6.1", "6.12")], 1)
    try:
        assert lanes.result("m", "6.1") == "6.1"
        with pytest.raises(RuntimeError, match="guest failed"):
            lanes.result("m", "6.12")
    finally:
        lanes.close()
    assert overlap == [1, 1]


def test_lane_count_is_bounded_by_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    import vmtest.scenarios

    monkeypatch.setenv("MDTRACE_VM_LANES", "2")
    monkeypatch.setattr(vmtest.scenarios, "mem_available_gb", lambda: 5.0)
    assert lanes_mod._max_lanes() == 1
    monkeypatch.setattr(vmtest.scenarios, "mem_available_gb", lambda: 20.0)
    assert lanes_mod._max_lanes() == 2
    monkeypatch.setenv("MDTRACE_VM_LANES", "two")
    with pytest.raises(pytest.UsageError, match="MDTRACE_VM_LANES"):
        lanes_mod._max_lanes()
