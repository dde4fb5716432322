"""Real-kernel tier: every guest scenario on the 6.1 and 6.12 guest kernels, one boot per kernel.

Each scenario runs under `mdtrace record` in the guest; the checks (vmtest/scenarios.py
EXPECT) assert the kernel's observed behaviour and, from the recorded trace, the findings of
`mdtrace report --format json` (run again on the host over the trace the guest recorded, with
this checkout's engine) and the decoded lifecycle events.  Skips (loudly) only when no guest can
run here at all: no qemu, no root/mmdebstrap to build the image, or no disk space.

MDTRACE_VM_RECHECK=1: no boot; check the results a previous run left under $MDTRACE_VM_OUT
(default out/vm) again, e.g. after an engine change (fails when there are none).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest
import zstandard

from vmtest.recipe import KERNELS, tier_kernels

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("MDTRACE_VM_OUT", ROOT / "out" / "vm"))
SCENARIOS = sorted(p.stem for p in (ROOT / "tests/vm/guest/scenarios").glob("*.sh"))


def _skip_loudly(why: str) -> None:
    msg = f"!! vm tier SKIPPED (real-kernel scenarios NOT run): {why}"
    print(msg, file=sys.stderr)
    pytest.skip(msg)


def boot(kernel: str):  # -> ScenarioRun; a guest job (conftest.py: runs in the kernel's lane)
    from vmtest.scenarios import run_scenarios

    rel = KERNELS[kernel]
    run = run_scenarios(rel, OUT / rel, timeout_s=float(os.environ.get("MDTRACE_VM_TIMEOUT",
                                                                       1800)))
    print(f"\nmdtrace vm: {run.run.summary()}", file=sys.stderr)
    for w in run.wedges():
        print(f"NOTE {rel}: guest stopped, the rest rerun in a fresh boot: {w}", file=sys.stderr)
    for name, r in sorted(run.results.items()):
        print(f"  {rel} {name}: rc={r.rc} {r.time_s} s recorded={r.recorded}", file=sys.stderr)
    return run


GUEST_JOB = ("kernel_run", boot)


@pytest.fixture(scope="module", params=tier_kernels())
def kernel_run(request: pytest.FixtureRequest, guest_lanes):  # -> ScenarioRun
    """Boot the guest kernel once and run all scenarios (cached for the module)."""
    from vmtest.scenarios import load_run, tier_problem

    rel = KERNELS[request.param]
    if os.environ.get("MDTRACE_VM_RECHECK") == "1":
        saved = load_run(OUT / rel)
        if saved is None:
            pytest.fail(f"MDTRACE_VM_RECHECK=1 but {OUT / rel} holds no saved run")
        print(f"\nmdtrace vm: re-checking the saved run {saved.run.summary()}", file=sys.stderr)
        return saved
    why = tier_problem(request.param)
    if why:
        _skip_loudly(why)
    return guest_lanes.result(__name__, request.param)


def test_guest_completed(kernel_run) -> None:
    """The last boot finished its driver; earlier ones may have been stopped for a wedge
    (then their scenarios ran again: each scenario's own test checks its result)."""
    run = kernel_run
    assert not run.run.timed_out, f"guest timed out: {run.run.summary()}"
    assert not run.run.wedged, f"guest stopped: {run.run.summary()}"
    assert run.run.rc == 0, f"guest driver failed: {run.run.summary()}\n{run.run.output[-3000:]}"
    assert run.run.uname_r == run.kernel
    assert sorted(run.results) == SCENARIOS


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(kernel_run, name: str) -> None:
    from vmtest.scenarios import check_scenario, kernel_hang_note

    r = kernel_run.results.get(name)
    assert r is not None, f"scenario {name} produced no result dir"
    note = kernel_hang_note(r)
    if note:
        print(f"\n!! {kernel_run.kernel} {name}: {note}", file=sys.stderr)
    problems = check_scenario(r)
    assert not problems, f"{kernel_run.kernel} {name}: " + "; ".join(problems) + \
        f" (logs: {r.dir})"


def test_committed_btf_matches_guest(kernel_run) -> None:
    """tests/data/btf/<release>/ holds exactly what this guest kernel exposes."""
    fresh = kernel_run.run.out_dir / "btf" / kernel_run.kernel
    committed = ROOT / "tests/data/btf" / kernel_run.kernel
    assert fresh.is_dir(), "capture_btf.sh produced nothing"
    # 5.10: no module BTF (CONFIG_DEBUG_INFO_BTF_MODULES came in 5.11): the same modules lack it
    missing = set((committed / "missing_btf").read_text().split()) \
        if (committed / "missing_btf").exists() else set()
    fresh_missing = set((fresh / "missing_btf").read_text().split()) \
        if (fresh / "missing_btf").exists() else set()
    assert fresh_missing == missing
    for mod in ("vmlinux", "md_mod", "raid456", "dm_raid"):
        if mod in missing:
            continue
        blob = (fresh / f"{mod}.btf").read_bytes()
        stored = zstandard.ZstdDecompressor().decompress(
            (committed / f"{mod}.btf.zst").read_bytes(), max_output_size=64 << 20)
        assert hashlib.sha256(blob).digest() == hashlib.sha256(stored).digest(), mod
    assert (fresh / "kallsyms.txt").read_text() == (committed / "kallsyms.txt").read_text()
