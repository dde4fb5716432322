"""Run the zoo in the guest: one 6.12 boot per variant (``stock`` = Debian's own modules), the
variant's modules loaded in place of the stock ones (tests/vm/guest/zoo_run.sh), its
reproducers under ``mdtrace record``; results checked on the host against ``EXPECT`` with this
checkout's ``mdtrace report --format json`` of each trace.

Layout: ``<out>/<variant>/`` is the boot's out share (run_scenarios.sh's layout:
``scenarios/<name>/{obs.jsonl,trace.jsonl.gz,report.json,...}``), plus ``zoo_run.json`` (the
boot's figures), ``zoo_loaded.txt`` (what the guest loaded) and ``zoo_modules/`` (the .ko files
the host put there).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdtrace.errors import MdtraceError
from vmtest.scenarios import F, FindingSpec, ScenarioResult, findings, load_results
from vmtest.zoo.build import MODULES, RELEASE, ensure_build
from vmtest.zoo.variants import VARIANTS

GUEST_SCRIPT = Path("tests/vm/guest/zoo_run.sh")
# On a loaded 2-core host a TCG vCPU can stand still for more than RCU's 21 s default while
# bcc compiles: the "rcu_preempt self-detected stall" line that follows makes the host stop the
# boot as a kernel failure (measured: a zoo boot stopped at 335 s, host load 8.6).  The zoo's
# hangs are sleeping tasks, judged by mdtrace, not CPU stalls.
GUEST_APPEND = "rcupdate.rcu_cpu_stall_timeout=300"
Check = Callable[[ScenarioResult], "str | None"]

# the array as lvm names it (mdtrace shows dm-raid arrays under their LV)
LV = "mdtvg/r5"
LV_RX = r"(mdtvg[-/]r5|mdtvg-r5)"


def _obs(key: str, rx: str) -> Check:
    def check(r: ScenarioResult) -> str | None:
        v = r.obs.get(key)
        if v is None or not re.fullmatch(rx, v):
            return f"obs {key} = {v!r}, want /{rx}/"
        return None
    check.__name__ = f"obs {key} ~ {rx}"
    return check


def _finding_fields(code: str, *, array: str = LV_RX, remedy: str = ".+",
                    reason: str = ".+") -> Check:
    """The report holds ``code`` on the LV, with a remedy and an explanation (the reason)."""
    def check(r: ScenarioResult) -> str | None:
        got = r.findings() or []
        hits = [f for f in got if f.get("code") == code]
        if not hits:
            return f"no {code} in the report"
        for f in hits:
            # the finding's array is the engine's name of the LV's mddev, its dm device
            # (dm-N); it names the LV in its text (as diagnose_finds accepts)
            arr, text = str(f.get("array", "")), " ".join(
                str(f.get(k, "")) for k in ("title", "explanation", "remedy"))
            on_lv = re.fullmatch(array, arr) or (re.fullmatch(r"dm-\d+", arr)
                                                 and re.search(array, text))
            if (on_lv and re.search(remedy, str(f.get("remedy", ""))) and
                    re.search(reason, str(f.get("explanation", "")) + str(f.get("title", "")))):
                return None
        return (f"{code} found, but not with array /{array}/, remedy /{remedy}/, reason "
                f"/{reason}/: {[(f.get('array'), f.get('remedy')) for f in hits]}")
    check.__name__ = f"{code} on /{array}/ remedy /{remedy}/"
    return check


def _events(r: ScenarioResult) -> list[dict[str, Any]]:
    if r.replay is None:
        from vmtest.scenarios import _decode_on_host

        r.replay = _decode_on_host(r.trace) or []
    return r.events()


def _lv_events(r: ScenarioResult, kind: str) -> list[dict[str, Any]]:
    return [e for e in _events(r) if e.get("kind") == kind and e.get("dm_name") == "mdtvg-r5"]


def trace_shows_exit_without_done() -> Check:
    """The recorded trace holds the seed's step-3 breakage on the LV itself: its sync thread
    left md_do_sync with RUNNING and WAIT but not DONE on a live (not suspended) array, and
    was never unregistered; the next dm-raid postsuspend entered and never returned (it
    waits in stop_sync_thread for RUNNING to clear)."""
    def check(r: ScenarioResult) -> str | None:
        bad = [e for e in _lv_events(r, "do_sync_exit")
               if {"RUNNING", "WAIT"} <= set((e.get("state") or {}).get("recovery") or [])
               and "DONE" not in ((e.get("state") or {}).get("recovery") or [])
               and not (e.get("state") or {}).get("suspended")]
        if not bad:
            return "no md_do_sync exit with RUNNING|WAIT and without DONE on mdtvg-r5"
        t0 = bad[-1].get("ts", 0)
        unreg = [e for e in _lv_events(r, "thread_unregister")
                 if e.get("ts", 0) > t0 and (e.get("args") or {}).get("sync")]
        if unreg:
            return f"the sync thread was unregistered after the exit: {unreg[0]}"
        hooks = [((e.get("args") or {}).get("phase"), e.get("ts", 0))
                 for e in _lv_events(r, "raid_target")
                 if (e.get("args") or {}).get("hook") == "postsuspend" and e.get("ts", 0) > t0]
        if not hooks or hooks[-1][0] != "enter":
            return f"no postsuspend left waiting after the exit (postsuspend events {hooks})"
        return None
    check.__name__ = "trace: md_do_sync exit without DONE, never reaped, postsuspend stuck"
    return check


def diagnose_finds(codes: tuple[str, ...], array: str = LV_RX) -> Check:
    """`mdtrace diagnose` run in the guest during the hang names one of ``codes`` on the LV
    (its JSON: the guest's diagnose.json, or the golden's <name>.diagnose.json)."""
    def check(r: ScenarioResult) -> str | None:
        cands = [r.dir / "diagnose.json",
                 r.trace.with_name(r.trace.name.removesuffix(".jsonl.gz") + ".diagnose.json")]
        p = next((c for c in cands if c.is_file() and c.stat().st_size), None)
        if p is None:
            return "no diagnose.json"
        try:
            rep = json.loads(p.read_text())
        except ValueError as e:
            return f"{p.name}: not JSON: {e}"
        got = [f for f in rep.get("findings") or [] if isinstance(f, dict)]
        # the finding's array is the LV's dm device (dm-N); it names the LV in its title and
        # remedy (measured: F12 on dm-6, "stopping mdtvg-r5's sync thread hangs")
        for f in got:
            arr, title = str(f.get("array", "")), str(f.get("title", ""))
            on_lv = re.fullmatch(array, arr) or (re.fullmatch(r"dm-\d+", arr)
                                                 and re.search(array, title))
            if (f.get("code") in codes and on_lv and re.search(array, str(f.get("remedy")))
                    and "stop_sync_thread" in str(f.get("details"))):
                return None
        return f"diagnose has {[(f.get('code'), f.get('array')) for f in got]}"
    check.__name__ = f"diagnose finds {codes} on /{array}/ waiting in stop_sync_thread"
    return check


@dataclass(frozen=True)
class ZooExpect:
    checks: tuple[Check, ...]
    required: tuple[FindingSpec, ...] = ()
    allowed: tuple[FindingSpec, ...] = ()


# lvs counts the parity image too: 3 data stripes + 1 = 4
_COMPLETED = (_obs("outcome", "completed"), _obs("stripes", "4"))

# (variant, scenario) -> what must hold.  The stock kernel has every fix: the reproducer
# completes and the report holds no finding at all.
EXPECT: dict[tuple[str, str], ZooExpect] = {
    ("stock", "lvm_reshape_suspend"): ZooExpect(_COMPLETED),
    # 6.12 still stops the sync thread before suspending (16c4770c75b1): no hang, no F1
    ("p1", "lvm_reshape_suspend"): ZooExpect(_COMPLETED),
    # md_do_sync returns on MD_RECOVERY_WAIT (set by rs_start_reshape) without DONE: the sync
    # thread is never reaped, MD_RECOVERY_RUNNING stays set, and lvm2's next suspend waits in
    # raid_postsuspend -> md_stop_writes -> stop_sync_thread for good
    ("p3", "lvm_reshape_suspend"): ZooExpect(
        (_obs("outcome", r"hang:(lvconvert|suspend)"), trace_shows_exit_without_done(),
         diagnose_finds(("F12", "F3")),
         # the seed's patch-3 class from the trace: the exit is the new table's mddev's, the
         # array_stop 12 ms before it the replaced table's (detectors/no_done.py keys stops
         # on the hashed mddev); the remedy warns off `idle` (stop_sync_thread waits for DONE)
         _finding_fields("F3", remedy=r"do not ask the sync thread to stop: "
                         r"`dmsetup message mdtvg-r5 0 idle`",
                         reason=r"without MD_RECOVERY_DONE")),
        required=(F("F3", recovery=r".*'WAIT'.*"),),
        allowed=(F("F12"), F("F15"), F("F9"), F("F7"))),
}


def check_result(variant: str, r: ScenarioResult) -> list[str]:
    """Problems (empty = pass) of one scenario's result against EXPECT."""
    exp = EXPECT.get((variant, r.name))
    if exp is None:
        return [f"no expectation for {variant}/{r.name}"]
    if not r.recorded:
        return [f"{variant}/{r.name}: not recorded (rc {r.rc}, {r.skipped or 'no trace'})"]
    probs = []
    for c in exp.checks + (findings(exp.required, exp.allowed),):
        try:
            p = c(r)
        except MdtraceError as e:
            p = str(e)
        if p:
            probs.append(f"{variant}/{r.name}: {c.__name__}: {p}")
    return probs


@dataclass
class ZooRun:
    variant: str
    out_dir: Path
    figures: dict[str, Any]
    results: dict[str, ScenarioResult] = field(default_factory=dict)

    def problems(self) -> list[str]:
        probs = []
        loaded = (self.out_dir / "zoo_loaded.txt").read_text() if (
            self.out_dir / "zoo_loaded.txt").is_file() else ""
        lines = [ln for ln in loaded.splitlines() if ln.strip()]
        if len(lines) != 3 or not all(f"variant={self.variant} " in ln for ln in lines):
            probs.append(f"{self.variant}: the guest did not prove the variant loaded: "
                         f"{lines or 'no zoo_loaded.txt'}")
        if self.variant != "stock" and not all("taint=OE" in ln or "taint=O" in ln
                                               for ln in lines):
            probs.append(f"{self.variant}: modules not tainted out-of-tree: {lines}")
        for r in self.results.values():
            probs += check_result(self.variant, r)
        if not self.results:
            probs.append(f"{self.variant}: no scenario results (rc {self.figures.get('rc')})")
        return probs


def load_run(out_dir: Path, variant: str) -> ZooRun:
    try:
        figures = json.loads((out_dir / "zoo_run.json").read_text())
    except (OSError, ValueError):
        figures = {}
    return ZooRun(variant, out_dir, figures, load_results(out_dir, RELEASE))


def run_variant(variant: str, out_root: Path, scenarios: tuple[str, ...] = (
        "lvm_reshape_suspend",), *, timeout_s: float = 1500) -> ZooRun:
    """One boot of 6.12 with ``variant`` loaded, running ``scenarios``."""
    from vmtest import image_for, run_script

    if variant != "stock" and variant not in VARIANTS:
        raise MdtraceError(f"unknown zoo variant {variant!r}: stock, {', '.join(VARIANTS)}")
    out = out_root / variant
    shutil.rmtree(out, ignore_errors=True)
    (out / "zoo_modules").mkdir(parents=True)
    build_key = ""
    if variant != "stock":
        b = ensure_build(variant)
        build_key = b.key
        for m in MODULES:
            shutil.copy2(b.path / m, out / "zoo_modules" / m)
    t0 = time.monotonic()
    res = run_script(image_for("6.12"), "6.12", GUEST_SCRIPT, out_dir=out, disks=4,
                     disk_mb=256, timeout_s=timeout_s, env={"ZOO_VARIANT": variant},
                     args=list(scenarios), append=GUEST_APPEND)
    figures = {"variant": variant, "key": build_key, "rc": res.rc, "boot_s": res.boot_s,
               "wall_s": round(time.monotonic() - t0, 1), "wedged": res.wedged,
               "forced_off": res.forced_off, "timed_out": res.timed_out,
               "uname_r": res.uname_r, "scenarios": list(scenarios)}
    (out / "zoo_run.json").write_text(json.dumps(figures, indent=2) + "\n")
    return load_run(out, variant)
