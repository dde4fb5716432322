"""fio 4 KiB random write on md raid5 in the guest: untraced vs mdtrace vs a naive bcc probe.

Usage: .venv/bin/python bench/vm_fio.py [--kernel 6.12] [--runtime 20] [--out out/bench-vm]

One boot runs (bench/vm_fio_guest.sh): untraced, traced by `mdtrace record`, traced by a naive
per-bio perf-buffer probe on raid5_make_request (bench/vm_naive_probe.py), untraced again; then a
frozen reshape with IO across the reshape position under `mdtrace record`, to measure how long
after the IO started F7 is raised.  Prints the figures.  Under TCG (no KVM here) the guest CPU
is emulated and shared with other jobs: treat IOPS ratios as rough (compare the two untraced
runs to see the noise).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _iops(p: Path) -> float | None:
    try:
        return float(json.loads(p.read_text())["jobs"][0]["write"]["iops"])
    except (OSError, ValueError, KeyError, IndexError):
        return None


def _f7_latency(bench: Path) -> dict[str, Any]:
    """Seconds from the blocked IO's start to F7, replaying the guest's trace live-style."""
    trace = bench / "f7.jsonl.gz"
    if not trace.is_file():
        return {"f7": "not measured (no mdtrace record in the guest)"}
    from mdtrace.trace import TraceError
    from vmtest.detect import first_detection

    try:
        d = first_detection(trace, "F7")
    except TraceError as exc:
        return {"f7": f"not measured: {exc}"}
    if d is None:
        return {"f7": "NOT raised"}
    lat = d.latency_s
    return {"f7": "raised", "f7_array": d.array, "f7_threshold_s": d.threshold_s,
            "f7_detection_latency_s": None if lat is None else round(lat, 2),
            "f7_target_met": None if lat is None else lat <= d.threshold_s + 2}


def _total_ios(p: Path) -> int | None:
    try:
        return int(json.loads(p.read_text())["jobs"][0]["write"]["total_ios"])
    except (OSError, ValueError, KeyError, IndexError):
        return None


def bpf_cost(before: Path, after: Path, ios: int | None) -> dict[str, Any]:
    """Per program: calls and ns per call during one fio run (kernel.bpf_stats_enabled), and
    the BPF ns per IO of all of them together."""
    try:
        b = {p["id"]: p for p in json.loads(before.read_text())}
        a = json.loads(after.read_text())
    except (OSError, ValueError, TypeError):
        return {"error": "no bpftool snapshots"}
    progs: dict[str, Any] = {}
    total_ns = 0
    for p in a:
        if p.get("type") not in ("kprobe", "perf_event", "tracing"):
            continue
        old = b.get(p["id"], {})
        ns = int(p.get("run_time_ns", 0)) - int(old.get("run_time_ns", 0))
        cnt = int(p.get("run_cnt", 0)) - int(old.get("run_cnt", 0))
        if cnt <= 0:
            continue
        total_ns += ns
        progs[p.get("name", str(p["id"]))] = {"calls": cnt, "ns_per_call": round(ns / cnt, 1)}
    out: dict[str, Any] = {"programs": progs, "bpf_ns_total": total_ns}
    if ios:
        out["ios"] = ios
        out["bpf_ns_per_io"] = round(total_ns / ios, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="6.12")
    ap.add_argument("--runtime", type=int, default=20, help="seconds per fio run")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench-vm")
    a = ap.parse_args()
    from mdtrace.trace import TraceError
    from vmtest import image_for, run_script

    out = a.out / a.kernel
    res = run_script(image_for(a.kernel), a.kernel, ROOT / "bench" / "vm_fio_guest.sh", out_dir=out,
                     disks=4, disk_mb=256, timeout_s=900, env={"RUNTIME": str(a.runtime)})
    print(res.output)
    print(f"# {res.summary()}")
    b = out / "bench"
    iops = {n: _iops(b / f"fio_{n}.json") for n in ("untraced1", "mdtrace", "naive", "untraced2")}
    base = [v for v in (iops["untraced1"], iops["untraced2"]) if v]
    figures: dict[str, Any] = {"kernel": res.uname_r, "runtime_s": a.runtime, "iops": iops}
    if base:
        mean = sum(base) / len(base)
        figures["untraced_mean_iops"] = round(mean, 1)
        figures["untraced_spread"] = round(abs(base[0] - base[-1]) / mean, 3)
        for n in ("mdtrace", "naive"):
            if iops[n]:
                figures[f"ratio_{n}"] = round(iops[n] / mean, 3)
    if (b / "bench_trace.jsonl.gz").is_file():
        from vmtest.golden import event_kinds

        try:
            kinds = event_kinds(b / "bench_trace.jsonl.gz")
            figures["mdtrace_trace_events"] = sum(kinds.values())
            figures["mdtrace_trace_kinds"] = kinds
        except TraceError as exc:
            figures["mdtrace_trace_events"] = f"unreadable: {exc}"
    try:
        figures["naive_probe"] = json.loads((b / "naive.json").read_text())
    except (OSError, ValueError):
        pass
    untraced_ns = 1e9 / figures["untraced_mean_iops"] if base else None
    if untraced_ns:
        figures["untraced_ns_per_io"] = round(untraced_ns, 1)
    for n in ("mdtrace", "naive"):
        cost = bpf_cost(b / f"bpf_{n}_before.json", b / f"bpf_{n}_after.json",
                        _total_ios(b / f"fio_{n}.json"))
        if untraced_ns and "bpf_ns_per_io" in cost:
            cost["bpf_share_of_untraced_io"] = round(cost["bpf_ns_per_io"] / untraced_ns, 5)
        figures[f"bpf_{n}"] = cost
    figures.update(_f7_latency(b))
    print(json.dumps(figures, indent=1))
    (out / "figures.json").write_text(json.dumps(figures, indent=1))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
