"""``python -m vmtest.zoo list|build|run|check`` (``make vm-zoo-list``, ``make vm-zoo``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mdtrace.errors import MdtraceError
from vmtest.zoo.variants import VARIANTS


def _list(show_diff: bool) -> int:
    from vmtest.zoo.build import find_build, recipe_key

    for v in VARIANTS.values():
        built = find_build(v.name)
        print(f"== {v.name}: seed patch {v.seed_patch}, reverts {v.commit} \"{v.title}\"")
        print(f"   expect {v.expect}; reproduces on 6.12: {v.reproduces_on_612}")
        print(f"   key {recipe_key(v)}: {built.path if built else 'not built'}")
        if show_diff:
            print(v.diff())
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vmtest.zoo")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("list", help="each variant and its diff")
    p.add_argument("--no-diff", action="store_true")
    p = sub.add_parser("build", help="build (or find) variants' modules")
    p.add_argument("names", nargs="*")
    p.add_argument("--rebuild", action="store_true")
    p = sub.add_parser("run", help="boot 6.12 per variant, run its reproducers, check")
    p.add_argument("names", nargs="*", help="stock and/or variants (default: stock p1 p3)")
    p.add_argument("--out", default="out/vm-zoo")
    p = sub.add_parser("check", help="re-check saved runs (no boot)")
    p.add_argument("names", nargs="*")
    p.add_argument("--out", default="out/vm-zoo")
    p = sub.add_parser("golden", help="keep saved runs' traces as tests/data/golden/zoo_*")
    p.add_argument("names", nargs="+")
    p.add_argument("--out", default="out/vm-zoo")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "list":
            return _list(not a.no_diff)
        if a.cmd == "build":
            from vmtest.zoo.build import ensure_build

            for n in a.names or list(VARIANTS):
                b = ensure_build(n, rebuild=a.rebuild)
                print(f"{n}: {b.path} (build {b.manifest.get('build_s')} s)")
            return 0
        from vmtest.zoo.run import load_run, run_variant

        if a.cmd == "golden":
            from vmtest.zoo.golden import keep

            for n in a.names:
                saved = load_run(Path(a.out) / n, n)
                probs = saved.problems()
                if probs:
                    raise MdtraceError(f"{n}: the saved run fails its checks, not a "
                                       f"reference: {probs[0]}")
                for line in keep(n, saved.results):
                    print(line)
            return 0

        rc = 0
        for n in a.names or ["stock", "p1", "p3"]:
            run = (run_variant(n, Path(a.out)) if a.cmd == "run"
                   else load_run(Path(a.out) / n, n))
            probs = run.problems()
            for name, r in sorted(run.results.items()):
                codes = sorted({str(f.get("code")) for f in (r.findings() or [])})
                print(f"{'FAIL' if probs else 'PASS'} {n}/{name}: outcome "
                      f"{r.obs.get('outcome')}, findings {codes}, {r.time_s} s")
            for p_ in probs:
                print(f"  {p_}")
            print(f"   boot: {run.figures}")
            rc = rc or (2 if probs else 0)
        return rc
    except MdtraceError as e:
        print(f"vm-zoo: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
