"""Zoo golden traces: ``tests/data/golden/zoo_<variant>__<scenario>.jsonl.gz`` with
``.expected.json`` beside it (the host report's findings with array, reason and remedy, the
events per kind, the observations, the engine's summary).  Kept by
``python -m vmtest.zoo golden`` from a run's out dir; refused when the trace holds a raw kernel
pointer (vmtest/golden.py raw_pointers).  tests/test_zoo_golden.py replays them against the
same EXPECT as the vm tier.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from mdtrace.errors import MdtraceError
from vmtest.golden import engine_summary, event_kinds, raw_pointers
from vmtest.scenarios import ScenarioResult
from vmtest.zoo.build import RELEASE

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "data" / "golden"
SEP = "__"


def golden_name(variant: str, scenario: str) -> str:
    return f"zoo_{variant}{SEP}{scenario}"


def golden_traces(root: Path = GOLDEN) -> list[Path]:
    return sorted(root.glob(f"zoo_*{SEP}*.jsonl.gz"))


def parse_name(trace: Path) -> tuple[str, str]:
    stem = trace.name.removesuffix(".jsonl.gz").removeprefix("zoo_")
    variant, _, scenario = stem.partition(SEP)
    return variant, scenario


def expected_of(trace: Path) -> dict[str, Any]:
    p = trace.with_name(trace.name.removesuffix(".jsonl.gz") + ".expected.json")
    return json.loads(p.read_text())


def as_result(trace: Path) -> ScenarioResult:
    """A golden trace as the ScenarioResult the vm tier checks (host report recomputed)."""
    exp = expected_of(trace)
    _variant, scenario = parse_name(trace)
    return ScenarioResult(name=scenario, kernel=RELEASE, dir=trace.parent, rc=exp.get("rc"),
                          time_s=exp.get("time_s"), recorded=True, record_attempted=True,
                          obs=dict(exp.get("observations") or {}), trace_file=trace)


def keep(variant: str, results: dict[str, ScenarioResult], dest: Path = GOLDEN,
         max_bytes: int = 600_000) -> list[str]:
    done = []
    for name, r in sorted(results.items()):
        if not r.recorded or not r.trace.is_file():
            done.append(f"skip {variant}/{name}: not recorded")
            continue
        bad = raw_pointers(r.trace)
        if bad:
            raise MdtraceError(f"{r.trace}: raw kernel pointer values {bad[:3]}: refusing it")
        size = r.trace.stat().st_size
        if size > max_bytes:
            done.append(f"skip {variant}/{name}: trace is {size} bytes (> {max_bytes})")
            continue
        out = dest / f"{golden_name(variant, name)}.jsonl.gz"
        shutil.copyfile(r.trace, out)
        found = [{k: f.get(k) for k in ("code", "array", "title", "remedy", "details")}
                 for f in (r.findings() or [])]
        expected = {"variant": variant, "scenario": name, "kernel": r.kernel, "rc": r.rc,
                    "time_s": r.time_s, "host_report_findings": found,
                    "event_kinds": event_kinds(out), "observations": r.obs,
                    "engine": engine_summary(out)}
        diag = r.dir / "diagnose.json"
        if diag.is_file() and diag.stat().st_size:
            shutil.copyfile(diag, out.with_name(out.name.removesuffix(".jsonl.gz")
                                                + ".diagnose.json"))
        out.with_name(out.name.removesuffix(".jsonl.gz") + ".expected.json").write_text(
            json.dumps(expected, indent=1, sort_keys=True) + "\n")
        done.append(f"kept {out.name} ({size} bytes, findings "
                    f"{sorted({str(f['code']) for f in found})})")
    return done


def stock_codes(root: Path = GOLDEN) -> set[str] | None:
    """Finding codes of the committed stock zoo goldens (None when there is none)."""
    codes: set[str] | None = None
    for t in golden_traces(root):
        if parse_name(t)[0] == "stock":
            codes = (codes or set()) | {str(f["code"]) for f in
                                        expected_of(t)["host_report_findings"]}
    return codes
