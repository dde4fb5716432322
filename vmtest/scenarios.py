"""Run the guest scenarios (tests/vm/guest/scenarios/*.sh) in one boot per kernel, and check them.

The guest driver (tests/vm/guest/run_scenarios.sh) leaves, per scenario, ``result.json`` (exit
code, duration), ``obs.jsonl`` (what the scenario observed through sysfs/mdadm/dmsetup: the
kernel's behaviour), ``timeline.txt`` and, when ``mdtrace record`` ran, ``trace.jsonl.gz``,
``report.json`` and ``replay.json``.  :data:`EXPECT` says what each scenario must show, per
kernel where the kernels differ; :func:`check_scenario` turns that into PASS/FAIL lines used by
both ``python -m vmtest scenarios`` and the ``@pytest.mark.vm`` tests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mdtrace.errors import MdtraceError
from vmtest.image import image_for
from vmtest.runner import RunResult, default_src_dir, run_script

GUEST_DIR = Path("tests/vm/guest")


@dataclass
class ScenarioResult:
    """One scenario's outcome in one guest boot."""

    name: str
    kernel: str
    dir: Path
    rc: int | None
    time_s: float | None
    recorded: bool
    record_attempted: bool = False
    skipped: str = ""                                       # why the driver did not run it
    obs: dict[str, str] = field(default_factory=dict)       # last value per key
    obs_t: dict[str, float] = field(default_factory=dict)   # guest uptime of that value
    obs_all: dict[str, list[str]] = field(default_factory=dict)  # every value, in order
    report: Any = None                  # the guest's own `mdtrace report --format json`
    replay: list[dict[str, Any]] | None = None              # `mdtrace replay --json` events
    trace_file: Path | None = None                          # default: dir/trace.jsonl.gz

    @property
    def trace(self) -> Path:
        return self.trace_file or self.dir / "trace.jsonl.gz"

    @cached_property
    def host_report(self) -> Any:
        """`mdtrace report --format json` of the recorded trace, run now with this host's
        mdtrace (None when there is no trace): findings are checked on this, so a re-check
        after an engine change needs no new boot."""
        if not self.trace.is_file():
            return None
        return host_report(self.trace)

    def findings(self) -> list[dict[str, Any]] | None:
        """The findings checked: the host's report of the trace, else the guest's report."""
        rep = self.host_report if self.trace.is_file() else self.report
        if not isinstance(rep, dict) or not isinstance(rep.get("findings"), list):
            return None
        return [f for f in rep["findings"] if isinstance(f, dict)]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        evs = self.replay or []
        return [e for e in evs if kind is None or e.get("kind") == kind]

    def finding_codes(self) -> set[str] | None:
        """Finding codes of the report (None when there is no report)."""
        if self.report is None:
            return None
        return {code for code in _iter_codes(self.report)}


@dataclass
class ScenarioRun:
    kernel: str
    run: RunResult                      # the last boot
    results: dict[str, ScenarioResult]
    boots: list[RunResult] = field(default_factory=list)   # every boot, in order

    def wedges(self) -> list[str]:
        """One line per boot the host had to stop (what wedged it), for NOTE lines."""
        return [f"boot {i + 1}: {b.summary()}" for i, b in enumerate(self.boots) if b.wedged]


def _iter_codes(report: Any) -> list[str]:
    """Finding codes (F1..F10) from a report JSON, tolerant of its exact nesting."""
    out: list[str] = []
    if isinstance(report, dict):
        items = report.get("findings")
        if isinstance(items, list):
            for f in items:
                if isinstance(f, dict):
                    code = f.get("code") or f.get("id") or f.get("kind")
                    if isinstance(code, str):
                        out.append(code)
        for key, val in report.items():
            if key != "findings" and isinstance(val, (dict, list)):
                out += _iter_codes(val)
    elif isinstance(report, list):
        for val in report:
            out += _iter_codes(val)
    return out


def host_report(trace: Path, timeout_s: float = 600) -> dict[str, Any]:
    """Run this host's ``mdtrace report --format json TRACE`` (a subprocess: exactly the
    command line a user runs); raises MdtraceError with its last error line."""
    cmd = [sys.executable, "-c", _MDTRACE_MAIN, "report", "--format", "json", str(trace)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                          cwd=default_src_dir())
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["no error output"])[-1]
        raise MdtraceError(f"mdtrace report {trace}: exit {proc.returncode}: {err}")
    rep = json.loads(proc.stdout)
    if not isinstance(rep, dict) or not isinstance(rep.get("findings"), list):
        raise MdtraceError(f"mdtrace report {trace}: JSON without a findings list")
    return rep


_MDTRACE_MAIN = ("import sys; sys.argv[0] = 'mdtrace'; from mdtrace.cli import main; main()")


def _load_json(p: Path) -> Any:
    try:
        text = p.read_text()
    except OSError:
        return None
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        # JSON Lines (one event per line)
        try:
            return [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        except ValueError:
            return None


def _decode_on_host(trace: Path) -> list[dict[str, Any]] | None:
    """The trace's events as `mdtrace replay --json` would print them (decoded here when the
    guest could not run replay)."""
    from mdtrace.events import describe
    from mdtrace.trace import TraceError, TraceReader

    try:
        return [describe(ev) for ev in TraceReader(trace, skip_bad=True)]
    except TraceError:
        return None


def load_results(out_dir: Path, kernel: str = "") -> dict[str, ScenarioResult]:
    """Parse what the guest driver left under ``out_dir/scenarios/``."""
    results: dict[str, ScenarioResult] = {}
    base = out_dir / "scenarios"
    if not base.is_dir():
        return results
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        res = _load_json(d / "result.json") or {}
        obs: dict[str, str] = {}
        obs_t: dict[str, float] = {}
        obs_all: dict[str, list[str]] = {}
        try:
            for line in (d / "obs.jsonl").read_text().splitlines():
                try:
                    o = json.loads(line)
                except ValueError:
                    continue
                obs[o["k"]] = str(o["v"])
                obs_all.setdefault(o["k"], []).append(str(o["v"]))
                obs_t[o["k"]] = float(o["t"])
        except OSError:
            pass
        replay = _load_json(d / "replay.json")
        if isinstance(replay, dict):
            replay = replay.get("events")
        if not isinstance(replay, list) and (d / "trace.jsonl.gz").is_file():
            replay = _decode_on_host(d / "trace.jsonl.gz")
        results[d.name] = ScenarioResult(
            name=d.name, kernel=str(res.get("kernel", kernel)), dir=d, rc=res.get("rc"),
            time_s=res.get("time_s"), recorded=bool(res.get("recorded")),
            record_attempted=bool(res.get("record_attempted")),
            skipped=str(res.get("skipped", "")), obs=obs,
            obs_t=obs_t, obs_all=obs_all, report=_load_json(d / "report.json"),
            replay=replay if isinstance(replay, list) else None)
    return results


NEED_FREE_GB = 8     # cold build (rootfs tree + root.img) and the run's disks and results
NEED_MEM_GB = 3      # the guest's 2 GiB plus qemu itself


def mem_available_gb() -> float:
    """MemAvailable in GiB (NEED_MEM_GB where /proc/meminfo does not say)."""
    m = re.search(r"MemAvailable:\s+(\d+) kB", _read_text(Path("/proc/meminfo")))
    return int(m.group(1)) / 2**20 if m else float(NEED_MEM_GB)


def tier_problem(kernel: str = "6.12") -> str | None:
    """Why the vm tier cannot run on this machine (no qemu; no image and no way to build it;
    too little disk space or memory), or None.  One line, for the loud skip."""
    from vmtest.image import build_tools_problem, find_image
    from vmtest.recipe import cache_root, default_recipe
    from vmtest.runner import qemu_problem

    why = qemu_problem()
    if why:
        return why
    if find_image(default_recipe(kernel)) is None:
        why = build_tools_problem()
        if why:
            return f"guest image not built and cannot be built here: {why}"
    probe = cache_root()
    while not probe.exists():
        probe = probe.parent
    free_gb = shutil.disk_usage(probe).free / 2**30
    if free_gb < NEED_FREE_GB:
        return f"only {free_gb:.1f} GiB free under {probe}; the guest needs {NEED_FREE_GB} GiB"
    avail_gb = mem_available_gb()
    if avail_gb < NEED_MEM_GB:
        return f"only {avail_gb:.1f} GiB memory available; the guest needs {NEED_MEM_GB} GiB"
    return None


def golden_result(trace: Path) -> ScenarioResult:
    """A committed golden trace (tests/data/golden/<release>/<scenario>.jsonl.gz) as a recorded
    scenario result, for checks that need only the trace (findings, lifecycle events)."""
    exp = _load_json(trace.with_name(trace.name.removesuffix(".jsonl.gz") + ".expected.json"))
    obs = exp.get("observations", {}) if isinstance(exp, dict) else {}
    return ScenarioResult(name=trace.name.removesuffix(".jsonl.gz"), kernel=trace.parent.name,
                          dir=trace.parent, rc=0, time_s=None, recorded=True,
                          record_attempted=True, obs=dict(obs), trace_file=trace,
                          replay=_decode_on_host(trace))


MAX_BOOTS = 3   # per kernel: one kernel failure costs one boot; two more are the bound


def all_scenarios() -> list[str]:
    return sorted(p.stem for p in (default_src_dir() / GUEST_DIR / "scenarios").glob("*.sh"))


def pending(results: dict[str, ScenarioResult], wanted: list[str]) -> list[str]:
    """Scenarios still to run: never started, cut off by the host stopping the guest (no
    result.json: ``rc`` None), or skipped by the guest because an earlier one wedged it."""
    return [n for n in wanted if n not in results or results[n].rc is None
            or results[n].skipped.startswith("guest wedged")]


def run_scenarios(kernel: str, out_dir: Path, *, only: list[str] | None = None,
                  timeout_s: float = 1500, src: Path | None = None,
                  env: dict[str, str] | None = None) -> ScenarioRun:
    """Boot ``kernel`` and run the scenarios (default: all) under mdtrace record.

    A scenario can wedge the guest kernel (an oops that kills raid5d, an array that cannot be
    stopped: the hang classes mdtrace diagnoses).  The guest then ends that scenario and skips
    the rest, or the host stops it (runner.Watch: a kernel failure on the console, a heartbeat
    standing still); what did not run then runs in a fresh boot, at most MAX_BOOTS in all.
    A scenario cut off mid-way keeps what it left under ``wedged-boot<N>/`` and runs again."""
    img = image_for(kernel)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / "scenarios"
    if not only:
        for stale in [base, *out_dir.glob("wedged-boot*")]:
            if stale.is_dir():
                shutil.rmtree(stale)   # results of an earlier run must not pass for this one's
    wanted = list(only) if only else all_scenarios()
    script = default_src_dir() / GUEST_DIR / "run_scenarios.sh"
    boots: list[RunResult] = []
    todo = wanted
    while todo and len(boots) < MAX_BOOTS:
        if boots:
            print(f"mdtrace vm: {kernel}: {boots[-1].summary()}; running {', '.join(todo)} "
                  f"in a fresh boot ({len(boots) + 1} of at most {MAX_BOOTS})", file=sys.stderr)
        # src None: the guest gets a snapshot of this checkout taken at boot (run_script);
        # args: the first boot of a full run passes none (the guest runs all it has)
        run = run_script(img, kernel, script, out_dir=out_dir, src=src, disks=4, disk_mb=256,
                         timeout_s=timeout_s, args=todo if boots or only else [], env=env)
        boots.append(run)
        results = load_results(out_dir, run.kernel)
        todo = pending(results, wanted)
        for name in todo:     # keep what a cut-off scenario left; the guest reruns it afresh
            r = results.get(name)
            if r is not None and r.rc is None:
                keep = out_dir / f"wedged-boot{len(boots)}"
                keep.mkdir(exist_ok=True)
                shutil.move(str(r.dir), str(keep / name))
    results = load_results(out_dir, boots[-1].kernel)
    save_run(boots[-1], only or [], boots)
    return ScenarioRun(boots[-1].kernel, boots[-1], results, boots)


RUN_FILE = "run.json"


def load_run(out_dir: Path) -> ScenarioRun | None:
    """A finished ``run_scenarios`` boot from what it left in ``out_dir`` (None when it left no
    run.json): the results are checked again with this host's mdtrace, without a boot."""
    info = _load_json(out_dir / RUN_FILE)
    if not isinstance(info, dict):
        return None
    rel = str(info.get("kernel", ""))
    run = RunResult(kernel=rel, rc=info.get("rc"), timed_out=bool(info.get("timed_out")),
                    output=_read_text(out_dir / "output.log"), out_dir=out_dir,
                    console_log=out_dir / "console.log", wall_s=float(info.get("wall_s", 0)),
                    boot_s=info.get("boot_s"), uname_r=str(info.get("uname_r", "")),
                    qemu_rc=info.get("qemu_rc"), forced_off=bool(info.get("forced_off")))
    boots = [RunResult(kernel=rel, rc=b.get("rc"), timed_out=bool(b.get("timed_out")),
                       output="", out_dir=out_dir, console_log=out_dir / "console.log",
                       wall_s=float(b.get("wall_s", 0)), boot_s=b.get("boot_s"),
                       wedged=str(b.get("wedged", "")),
                       kernel_failure=str(b.get("kernel_failure", "")),
                       failure_to_stop_s=b.get("failure_to_stop_s"))
             for b in info.get("boots", []) if isinstance(b, dict)]
    return ScenarioRun(rel, run, load_results(out_dir, rel), boots or [run])


def _read_text(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return ""


def save_run(run: RunResult, only: list[str], boots: list[RunResult] | None = None) -> None:
    """Keep the boot's outcome beside its results, so a later re-check needs no boot."""
    info = {"kernel": run.kernel, "rc": run.rc, "timed_out": run.timed_out,
            "wall_s": round(run.wall_s, 1), "boot_s": run.boot_s, "uname_r": run.uname_r,
            "qemu_rc": run.qemu_rc, "forced_off": run.forced_off, "only": only,
            "finished_at": time.time(),
            "src_rev": _read_text(run.out_dir / "src_rev").strip(),
            "boots": [{"rc": b.rc, "timed_out": b.timed_out, "wall_s": round(b.wall_s, 1),
                       "boot_s": b.boot_s, "wedged": b.wedged,
                       "kernel_failure": b.kernel_failure,
                       "failure_to_stop_s": b.failure_to_stop_s} for b in boots or [run]]}
    (run.out_dir / RUN_FILE).write_text(json.dumps(info, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------
# Expectations
# ---------------------------------------------------------------------------------------------

Check = Callable[[ScenarioResult], "str | None"]   # None = ok, else what is wrong


def obs_matches(key: str, pattern: str) -> Check:
    def check(r: ScenarioResult) -> str | None:
        v = r.obs.get(key)
        if v is None:
            return f"observation {key!r} missing"
        if not re.search(pattern, v):
            return f"observation {key}={v!r} does not match /{pattern}/"
        return None
    check.__name__ = f"obs {key} ~ /{pattern}/"
    return check


def obs_history(key: str, *patterns: str) -> Check:
    """Every value of ``key``, in order, matches the corresponding pattern."""
    def check(r: ScenarioResult) -> str | None:
        vals = r.obs_all.get(key, [])
        if len(vals) != len(patterns) or not all(
                re.search(p, v) for p, v in zip(patterns, vals)):
            return f"observations {key}={vals} do not match {list(patterns)}"
        return None
    check.__name__ = f"obs {key} ~ {list(patterns)}"
    return check


@dataclass(frozen=True)
class FindingSpec:
    """One finding a report may hold: its code and, per ``details`` key, a regex the value
    must match in full (e.g. F4 registered by raid5_start_reshape, F7 with reason frozen)."""

    code: str
    details: tuple[tuple[str, str], ...] = ()

    def matches(self, f: dict[str, Any]) -> bool:
        if f.get("code") != self.code:
            return False
        det = f.get("details") or {}
        return all(k in det and re.fullmatch(rx, str(det[k])) for k, rx in self.details)

    def __str__(self) -> str:
        if not self.details:
            return self.code
        return f"{self.code}(" + ", ".join(f"{k}~{rx}" for k, rx in self.details) + ")"


def F(code: str, **details: str) -> FindingSpec:  # noqa: N802 (reads like a finding code)
    """``F("F4", caller="raid5_start_reshape")``: a :class:`FindingSpec`."""
    return FindingSpec(code, tuple(sorted(details.items())))


def _describe(f: dict[str, Any]) -> str:
    det = f.get("details") or {}
    keys = ("caller", "reason", "mode")
    extra = ", ".join(f"{k}={det[k]}" for k in keys if k in det)
    return f"{f.get('code')} on {f.get('array')}" + (f" ({extra})" if extra else "")


def findings(required: tuple[FindingSpec, ...] = (),
             allowed: tuple[FindingSpec, ...] = ()) -> Check:
    """The report of the trace (recomputed by this host's mdtrace) holds a finding matching
    each ``required`` spec, and every finding it holds matches a required or ``allowed`` one:
    anything else, e.g. a new detector firing on a healthy real-kernel trace, fails."""
    def check(r: ScenarioResult) -> str | None:
        if not r.recorded:
            return None
        try:
            got = r.findings()
        except MdtraceError as e:
            return str(e)
        if got is None:
            return "recorded, but no report (guest report.json and host report both missing)"
        missing = [str(sp) for sp in required if not any(sp.matches(f) for f in got)]
        extra = [_describe(f) for f in got
                 if not any(sp.matches(f) for sp in required + allowed)]
        probs = []
        if missing:
            probs.append(f"findings lack {missing}")
        if extra:
            probs.append(f"unexpected findings {extra}")
        if probs:
            return "; ".join(probs) + f" (report has {sorted(_describe(f) for f in got)})"
        return None
    check.__name__ = (f"findings required {[str(x) for x in required]}, "
                      f"allowed {[str(x) for x in allowed]}")
    check.spec = (required, allowed)  # type: ignore[attr-defined]
    return check


def guest_report_ok(r: ScenarioResult) -> str | None:
    """The in-guest `mdtrace report --format json` ran and gave a findings list."""
    if not r.recorded:
        return None
    if not isinstance(r.report, dict) or not isinstance(r.report.get("findings"), list):
        return "recorded, but the guest's report.json has no findings list (see report.err)"
    return None


def events_seen(*kinds: str) -> Check:
    """The trace holds each of these event kinds (only checked when the scenario recorded)."""
    def check(r: ScenarioResult) -> str | None:
        if not r.recorded:
            return None
        if r.replay is None:
            return "recorded, but no replay.json"
        have = {e.get("kind") for e in r.replay}
        missing = [k for k in kinds if k not in have]
        return f"trace lacks events {missing}" if missing else None
    check.__name__ = f"events {list(kinds)}"
    return check


# F7 can be raised only on a re-report of the blocked IO that shows it past the threshold
# (the engine does not extrapolate a wait between reports), so its latency is threshold + the
# gap between two reports + the replay tick (0.25 s).  The recorder re-reports every 0.5 s
# (io_scan at 2 Hz); measured gaps under TCG: 0.15-1.5 s (golden traces, both kernels), and
# F7 latencies 5.0-6.4 s at io_wait_s = 5 over the sessions' runs.  The slack is twice the
# worst measured gap, the tick included: a loaded 2-core CI host stretches the guest's timers.
F7_SLACK_S = 3.0


def detected_within(code: str, slack_s: float = F7_SLACK_S) -> Check:
    """Replaying the trace like the live daemon raises ``code`` within threshold + slack of the
    blocked IO's start (see F7_SLACK_S for where the slack comes from)."""
    def check(r: ScenarioResult) -> str | None:
        if not r.recorded:
            return None
        from vmtest.detect import first_detection

        d = first_detection(r.trace, code)
        if d is None:
            return f"{code} never raised when replaying the trace live-style"
        lat = d.latency_s
        if lat is None:
            return f"{code} raised but the trace has no io_wait start for {d.array}"
        if lat > d.threshold_s + slack_s:
            return f"{code} raised {lat:.1f} s after the IO started (> {d.threshold_s} + {slack_s})"
        return None
    check.__name__ = f"{code} within threshold + {slack_s} s"
    return check


def recovery_flag_seen(flag: str) -> Check:
    """Some traced event's decoded recovery flags include ``flag`` (BTF-based decoding works on
    this kernel: the bit positions differ between 6.1 and 6.12)."""
    def check(r: ScenarioResult) -> str | None:
        if not r.recorded or r.replay is None:
            return None
        for e in r.replay:
            if flag in (e.get("state") or {}).get("recovery", []):
                return None
        return f"no traced event shows recovery flag {flag}"
    check.__name__ = f"recovery flag {flag} seen"
    return check


@dataclass(frozen=True)
class KernelHang:
    """A known way the kernel itself fails a scenario (a bug mdtrace must then diagnose):
    when observation ``obs`` was made, ``checks`` replace the scenario's own, the script's
    non-zero exit is expected, and the result says so (a NOTE line, never silent)."""

    obs: str
    why: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Expect:
    common: tuple[Check, ...] = ()
    # '6.1'/'6.12': measured there; another kernel gets its own key if it has one, else the
    # checks of the measured kernel whose md behaviour it shares (behaviour_kernel)
    per_kernel: dict[str, tuple[Check, ...]] = field(default_factory=dict)
    hang: KernelHang | None = None

    def hung(self, r: ScenarioResult) -> bool:
        return self.hang is not None and self.hang.obs in r.obs

    def checks(self, kernel: str) -> tuple[Check, ...]:
        short = kernel_short(kernel)
        own = self.per_kernel.get(short)
        if own is None:
            own = self.per_kernel.get(behaviour_kernel(short), ())
        return (guest_report_ok,) + self.common + own

    def finding_spec(self, kernel: str) -> tuple[tuple[FindingSpec, ...],
                                                 tuple[FindingSpec, ...]] | None:
        """(required, allowed) findings on ``kernel``; None when no findings check applies."""
        specs = [getattr(c, "spec", None) for c in self.checks(kernel)]
        specs = [sp for sp in specs if sp is not None]
        return specs[0] if len(specs) == 1 else None


def kernel_short(kernel: str) -> str:
    """'6.1.0-56-amd64' -> '6.1', '6.12.117+deb12-amd64' -> '6.12', '6.12' -> '6.12'."""
    return ".".join(kernel.split(".")[:2]).split("-")[0]


def behaviour_kernel(short: str) -> str:
    """The measured kernel ('6.1' or '6.12') whose md behaviour in these scenarios ``short``
    shares.  Every per-kernel difference the scenarios check flips between 6.7 and 6.9:
    raid5's reshape start registers its thread outside the daemon until ad39c08186f8 (6.8,
    F4); dm-raid's raid_message reaps itself until cd32b27a66db (6.9, F6); IO across a
    reshape that cannot move sleeps in raid5_make_request until 41425f96d7aa (6.9), which
    makes md_handle_request retry it and md_end_clone_io leave BLK_STS_RESOURCE (ENOMEM) in
    the original bio (still so in 7.2.13's md.c/raid5.c).  So 5.10 is checked as 6.1 and 7.2
    as 6.12 unless a scenario has a key of its own for them."""
    major, minor = (int(x) for x in short.split(".")[:2])
    return "6.1" if (major, minor) < (6, 9) else "6.12"


def _resync_remedy_if_left_idle(r: ScenarioResult) -> str | None:
    """When the dm messages left the initial sync idle, `dmsetup message ... resync` worked."""
    if "sync_left_idle" not in r.obs:
        return None
    if not r.obs.get("msg_resync", "").startswith("rc=0 "):
        return f"sync left idle and the resync message failed: {r.obs.get('msg_resync')!r}"
    return None


# 5.10 sleeps where 6.1 does, but its x86 get_wchan() walks frame pointers, which Debian's ORC
# kernels do not keep: wchan is 0 and ps prints '-' (measured 2026-12-04; 5.16's "x86: Fix
# get_wchan() to support the ORC unwinder" uses the unwinder).  The stack still names
# raid5_make_request.
WCHAN_510 = "^D -$"
LIFECYCLE = events_seen("check_recovery_enter", "do_sync_enter", "do_sync_exit", "reap")
NO_FINDINGS = findings()

# F4 (sync thread registered outside the md daemon): before ad39c08186f8 (6.8) the raid5
# reshape start (`mdadm --grow`, dm-raid's reshape on table load) registers the "reshape"
# thread itself, so every 6.1 reshape shows it; 6.12 has the fix and must not.
F4_GROW = F("F4", caller="raid5_start_reshape")
# F6 (md_reap_sync_thread without reconfig_mutex): before cd32b27a66db (6.9) dm-raid's
# raid_message reaps the running sync thread for "frozen"/"idle" messages itself.
F6_DM_MESSAGE = F("F6", caller="raid_message")

EXPECT: dict[str, Expect] = {
    "resync_raid5": Expect(common=(
        # mismatch_cnt after an initial resync is not 0 on 6.1 (it counts rewritten parity)
        obs_matches("started", "^resync$"), obs_matches("finished", "^idle$"),
        obs_matches("last_sync_action", "^resync$"), LIFECYCLE, NO_FINDINGS,
    )),
    "recovery_raid1": Expect(common=(
        obs_matches("degraded_after_fail", "^1$"),
        obs_matches("finished", "^idle$"), obs_matches("degraded", "^0$"),
        obs_matches("last_sync_action", "recover"), LIFECYCLE, NO_FINDINGS,
    )),
    "reshape_frozen_io": Expect(hang=KernelHang(
        # seen on 6.1 and 6.12.117 (intermittent): after `echo idle` the resumed reshape stops
        # moving for good (on 6.12 after the failed write, with `frozen`/`idle` then blocking
        # too).  That is F10's case: running, nothing stops it, the position does not move.
        obs="stalled", why="the kernel's resumed reshape stopped moving for good",
        checks=(obs_matches("frozen", "^frozen$"), obs_matches("after_idle", "^reshape$"),
                LIFECYCLE, events_seen("start_reshape", "io_wait"),
                recovery_flag_seen("FROZEN"), recovery_flag_seen("RESHAPE"),
                detected_within("F7"),
                findings(required=(F("F7", reason="frozen"), F("F10")),
                         allowed=(F4_GROW,)))),
        common=(
        obs_matches("frozen", "^frozen$"), obs_matches("after_idle", "^reshape$"),
        obs_matches("finished", "^idle raid_disks=4$"), LIFECYCLE,
        events_seen("start_reshape", "io_wait"), recovery_flag_seen("FROZEN"),
        recovery_flag_seen("RESHAPE"), detected_within("F7"),
    ), per_kernel={
        # both kernels make the write across the frozen reshape position wait; 6.1 sleeps on
        # wait_for_overlap and completes it once the reshape moves; 6.12 spins in the
        # STRIPE_WAIT_RESHAPE retry loop and fails the bio with BLK_STS_RESOURCE (ENOMEM)
        "6.1": (obs_history("io_across", "^blocked after", "^done rc=0 "),
                obs_matches("io_across_state", "^D wait_woken"),
                obs_matches("io_across_stack", "raid5_make_request"),
                findings(required=(F4_GROW, F("F7", reason="frozen", mode="sleep")))),
        "5.10": (obs_history("io_across", "^blocked after", "^done rc=0 "),
                 obs_matches("io_across_state", WCHAN_510),
                 obs_matches("io_across_stack", "raid5_make_request"),
                 findings(required=(F4_GROW, F("F7", reason="frozen", mode="sleep")))),
        "6.12": (obs_history("io_across", "^blocked after", "^done rc=1 "),
                 obs_matches("io_across_state", "^R"),
                 findings(required=(F("F7", reason="frozen", mode="requeue"),))),
    }),
    "readonly_reshape": Expect(common=(
        obs_matches("readonly", "^ok ro=1"), obs_matches("readwrite", "^ok"),
        obs_matches("finished", "^idle raid_disks=4$"), LIFECYCLE, events_seen("io_wait"),
        detected_within("F7"),
    ), per_kernel={
        "6.1": (obs_history("io_across", "^blocked after", "^done rc=0 "),
                obs_matches("io_across_state", "^D wait_woken"),
                findings(required=(F4_GROW, F("F7", reason="read_only", mode="sleep")))),
        "5.10": (obs_history("io_across", "^blocked after", "^done rc=0 "),
                 obs_matches("io_across_state", WCHAN_510),
                 findings(required=(F4_GROW, F("F7", reason="read_only", mode="sleep")))),
        "6.12": (obs_history("io_across", "^blocked after", "^done rc=1 "),
                 obs_matches("io_across_state", "^R"),
                 findings(required=(F("F7", reason="read_only", mode="requeue"),))),
    }),
    "sync_actions": Expect(common=(
        obs_matches("after_frozen", "^frozen"), obs_matches("resync_done", "^idle$"),
        obs_matches("running_check", "^check$"), obs_matches("running_repair", "^repair$"),
        obs_matches("check_done", "^mismatch_cnt=0 "), LIFECYCLE, recovery_flag_seen("FROZEN"),
        recovery_flag_seen("CHECK"), NO_FINDINGS,
    )),
    "lvm_raid5_reshape": Expect(common=(
        obs_matches("msg_frozen", "^rc="), obs_matches("msg_idle", "^rc="),
        obs_matches("synced", "."), obs_matches("lvconvert", "^ok$"),
        obs_matches("suspend", "^ok"), obs_matches("resume", "^ok"),
        obs_matches("stripes", "^4$"),  # lvs counts parity: 3 data + 1
        obs_matches("reshape_done", " AAAA 131072/131072 idle$"),
        obs_matches("io_fio", "^done rc=0"),
        events_seen("dm_suspend_enter", "dm_resume_enter", "raid_target"),
    ), per_kernel={
        # dm-raid suspended mid-reshape: 6.1 still reports the reshape position, 6.12 shows 0.
        # "frozen"/"idle" messages during the initial sync: 6.1 freezes and resumes it; 6.12
        # stops it and answers EINVAL to both, leaving it idle until a "resync" message.
        # (the position is 0 when the suspend lands before the reshape's first step: 1 of
        # about 10 recordings, CI 2026-12-02)
        "6.1": (obs_matches("suspended_status", r"^raid5_ls 4 \w{4} \d+/131072 frozen$"),
                obs_matches("msg_frozen", r"^rc=0 \w{3} \d+/131072 frozen$"),
                obs_matches("msg_idle", r"^rc=0 .* resync$"),
                # F6: the "frozen"/"idle" messages reap the running initial sync themselves;
                # F4 twice: lvconvert's reshape starts through raid5_start_reshape (dm-raid
                # rs_start_reshape), then lvm2 reloads the table mid-reshape and raid5_run
                # registers the "reshape" thread directly (same bug, same fix; ~2.3 s later in
                # 2 of 2 recordings)
                findings(required=(F6_DM_MESSAGE, F4_GROW,
                                   F("F4", caller=r"raid5_run(\.cold)?")))),
        "6.12": (obs_matches("suspended_status", r"^raid5_ls 4 \w{4} 0/131072 frozen$"),
                 # EINVAL every time; whether the sync is left idle varies run to run (1 of 2)
                 obs_matches("msg_frozen", r"^rc=1 \w{3} \d+/131072 (idle|resync)$"),
                 obs_matches("msg_idle", r"^rc=1 "), _resync_remedy_if_left_idle,
                 NO_FINDINGS),
    }),
}


# Fatal kernel reports: the task they happen in is killed (runner.KERNEL_FAILURE has all the
# failure lines the harness reacts to; these are the ones mdtrace must diagnose as F11).
_FATAL = re.compile(r"^(kernel BUG at|BUG: (?!soft lockup)|Oops: |general protection fault"
                    r"|Kernel panic)")
_MD_THREAD = re.compile(r"^(md\d+|mdX)_\w+$")
# dmesg's time stamp ("[  220.195540] "), which the guest driver's failure line keeps
_PRINTK_TIME = re.compile(r"^\[\s*\d+\.\d+\]\s*")


def kernel_failure_checks(r: ScenarioResult) -> tuple[Check, ...] | str:
    """The checks of a scenario during which the guest kernel failed (``kernel_failure``
    observed by the guest driver), or why such a failure cannot pass.

    An oops that killed an md thread is a kernel bug mdtrace must diagnose: the recorded
    trace's report holds F11 for that thread (what else it holds is what the array then
    really shows: F7 for the IO it strands, F10 for the reshape that stops, and the kernel's
    known F4/F6).  Any other kernel failure in a scenario is not a known outcome: it fails."""
    line, task = r.obs.get("kernel_failure", ""), r.obs.get("kernel_failure_task", "")
    # ci 2026-12-02: 6.12.117's raid5d double free in readonly_reshape failed here only
    # because the line came with its time stamp
    line = _PRINTK_TIME.sub("", line)
    if not _FATAL.match(line) or not _MD_THREAD.match(task):
        return f"kernel failure during the scenario: {line!r} (task {task or '?'})"
    if r.record_attempted and not r.recorded:
        return f"kernel failure {line!r} in {task}, but mdtrace record left no trace"
    return (guest_report_ok, findings(
        required=(F("F11", thread=re.escape(task)),),
        allowed=(F("F7"), F("F10"), F("F4"), F6_DM_MESSAGE)))


def check_scenario(r: ScenarioResult) -> list[str]:
    """Problems of one scenario result (empty = it passed)."""
    problems = []
    if r.skipped:
        return [f"not run: {r.skipped}"]
    if r.rc is None:
        return ["cut off: the host stopped the guest during this scenario and it did not run "
                "again (see run.json boots)"]
    if r.rc != 0:
        problems.append(f"scenario script exit code {r.rc} ({r.obs.get('error', 'see log.txt')})")
    if r.record_attempted and not r.recorded:
        problems.append("mdtrace record ran but left no trace (see record.log)")
    exp = EXPECT.get(r.name)
    if exp is None:
        return problems + ["no expectations defined for this scenario"]
    checks = exp.checks(r.kernel)
    if exp.hung(r):
        assert exp.hang is not None
        problems = [p for p in problems if not p.startswith("scenario script exit code")]
        checks = (guest_report_ok, *exp.hang.checks)
    elif "kernel_failure" in r.obs:
        got = kernel_failure_checks(r)
        if isinstance(got, str):
            return [got]
        problems = [p for p in problems if not p.startswith(("scenario script exit code",
                                                             "mdtrace record ran"))]
        checks = got
    for check in checks:
        msg = check(r)
        if msg:
            problems.append(msg)
    return problems


def check_all(run: ScenarioRun) -> list[str]:
    """PASS/FAIL line per scenario, plus a FAIL when the guest itself failed."""
    lines = []
    if run.run.timed_out or run.run.rc != 0:
        lines.append(f"FAIL {run.kernel} guest: {run.run.summary()}")
    for w in run.wedges():
        lines.append(f"NOTE {run.kernel} guest stopped, rest rerun in a fresh boot: {w}")
    for name, r in sorted(run.results.items()):
        probs = check_scenario(r)
        rec = "recorded" if r.recorded else "NOT recorded"
        head = f"{run.kernel} {name} ({r.time_s} s, {rec})"
        lines.append(f"FAIL {head}: " + "; ".join(probs) if probs else f"PASS {head}")
        hang = kernel_hang_note(r)
        if hang:
            lines.append(f"NOTE {run.kernel} {name}: {hang}")
        note = report_drift(r)
        if note:
            lines.append(f"NOTE {run.kernel} {name}: {note}")
    return lines


def kernel_hang_note(r: ScenarioResult) -> str | None:
    """'kernel hang reproduced: ...' / 'kernel bug reproduced: ...' when the scenario met a
    known kernel failure (checked as such by check_scenario)."""
    exp = EXPECT.get(r.name)
    if exp is not None and exp.hung(r):
        assert exp.hang is not None
        return (f"kernel hang reproduced ({exp.hang.why}: "
                f"{exp.hang.obs}={r.obs[exp.hang.obs]!r}); checked that mdtrace diagnoses it "
                "instead")
    if "kernel_failure" in r.obs and not isinstance(kernel_failure_checks(r), str):
        return (f"kernel bug reproduced: {r.obs['kernel_failure']!r} killed "
                f"{r.obs.get('kernel_failure_task')}; checked that mdtrace diagnoses it (F11)")
    return None


def report_drift(r: ScenarioResult) -> str | None:
    """How the guest's report (engine at boot time) differs from this host's report of the
    same trace (engine now), or None: after an engine change this is expected, not a failure."""
    if not r.recorded or not r.trace.is_file():
        return None
    guest = sorted(_describe(f) for f in (r.report or {}).get("findings", [])
                   if isinstance(f, dict)) if isinstance(r.report, dict) else None
    try:
        host = sorted(_describe(f) for f in r.findings() or [])
    except MdtraceError as e:
        return str(e)
    if guest is None or guest == host:
        return None
    return f"guest report findings {guest}, host report now {host} (findings checked: host)"
