"""24-hour benchmark (issue 12): `mdtrace report` of a generated day of 8 arrays in the
change-only shape (bench/gen_24h.py), with the plain reader, in every format.

    .venv/bin/python bench/bench_24h.py            # 3 runs per format
    .venv/bin/python bench/bench_24h.py --runs 5 --regenerate

Each run is a fresh child process doing what `mdtrace report TRACE --format F` does (read
the trace through the engine and the timeline recorder, render F); it prints wall and CPU
seconds and the child's peak RSS.  Target: <= 3 s and <= 150 MB per format.  The machine's
load is printed with each run: on a shared 2-core VM the wall time follows the load, the CPU
time much less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FORMATS = ("text", "markdown", "html", "json")
TARGET_S = 3.0
TARGET_MB = 150.0


def trace_path() -> Path:
    from bench.gen_24h import GEN_VERSION
    cache = Path(os.environ.get("MDTRACE_BENCH_CACHE", Path(tempfile.gettempdir())
                                / "mdtrace-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    return cache / f"day-24h-v{GEN_VERSION}.jsonl.zst"


def _child(path: str, fmt: str) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    from mdtrace.frontends.report import build_report, render
    model = build_report(path)
    t1 = time.perf_counter()
    out = render(model, fmt)
    t2 = time.perf_counter()
    print(json.dumps({"events": model.events_read, "seconds": t2 - t0, "build_s": t1 - t0,
                      "render_s": t2 - t1, "cpu_s": time.process_time() - c0,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "findings": len(model.findings), "bytes": len(out)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    path = trace_path()
    if args.regenerate or not path.exists():
        from bench.gen_24h import generate
        t0 = time.perf_counter()
        tmp = path.with_name(path.name.replace(".jsonl", ".tmp.jsonl"))
        n = generate(tmp)
        tmp.replace(path)
        print(f"generated {path}: {n:,} events in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    print(f"trace {path.name}: {path.stat().st_size / 1e6:.1f} MB")
    worst: dict[str, float] = {}
    for run in range(args.runs):
        for fmt in FORMATS:
            load = os.getloadavg()[0]
            res = subprocess.run([sys.executable, __file__, "--child", str(path), fmt],
                                 capture_output=True, text=True, check=False)
            if res.returncode != 0:
                sys.exit(f"bench child failed:\n{res.stderr}")
            fig = json.loads(res.stdout.strip().splitlines()[-1])
            ok = fig["seconds"] <= TARGET_S and fig["rss_mb"] <= TARGET_MB
            print(f"run {run + 1} {fmt:8s} events={fig['events']:,} "
                  f"wall={fig['seconds']:.2f}s (build {fig['build_s']:.2f} + render "
                  f"{fig['render_s']:.3f}) cpu={fig['cpu_s']:.2f}s "
                  f"rss={fig['rss_mb']:.0f}MB findings={fig['findings']} "
                  f"load={load:.1f}/{os.cpu_count()} {'ok' if ok else 'OVER TARGET'}")
            worst[fmt] = max(worst.get(fmt, 0.0), fig["seconds"])
    print("slowest wall per format: " + ", ".join(f"{f} {s:.2f}s" for f, s in worst.items()))


if __name__ == "__main__":
    main()
