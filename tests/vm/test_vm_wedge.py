"""The harness itself against a wedged guest (issue 10): a kernel-failure line on the console,
then a guest driver that never returns.  The host must stop that boot within 3 minutes of the
line and run what did not run in a fresh boot; nothing waits for the 30-minute boot limit."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from vmtest.recipe import KERNELS

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("MDTRACE_VM_OUT", ROOT / "out" / "vm")) / "wedge"


def boot(_kernel: None):  # -> ScenarioRun; a guest job (conftest.py), in the 6.1 lane
    from vmtest.scenarios import run_scenarios

    (OUT / "inject_done").unlink(missing_ok=True)
    return run_scenarios(KERNELS["6.1"], OUT, only=["resync_raid5"], timeout_s=1800, env={
        "MDTRACE_VM_INJECT_WEDGE": "resync_raid5", "MDTRACE_NO_RECORD": "1",
        "CAPTURE_BTF": "0"})


GUEST_JOB = ("", boot)
GUEST_LANE = "6.1"


def test_wedged_guest_is_stopped_and_the_rest_reruns(guest_lanes) -> None:
    from vmtest.runner import FAILURE_GRACE_S
    from vmtest.scenarios import check_scenario, tier_problem

    why = tier_problem("6.1")
    if why:
        msg = f"!! vm wedge test SKIPPED (real guest NOT run): {why}"
        print(msg, file=sys.stderr)
        pytest.skip(msg)
    run = guest_lanes.result(__name__, None)
    for i, b in enumerate(run.boots):
        print(f"\nmdtrace vm wedge test: boot {i + 1}: {b.summary()}", file=sys.stderr)
    first, *rest = run.boots
    assert first.kernel_failure.startswith("kernel BUG at mdtrace/inject.c:1!"), first.summary()
    assert first.wedged.startswith("kernel failure: kernel BUG at mdtrace/inject.c"), \
        first.summary()
    assert first.failure_to_stop_s is not None
    assert FAILURE_GRACE_S <= first.failure_to_stop_s <= 180, first.failure_to_stop_s
    assert len(rest) == 1 and rest[0].ok, [b.summary() for b in rest]
    assert (OUT / "wedged-boot1" / "resync_raid5").is_dir()   # what the cut-off run left
    r = run.results["resync_raid5"]
    assert r.rc == 0 and check_scenario(r) == [], check_scenario(r)
