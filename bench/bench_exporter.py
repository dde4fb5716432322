"""Scrape latency of `mdtrace exporter` under concurrent scrapers.

Starts the real exporter process replaying a real 6.1 recording at 50x in a loop (so the
engine changes during the run, as live), points N scraper threads at it for D seconds, and
prints scrapes/s, errors and latency p50/p99/max.

    .venv/bin/python bench/bench_exporter.py [--clients 50] [--duration 30] [--trace T]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from vmtest.exporter_load import scrape_load

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "tests" / "data" / "golden" / "6.1.0-56-amd64" / "reshape_frozen_io.jsonl.gz"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--trace", type=Path, default=TRACE)
    ap.add_argument("--speed", type=float, default=50.0)
    a = ap.parse_args()
    p = subprocess.Popen([sys.executable, "-m", "mdtrace.cli", "exporter", "--listen",
                          "127.0.0.1:0", "--replay", str(a.trace), "--speed", str(a.speed),
                          "--loop"], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = p.stderr.readline() if p.stderr else ""
        m = re.search(r"serving (\S+/metrics)", line)
        if not m:
            print(f"bench_exporter: exporter did not start: {line.strip()}", file=sys.stderr)
            return 1
        res = scrape_load(m.group(1), clients=a.clients, duration_s=a.duration)
    finally:
        p.terminate()
        p.wait(timeout=10)
    print(f"mdtrace exporter, {a.trace.name} at {a.speed:g}x (loop), loopback")
    print(res.summary())
    for e in sorted(set(res.errors))[:5]:
        print(f"  error: {e}")
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
