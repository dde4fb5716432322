"""Trace integrity figures (issue 13): what a cut trace gives back, and what a hostile line
costs the reader.

    .venv/bin/python bench/bench_trace_integrity.py            # all figures
    .venv/bin/python bench/bench_trace_integrity.py --line-mb 200

1. Cut at 60 %: a recorder-format trace (gzip members, this writer) and a version-1 style
   single-member gzip of the same lines; events recovered vs complete lines in the cut
   (what zlib can decode: the most any reader could give).
2. One overlong line (``--line-mb``, default 200 MB) between two events: time and peak RSS
   of reading past it with skip_bad (the cap keeps memory flat whatever the line length).
Each measurement runs in a child process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _read(path: str) -> None:
    from mdtrace.trace import TraceReader

    t0 = time.perf_counter()
    r = TraceReader(path, skip_bad=True)
    n = sum(1 for _ in r)
    print(json.dumps({"events": n, "bad": r.bad_lines, "abrupt": r.abrupt,
                      "s": round(time.perf_counter() - t0, 3),
                      "rss_mb": _hwm_mb()}))


def _hwm_mb() -> float:
    """Peak RSS of this process image (VmHWM: unlike ru_maxrss, not the forking parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _child(path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def cut_figures(tmp: Path, n: int) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    import bench_report

    v2 = tmp / "v2.jsonl.gz"
    bench_report.generate(v2, n)
    plain = gzip.decompress(v2.read_bytes())
    v1 = tmp / "v1.jsonl.gz"
    v1.write_bytes(gzip.compress(plain))
    for name, path in (("v2 (gzip members)", v2), ("v1 (one member)", v1)):
        raw = path.read_bytes()
        cut = tmp / f"cut-{path.name}"
        cut.write_bytes(raw[: len(raw) * 6 // 10])
        d = zlib.decompressobj(31)
        got, rest = b"", cut.read_bytes()
        while rest:          # every member zlib can get out of the cut bytes
            got += d.decompress(rest)
            rest = d.unused_data if d.eof else b""
            if d.eof:
                d = zlib.decompressobj(31)
        complete = got.count(b"\n") - 1
        fig = _child(cut)
        print(f"cut at 60 % of {len(raw) / 1e6:.1f} MB, {name}: {fig['events']:,} of "
              f"{complete:,} complete lines recovered ({n:,} in the whole trace), "
              f"{fig['s']} s; abrupt: {fig['abrupt']}")


def line_figures(tmp: Path, mb: int) -> None:
    p = tmp / "long.jsonl"
    with open(p, "w") as fh:
        fh.write('{"format": "mdtrace-trace", "version": 1, "kernel": "6.12.1"}\n')
        fh.write('{"t":1,"k":"lost","x":{"count":1}}\n{"t":2,"k":"lost","x":{"p":"')
        block = "y" * (1 << 20)
        for _ in range(mb):
            fh.write(block)
        fh.write('"}}\n{"t":3,"k":"lost","x":{"count":2}}\n')
    fig = _child(p)
    print(f"one {mb} MB line: {fig['events']} events, {fig['bad']} bad line, read in "
          f"{fig['s']} s, peak RSS {fig['rss_mb']} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--line-mb", type=int, default=200)
    args = ap.parse_args()
    if args.child:
        _read(args.child)
        return
    with tempfile.TemporaryDirectory() as d:
        cut_figures(Path(d), args.events)
        line_figures(Path(d), args.line_mb)


if __name__ == "__main__":
    main()
