"""The live front ends on the 6.1 and 6.12 guest kernels (issue 17), from the built wheel.

tests/vm/guest/live_fronts.sh attaches `mdtrace run`, `mdtrace exporter` (scraped every second)
and `mdtrace top` (tmux) before a raid5 reshape is frozen and a write crosses its position;
checked here: each shows F7 live (run's latency from the IO's start measured), it ends after
`echo idle` (or, where the 6.12.117 raid5d double free strikes on the unfreeze, F11 is shown
instead: a known kernel bug, checked; the script's 4 KiB writes keep clear of it), promtool
accepts a live scrape, each front end stops on its signal/key with nothing of ours left in
the kernel, a SIGKILLed recorder's leftovers are removed by its watcher, and a forced
ring-buffer loss is shown everywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vmtest.recipe import KERNELS, tier_kernels
from vmtest.scenarios import F7_SLACK_S, behaviour_kernel, kernel_short

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("MDTRACE_VM_OUT", ROOT / "out" / "vm")) / "live"
SCRIPT = ROOT / "tests/vm/guest/live_fronts.sh"
THRESHOLD_S = 5.0
# issue 11's target: a late-started run answers within 10 s under TCG (the figure is printed);
# asserted with the margin measured on a loaded 2-core host (12.7 s with other jobs running)
LATE_TARGET_S = 10.0
LATE_LIMIT_S = 30.0
MDTRACE = str(Path(sys.executable).parent / "mdtrace")
LIVE_BOOTS = 2          # a boot the kernel itself crashed is run again once
ZERO = "kprobe_events=0 kprobes_list=0 progs=0 links=0"


def boot(kernel: str):  # -> RunResult | None (None: the kernel failed in every boot)
    """A guest job (conftest.py: runs in the kernel's lane)."""
    from failed_boot import keep_failed_boot
    from vm_wheel import wheel_into

    from vmtest import image_for, run_script

    rel = KERNELS[kernel]
    out = OUT / rel
    wheel_into(out / "wheel")
    d = out / "live"
    for boot in range(1, LIVE_BOOTS + 1):
        # expect_hung_tasks: the late-start part holds dd across a frozen reshape until the
        # late recorder has attached (174.8 s after the hang under TCG in ci15): hung_task
        # reports it at 120 s by design; that is the hang under test, not a kernel failure
        # timeout: 6.1/6.12 take 983-1409 s (CI); the 7.2 guest beside another passed 1640 s
        # before its late part (two more compiles): 3600 s
        res = run_script(image_for(kernel), kernel, str(SCRIPT), disks=12, disk_mb=256,
                         timeout_s=3600, out_dir=str(out), expect_hung_tasks=True)
        print(f"\nmdtrace vm live: {res.summary()}", file=sys.stderr)
        if res.rc == 0 and not res.wedged or not res.kernel_failure:
            return res
        # the kernel itself failed before the script could finish (6.12.117's raid5d double
        # free can strike while the write waits across the frozen reshape, then panic): a
        # known kernel bug (docs/kernels.md), not mdtrace's; what that boot saw is kept
        kept = out / f"live-kernel-failure-boot{boot}"
        keep_failed_boot(out, d, kept)
        print(f"NOTE {rel}: kernel failure in live boot {boot} ({res.kernel_failure}); kept in "
              f"{kept}", file=sys.stderr)
    return None


GUEST_JOB = ("live", boot)


@pytest.fixture(scope="module", params=tier_kernels())
def live(request: pytest.FixtureRequest, guest_lanes):  # -> (release, obs dict, result dir)
    from vmtest.scenarios import tier_problem

    why = tier_problem(request.param)
    if why:
        msg = f"!! live vm tests SKIPPED (real kernel NOT exercised): {why}"
        print(msg, file=sys.stderr)
        pytest.skip(msg)
    rel = KERNELS[request.param]
    d = OUT / rel / "live"
    res = guest_lanes.result(__name__, request.param)
    if res is None:
        msg = (f"!! live vm tests on {rel} SKIPPED: the kernel failed in all {LIVE_BOOTS} boots "
               f"(a known {rel} bug, docs/kernels.md): live front ends NOT checked on this "
               "kernel")
        print(msg, file=sys.stderr)
        pytest.skip(msg)
    obs: dict[str, str] = {}
    for line in (d / "obs.txt").read_text().splitlines() if (d / "obs.txt").exists() else []:
        k, _, v = line.partition(" ")
        obs.setdefault(k, v)
    for k in ("attached_after_s", "f7_run_latency_s", "f7_run_latency_from_block_s",
              "f7_run_latency_from_refusal_s", "bytecode_compiled_s",
              "late_f7_after_s", "late_attached_after_s", "sigkill_clean_after_s",
              "leftovers_after_sigkill", "burst", "kernel_oops"):
        if k in obs:
            print(f"  {rel} {k}: {obs[k]}", file=sys.stderr)
    assert res.rc == 0 and not res.wedged, res.summary() + "\n" + res.output[-3000:]
    assert "error" not in obs, obs["error"]
    return rel, obs, d


def test_runs_from_the_installed_wheel(live) -> None:
    _rel, obs, _d = live
    assert obs["installed_from"].startswith("/opt/mdtrace-wheel/mdtrace/"), obs


def test_run_prints_f7_live_within_the_margin(live) -> None:
    rel, obs, d = live
    lat = obs.get("f7_run_latency_s", "none")
    assert lat != "none", (d / "run.out").read_text()[-2000:]
    # issue 17 measures from the IO's own start: the request that blocks (when dd's written
    # bytes last grew before standing still for 1 s), not dd's start, whose first MiBs land
    # behind the reshape position and complete (their time depends on the host's load: 10.2 s
    # from dd's start, 6.7 s from the block, in ci15 with another guest beside it; with 4 KiB
    # writes 25 s from dd's start).  Same derivation as the recorded-trace check
    # (scenarios.F7_SLACK_S); the target threshold + 1 s is printed, the note compares.
    # 6.9+ also logs its first refusal: that figure is printed beside (not yet measured on
    # enough boots to bound: the 7.2 guest's first refusal came 4.6 s before dd's last write
    # stood still by /proc/uptime, 2026-12-04, so the clocks are compared on printk's)
    own = obs.get("f7_run_latency_from_block_s")
    print(f"\n  {rel} run F7 {own} s after the write blocked (from the kernel's first "
          f"refusal: {obs.get('f7_run_latency_from_refusal_s')}, from dd's last write: "
          f"{obs.get('f7_run_latency_from_block_s')}); CPUs then:\n"
          f"{_text(d / 'cpu_blocked.txt')}", file=sys.stderr)
    assert own is not None and float(own) <= THRESHOLD_S + F7_SLACK_S, (rel, own)
    assert float(own) <= float(lat) + 0.1, (rel, own, lat)
    line = next(ln for ln in (d / "run.out").read_text().splitlines() if " F7 md0 " in ln)
    if "kernel_oops" in obs and "(md_thread_dead)" in line:
        # 6.12.117's double free killed raid5d while the write waited: nothing but a reboot
        # moves it now, and F7 says so (engine/iowait.py blocked_reason)
        assert "remedy: reboot" in line, line
    else:
        assert "remedy:" in line and "sync_action" in line, line


def test_f7_ends_after_the_remedy_or_the_oops_is_diagnosed(live) -> None:
    rel, obs, d = live
    if "kernel_oops" in obs:   # 6.12.117 raid5d double free on the unfreeze (docs/kernels.md)
        print(f"\nNOTE {rel}: kernel bug reproduced live: {obs['kernel_oops']}; checking F11",
              file=sys.stderr)
        assert obs.get("f11_run") == "yes", (d / "run.out").read_text()[-2000:]
        assert obs.get("f11_scraped") == "yes"
        return
    assert obs.get("f7_run_cleared") == "yes", (d / "run.out").read_text()[-2000:]
    assert obs.get("f7_scrape_zero") == "yes", (d / "scrapes.txt").read_text()[-600:]


def test_exporter_live_scrape(live) -> None:
    _rel, obs, d = live
    assert obs.get("f7_scraped") == "yes", (d / "scrapes.txt").read_text()[-600:]
    body = (d / "scrape_f7.txt").read_text()
    f7 = [ln for ln in body.splitlines() if ln.startswith("mdtrace_finding_active{")
          and 'code="F7"' in ln and 'array="md0"' in ln]
    assert f7 and f7[0].endswith(" 1.0"), body[:800]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed on the host (scripts/install-system-deps.sh)")
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_top_shows_f7_and_quits_cleanly(live) -> None:
    _rel, obs, d = live
    assert obs.get("f7_top") == "yes", (d / "top_f7.txt").read_text()
    screen = (d / "top_f7.txt").read_text()
    assert "md0" in screen and "F7" in screen, screen
    assert obs.get("top_q") == "rc=0", obs
    assert obs.get("top_alternate_after") == "0", obs


def test_nothing_left_in_the_kernel_after_clean_stops(live) -> None:
    """Ours only: programs and links present before mdtrace ran (sid's systemd has one) are a
    baseline the guest script leaves out of every count (bpf_before.txt lists them)."""
    rel, obs, _d = live
    print(f"\n  {rel} BPF before mdtrace: {obs.get('bpf_baseline')}", file=sys.stderr)
    assert obs["leftovers_before"] == ZERO, obs
    assert obs["run_sigint"].startswith("rc=0 "), obs
    assert obs["exporter_sigterm"].startswith("rc=0 "), obs
    assert obs["leftovers_after_stop"] == ZERO, obs


def test_lvm_raid_lv_is_one_array_without_its_sub_lvs(live) -> None:
    """Issue 17: with run/exporter/top attached, an lvm raid5 LV is reshaped and suspended:
    the exporter has series for the LV only (none for `_rimage_N`/`_rmeta_N`), top shows it."""
    rel, obs, d = live
    if obs.get("lvm", "").startswith("skipped"):
        pytest.skip(f"{rel}: lvm {obs['lvm']}")
    assert obs.get("lvm_lvconvert") == "ok" and obs.get("lvm_suspend_resume") == "ok", obs
    assert obs.get("lvm_done", "").endswith("idle"), obs
    disk = obs["lvm_disk"]
    body = (d / "lvm_scrape.txt").read_text()
    arrays = set(re.findall(r'array="([^"]+)"', body))
    assert disk in arrays, (disk, sorted(arrays))
    assert not any("rimage" in ln or "rmeta" in ln for ln in body.splitlines()), \
        [ln for ln in body.splitlines() if "rimage" in ln or "rmeta" in ln][:5]
    dm_arrays = {a for a in arrays if a.startswith("dm-")}
    assert dm_arrays == {disk}, sorted(arrays)
    screen = (d / "top_lvm.txt").read_text()
    assert "lvv-r5" in screen and "rimage" not in screen, screen


def _late(live):  # -> (release, obs, dir), skipping where the early part oopsed the kernel
    rel, obs, d = live
    if obs.get("late", "").startswith("skipped"):
        pytest.skip(f"{rel}: late start {obs['late']}")
    return rel, obs, d


def test_late_start_shows_the_existing_hang_at_once(live) -> None:
    """Issue 11: the hang is created first; `run` started afterwards prints F7 from its
    start-up snapshot before the probes compile, the exporter's first scrape has it, and it
    ends after the remedy.  6.1: the write sleeps in raid5_make_request (D); 6.9+ busy-retries
    it (R): the snapshot counts the running writer as that IO while the kernel log's refusals
    go on (sources/snapshot requeue_series; measured 2026-12-03: F7 13.1 s after run started,
    probes attached 240 s after)."""
    rel, obs, d = _late(live)
    after = obs.get("late_f7_after_s", "none")
    print(f"\n  {rel} late start: F7 after {after} s (probes attached after "
          f"{obs.get('late_attached_after_s')} s)", file=sys.stderr)
    assert after != "none", (d / "late_run.out").read_text()[-1500:] + \
        (d / "late_run.err").read_text()[-1500:]
    print(f"  {rel} late-start target {LATE_TARGET_S} s: "
          f"{'met' if float(after) <= LATE_TARGET_S else 'NOT met'}", file=sys.stderr)
    assert float(after) <= LATE_LIMIT_S, (after, obs.get("late_snapshot_line"))
    assert re.search(r"start-up snapshot: [1-9]\d* findings", obs.get("late_snapshot_line", "")), \
        obs
    first = d / "late_scrape_first.txt"
    assert obs.get("late_first_scrape_f7") == "yes", first.read_text()[:1500]
    done = obs.get("late_io_done")
    dd_err = (d / "late_dd.err").read_text() if (d / "late_dd.err").exists() else ""
    retries = behaviour_kernel(kernel_short(rel)) == "6.12"   # 6.9+: 41425f96d7aa
    if retries and done == "rc=1" and "Cannot allocate memory" in dd_err:
        # 6.9+ fails the busy-retried write with ENOMEM once it can proceed (6.12.117 in
        # session 7's CI, 7.2.13 in session 12; docs/kernels.md: md_end_clone_io leaves the
        # first refusal's BLK_STS_RESOURCE in the bio): the kernel's answer, not a missed hang
        print(f"  NOTE {rel}: the retried write failed in the kernel: {dd_err.strip()!r}",
              file=sys.stderr)
    else:
        assert done == "rc=0", obs
    assert obs.get("late_f7_cleared") == "yes", (d / "late_run.out").read_text()[-1500:]


def test_sigkill_leaves_nothing_in_the_kernel(live) -> None:
    """SIGKILLed `run` and `exporter`: their kretprobe tracefs events are removed by their
    watchers (mdtrace/kernel/reaper.py)."""
    _rel, obs, _d = _late(live)
    m = re.match(r"kprobe_events=(\d+) ", obs.get("leftovers_while_recording", ""))
    assert m and int(m.group(1)) > 0, obs       # what there is to clean up (maxactive events)
    assert obs["leftovers_after_sigkill"] == ZERO, obs
    print(f"\n  {_rel} SIGKILL: clean after {obs.get('sigkill_clean_after_s')} s",
          file=sys.stderr)
    assert obs["leftovers_after_next"] == ZERO, obs


def test_forced_ring_loss_is_shown_everywhere(live) -> None:
    """A 1-page ring stopped 4 s during a resync loses events: the record line, every report
    format, the TUI banner and the metrics say how many."""
    import json

    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from mdtrace.engine.core import Engine
    from mdtrace.frontends.exporter.collector import SnapshotCollector
    from mdtrace.frontends.tui.render import degraded_notes
    from mdtrace.trace import TraceReader

    rel, obs, d = live
    burst = obs.get("burst", "")
    if burst.startswith("skipped"):
        pytest.skip(f"{rel}: {burst}")
    m = re.match(r"rc=0 stopped: .*, (\d+) lost", burst)
    assert m and int(m.group(1)) > 0, burst
    lost = int(m.group(1))
    trace = d / "burst.jsonl.gz"
    for fmt in ("text", "markdown", "html"):
        r = subprocess.run([MDTRACE, "report", "--format", fmt, str(trace)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode in (0, 1), r.stderr
        assert f"{lost} events lost" in r.stdout, (fmt, r.stdout[:1500])
    r = subprocess.run([MDTRACE, "report", "--format", "json", str(trace)],
                       capture_output=True, text=True, timeout=300)
    assert json.loads(r.stdout)["health"]["lost"] == lost, r.stdout[:800]
    reader = TraceReader(trace)
    eng = Engine(kernel=reader.header.kernel)
    for ev in reader:
        eng.feed(ev)
    snap = eng.snapshot()
    assert any(f"{lost} events lost" in n for n in degraded_notes(snap.health))
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(lambda: snap))
    body = generate_latest(reg).decode()
    total = sum(float(ln.split()[-1]) for ln in body.splitlines()
                if ln.startswith("mdtrace_events_lost_total{"))
    assert total == lost, body[:1500]


def _text(p: Path) -> str:
    return p.read_text() if p.exists() else f"({p.name} missing)"


def test_diagnose_explains_the_hang_then_is_clean(live) -> None:
    """`mdtrace diagnose` started while the write is stuck across the frozen reshape (issue 11,
    first stage: no BPF): F7 for md0 naming dd; after `echo idle` clean.  6.1: the write
    sleeps in raid5_make_request (D); 6.12 busy-retries it (R, its stack wherever the loop
    was caught, the kernel log's refusals tell); F11 is required when the raid5d oops struck."""
    import json

    rel, obs, d = live
    rc_hung = obs.get("diagnose_hung", "")
    print(f"\n  {rel} diagnose cost during the hang: {obs.get('diagnose_hung_cost')}; after: "
          f"{obs.get('diagnose_after_cost')}", file=sys.stderr)
    print(f"  {rel} diagnose during the hang: {rc_hung}; after: {obs.get('diagnose_after')}",
          file=sys.stderr)
    for name in ("diagnose_hung", "diagnose_after"):   # MDTRACE_TIMINGS=1: per-stage seconds
        stages = [ln for ln in _text(d / f"{name}.err").splitlines() if "timings (s)" in ln]
        print(f"  {rel} {name}: {stages[-1] if stages else 'no timings line'}", file=sys.stderr)
    hung = json.loads((d / "diagnose_hung.json").read_text())
    codes = sorted((f["code"], f["array"]) for f in hung["findings"])
    print(f"  {rel} diagnose findings during the hang: {codes}", file=sys.stderr)
    assert rc_hung.startswith(("rc=0 ", "rc=1 ")), (d / "diagnose_hung.err").read_text()
    assert obs.get("diagnose_after", "").startswith(("rc=0", "rc=1")), (
        f"the diagnose after the remedy did not finish: {obs.get('diagnose_after')} "
        f"(124: over its 400 s bound); {(d / 'diagnose_after.err').read_text()[-1500:]}"
        f"\nCPUs when it started:\n{_text(d / 'cpu_after.txt')}")
    after = json.loads((d / "diagnose_after.json").read_text())
    after_codes = sorted((f["code"], f["array"]) for f in after["findings"] if f.get("active",
                                                                                    True))
    if "kernel_oops" in obs:
        assert ("F11", "md0") in after_codes, after_codes
        return
    assert ("F7", "md0") in codes, (d / "diagnose_hung.json").read_text()[-3000:]
    f7 = next(f for f in hung["findings"] if f["code"] == "F7")
    assert "dd" in f7["explanation"], f7
    assert obs.get("diagnose_after") == "rc=0", after_codes
