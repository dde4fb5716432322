"""Events per second per array while md0 resyncs in the guest (issue 12: change-only reporting).

Usage: .venv/bin/python bench/vm_resync_rate.py [--kernel 6.1] [--out out/bench-resync]

One boot (bench/vm_resync_rate_guest.sh): a raid5 initial resync held at 1 MB/s for ~60 s with
direct writes to the array meanwhile, under `mdtrace record`.  The rate is taken over the
resync itself, from md0's first do_sync_enter to its do_sync_exit in the trace, so boot and
compile time do not dilute it.  Prints the figures (also written to figures.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def resync_rate(trace: Path, array: str = "md0") -> dict[str, Any]:
    """md0's events per second during its resync, in all and per kind."""
    from mdtrace.trace import TraceReader

    evs = [ev for ev in TraceReader(trace) if ev.array == array]
    starts = [ev.ts for ev in evs if ev.kind == "do_sync_enter"]
    ends = [ev.ts for ev in evs if ev.kind == "do_sync_exit"]
    if not starts or not ends or ends[-1] <= starts[0]:
        return {"error": f"no do_sync_enter/exit pair of {array} in {trace}"}
    t0, t1 = starts[0], ends[-1]
    inside = [ev for ev in evs if t0 <= ev.ts <= t1]
    secs = (t1 - t0) / 1e9
    kinds: dict[str, int] = {}
    for ev in inside:
        kinds[ev.kind] = kinds.get(ev.kind, 0) + 1
    calls = sum(int(ev.args.get("calls", 1)) for ev in inside
                if ev.kind.startswith("check_recovery"))
    return {"resync_s": round(secs, 1), "events": len(inside),
            "events_per_s": round(len(inside) / secs, 2),
            "check_recovery_calls_per_s": round(calls / secs, 1),
            "per_kind": dict(sorted(kinds.items()))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench-resync")
    a = ap.parse_args()
    from vmtest import image_for, run_script

    out = a.out / a.kernel
    res = run_script(image_for(a.kernel), a.kernel, ROOT / "bench" / "vm_resync_rate_guest.sh",
                     out_dir=out, disks=3, disk_mb=128, timeout_s=1500)
    print(res.output)
    print(f"# {res.summary()}")
    figures: dict[str, Any] = {"kernel": res.uname_r}
    trace = out / "bench" / "resync.jsonl.gz"
    figures.update(resync_rate(trace) if trace.is_file() else {"error": "no trace"})
    print(json.dumps(figures, indent=1))
    (out / "figures.json").write_text(json.dumps(figures, indent=1))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
