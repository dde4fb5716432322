"""TUI responsiveness: replay 100 k events at full speed through Feeder + Engine into the real
TopApp (headless) and print frame times.

A frame is one poll+redraw (snapshot under the feeder lock, table/findings/log update). The
target is no frame over 100 ms; also printed: the worst gap between timer ticks (event-loop lag,
what a user feels as a frozen screen) and the replay rate.

    .venv/bin/python bench/bench_tui.py [--events 100000] [--trace SRC.jsonl.gz]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mdtrace.sources.replay import ReplaySource
from mdtrace.trace import TraceHeader, TraceReader, TraceWriter

ROOT = Path(__file__).resolve().parents[1]


def build_trace(src: Path, n: int, out: Path) -> int:
    """Repeat a real recorded trace (timestamps shifted, array names rotated over 4 arrays)."""
    events = list(TraceReader(str(src)))
    if not events:
        sys.exit(f"bench_tui: {src} has no events")
    span = events[-1].ts - events[0].ts + 1_000_000
    hdr = TraceReader(str(src)).header
    written = 0
    with TraceWriter(out, TraceHeader(kernel=hdr.kernel, source="bench",
                                      flag_tables=hdr.flag_tables)) as w:
        rnd = 0
        while written < n:
            for ev in events:
                if written >= n:
                    break
                name = ev.array
                if name and rnd % 4:
                    name = f"{name}x{rnd % 4}"
                w.write(ev.__class__(**{**{f: getattr(ev, f) for f in ev.__struct_fields__},
                                        "ts": ev.ts + rnd * span, "array": name}))
                written += 1
            rnd += 1
    return written


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def measure(trace: Path, interval: float) -> None:
    from mdtrace.commands.top import _engine
    from mdtrace.frontends.tui.app import TopApp
    from mdtrace.frontends.tui.feed import Feeder

    src = ReplaySource(str(trace))
    feeder = Feeder(src, _engine("replay", str(src.header.kernel)))
    app = TopApp(feeder.poll, interval=interval, is_done=feeder.done.is_set,
                 frame_lock=feeder.frame_lock)
    ticks: list[float] = []
    t0 = time.perf_counter()
    async with app.run_test(size=(160, 50)) as pilot:
        app.set_interval(interval, lambda: ticks.append(time.perf_counter()))
        feeder.start()
        while not feeder.done.is_set():
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        await pilot.pause(3 * interval)
        await pilot.press("q")
    feeder.close()
    if feeder.error is not None:
        sys.exit(f"bench_tui: feeder failed: {feeder.error!r}")
    ft = [x * 1000 for x in app.frame_times]
    print("frame times ms:", " ".join(f"{x:.1f}" for x in ft))
    gaps = [(b - a) * 1000 for a, b in zip(ticks, ticks[1:])]
    snap = app.snapshot
    assert snap is not None
    print(f"events replayed: {snap.health.events_total} in {elapsed:.2f}s "
          f"({snap.health.events_total / elapsed:,.0f} ev/s), arrays shown {len(snap.arrays)}")
    print(f"frames: {len(ft)}  frame time ms: max {max(ft):.1f}  p99 {pct(ft, 99):.1f}  "
          f"median {statistics.median(ft):.1f}")
    if gaps:
        print(f"timer tick gap ms (target {interval * 1000:.0f}): max {max(gaps):.1f}  "
              f"p99 {pct(gaps, 99):.1f}")
    print("target no frame over 100 ms:", "MET" if max(ft) <= 100 else "MISSED")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--trace", type=Path, default=None,
                    help="real trace to repeat (default: a golden lvm_raid5_reshape trace)")
    ap.add_argument("--interval", type=float, default=0.2, help="UI refresh interval (s)")
    a = ap.parse_args()
    src = a.trace or next(iter(sorted(ROOT.glob("tests/data/golden/*/lvm_raid5_reshape.jsonl*"))),
                          None)
    if src is None:
        sys.exit("bench_tui: no source trace; pass --trace FILE")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "bench.jsonl"
        n = build_trace(Path(src), a.events, out)
        print(f"trace: {n} events built from {src}")
        asyncio.run(measure(out, a.interval))


if __name__ == "__main__":
    main()
