"""BTF bench: parse + compute_offsets, lazy parser (mdtrace/kernel/btf.py) vs the eager oracle.

For each committed kernel (tests/data/btf: 6.1 and 6.12, vmlinux + md_mod + raid456 + dm_mod +
dm_raid, zstd-compressed, so decompression counts) it runs, in a fresh child process per parser,
BtfSet-style loading and ``compute_offsets`` and prints the best of ``--repeat`` wall times
(split: load / compute) and the child's peak RSS.  ``--host`` adds /sys/kernel/btf (raw blobs,
what ``mdtrace diagnose`` and a live start read).  Target (issue): the lazy path >= 5x faster.

    .venv/bin/python bench/bench_btf.py [--repeat 5] [--host]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATA = REPO / "tests" / "data" / "btf"
KERNELS = {"6.1": DATA / "6.1.0-56-amd64", "6.12": DATA / "6.12.117+deb12-amd64"}


def _child(parser: str, root: str, repeat: int) -> None:
    from mdtrace.kernel.offsets import MODULES, BtfSet, _find_blob, compute_offsets

    if parser == "lazy":
        from mdtrace.kernel.btf import load_blob
    else:
        from tests.test_btf_eager import load_blob  # type: ignore[assignment]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    best = (float("inf"), 0.0, 0.0)
    n_defines = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        vm_path = _find_blob(Path(root), "vmlinux")
        assert vm_path is not None
        vm = load_blob(vm_path)
        mods = {}
        for m in MODULES:
            p = _find_blob(Path(root), m)
            if p is not None:
                mods[m] = load_blob(p, base=vm)
        t1 = time.perf_counter()
        off = compute_offsets(BtfSet(vm, mods, root))
        t2 = time.perf_counter()
        n_defines = len(off.defines)
        if t2 - t0 < best[0]:
            best = (t2 - t0, t1 - t0, t2 - t1)
        del vm, mods, off
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"total": best[0], "load": best[1], "compute": best[2],
                      "rss_mb": rss / 1024, "rss_base_mb": rss0 / 1024, "defines": n_defines}))


def _run(parser: str, root: Path, repeat: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", parser, str(root),
                          "--repeat", str(repeat)], capture_output=True, text=True, check=True,
                         cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--host", action="store_true", help="also /sys/kernel/btf (raw blobs)")
    ap.add_argument("--child", nargs=2, metavar=("PARSER", "ROOT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.repeat)
        return
    roots = dict(KERNELS)
    if args.host and Path("/sys/kernel/btf/md_mod").exists():
        roots["host"] = Path("/sys/kernel/btf")
    print(f"{'kernel':<6} {'parser':<6} {'total s':>8} {'load s':>8} {'offsets s':>9} "
          f"{'peak RSS MB':>11} {'(import MB)':>11}")
    for name, root in roots.items():
        got = {p: _run(p, root, args.repeat) for p in ("eager", "lazy")}
        for p, r in got.items():
            print(f"{name:<6} {p:<6} {r['total']:8.3f} {r['load']:8.3f} {r['compute']:9.4f} "
                  f"{r['rss_mb']:11.1f} {r['rss_base_mb']:11.1f}")
        assert got["eager"]["defines"] == got["lazy"]["defines"]
        print(f"{name:<6} speed-up {got['eager']['total'] / got['lazy']['total']:.1f}x")


if __name__ == "__main__":
    main()
