"""Engine and exporter at scale: work and memory must grow linearly (issue 13, rows 2 and 3).

Synthetic loads, no kernel needed (the generators are shared with tests/test_scale.py, which
runs them small and asserts linear growth of counted work):

- ``blocked``: N IOs blocked across a frozen reshape, each re-reported every second for
  ``--reports`` rounds (the BPF side's re-report), then completed.  Target: 5,000 in <= 2 s.
- ``pids``: N tasks with unfinished waits (explicit waits and lock contention), time
  passing (ticks).  Target: 40,000 in <= 2 s, the wait table within its cap.
- ``arrays``: N arrays created, used and stopped one after another (live engine, default
  retention).  Target: 100,000 in <= 10 s and <= 200 MB (peak RSS growth).
- ``scrape``: N arrays stopped, then one exporter scrape.  Target: < 1 MB at N = 5,000.
- ``idle``: N idle connections held open to the exporter server (default limits), then a
  normal scrape.  Target: 2,000 idle, the scrape within 1 s, threads bounded.

    .venv/bin/python bench/bench_scale.py [blocked|pids|arrays|scrape|idle|all] [--n N]
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from collections.abc import Iterator

from mdtrace.engine.core import Engine
from mdtrace.events import ArrayState, Event
from mdtrace.kernel.flags import Recovery

S = 1_000_000_000
_RESHAPE_FROZEN = int(Recovery.RUNNING | Recovery.RESHAPE | Recovery.FROZEN)
_RESYNC = int(Recovery.RUNNING | Recovery.SYNC)


def _state(rec: int, *, reshape_pos: int | None = None, sync_thread: bool = True) -> ArrayState:
    return ArrayState(recovery=rec, rec=rec, mdf=0, sync_thread=sync_thread,
                      reshape_pos=reshape_pos, level=5, resync_max=1 << 24)


def blocked_ios(n: int, reports: int = 10, array: str = "md0") -> Iterator[Event]:
    """A frozen reshape on ``array`` with ``n`` writers blocked across its position."""
    st = _state(_RESHAPE_FROZEN, reshape_pos=4096)
    t = 10 * S
    yield Event(ts=t, kind="array_create", array=array, tid=1, comm="mdadm", mddev="p:1",
                state=st, args={"level": "raid5", "kind": "md"})
    yield Event(ts=t + 1, kind="check_recovery_enter", array=array, tid=2, comm="md0_raid5",
                mddev="p:1", state=st)
    for r in range(reports + 1):
        t = 11 * S + r * S
        for i in range(n):
            done = r == reports
            # each IO re-reported at its own phase of the second (ticks fall in between)
            yield Event(ts=t + i * (S // (n + 1)), kind="io_wait", array=array, tid=10_000 + i,
                        comm="dd", mddev="p:1", state=st,
                        args={"io_id": f"p:1/{8192 + 8 * i}", "sector": 8192 + 8 * i,
                              "sectors": 8, "rw": "W", "wait_ns": (r + 1) * S,
                              "mode": "sleep", "done": done})
        yield Event(ts=t + S - 1, kind="check_recovery_exit", array=array, tid=2,
                    comm="md0_raid5", mddev="p:1", state=st)


def pid_waits(n: int, seconds: int = 10) -> Iterator[Event]:
    """``n`` tasks that begin a wait and never end it, over ``seconds`` of trace time."""
    st = _state(_RESYNC)
    yield Event(ts=S, kind="array_create", array="md0", tid=1, comm="mdadm", mddev="p:1",
                state=st, args={"level": "raid5", "kind": "md"})
    step = seconds * S // max(n, 1)
    for i in range(n):
        ts = 2 * S + i * step
        if i % 2:
            yield Event(ts=ts, kind="wait_begin", array="md0", tid=100_000 + i, comm="w",
                        args={"what": "sb_wait", "target": "md0"})
        else:
            yield Event(ts=ts, kind="lock", array="md0", tid=100_000 + i, comm="l",
                        args={"op": "contend", "lock": "reconfig_mutex",
                              "lock_id": f"L{i % 97}", "cls": "reconfig_mutex"})


def array_churn(n: int, every_ns: int = S // 10) -> Iterator[Event]:
    """``n`` arrays, one after another: created, a resync pass seen, stopped."""
    idle = _state(0, sync_thread=False)
    sync = _state(_RESYNC)
    for i in range(n):
        name, md, t = f"md{i}", f"p:{i}", S + i * every_ns
        yield Event(ts=t, kind="array_create", array=name, tid=1, comm="mdadm", mddev=md,
                    state=idle, args={"level": "raid1", "kind": "md"})
        yield Event(ts=t + 1000, kind="check_recovery_enter", array=name, tid=2,
                    comm=f"{name}_raid1", mddev=md, state=sync)
        yield Event(ts=t + 2000, kind="check_recovery_exit", array=name, tid=2,
                    comm=f"{name}_raid1", mddev=md, state=sync)
        yield Event(ts=t + 3000, kind="array_stop", array=name, tid=1, comm="mdadm", mddev=md,
                    state=idle)


def feed_all(engine: Engine, events: Iterator[Event]) -> int:
    n = 0
    for ev in events:
        engine.feed(ev)
        n += 1
    engine.finish()
    return n


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(label: str, engine: Engine, events: Iterator[Event], limit_s: float) -> bool:
    gc.collect()
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    n = feed_all(engine, events)
    dt = time.perf_counter() - t0
    grow = _rss_mb() - rss0
    ok = dt <= limit_s
    print(f"{label}: {n} events in {dt:.2f} s ({n / dt:,.0f} ev/s), peak RSS +{grow:.0f} MB,"
          f" {len(engine.findings)} findings kept  [{'ok' if ok else 'OVER'} <= {limit_s} s]")
    return ok


def bench_blocked(n: int) -> bool:
    return _timed(f"blocked IOs n={n}", Engine(mode="replay"), blocked_ios(n), 2.0)


def bench_pids(n: int) -> bool:
    eng = Engine(mode="replay")
    ok = _timed(f"pids with waits n={n}", eng, pid_waits(n), 2.0)
    g = eng._waits
    print(f"  wait table: {g.count} waits of {len(g.waits)} tasks (cap {g.max_waits}), "
          f"{g.dropped} refused at the cap")
    return ok and g.count <= g.max_waits and len(g.waits) <= g.max_waits


def bench_arrays(n: int) -> bool:
    rss0 = _rss_mb()
    eng = Engine(mode="live")
    ok = _timed(f"arrays created and stopped n={n} (live)", eng, array_churn(n), 10.0)
    grow = _rss_mb() - rss0
    print(f"  arrays kept: {len(eng.snapshot().arrays)}; peak RSS growth {grow:.0f} MB "
          f"[{'ok' if grow <= 200 else 'OVER'} <= 200 MB]")
    return ok and grow <= 200


def bench_scrape(n: int) -> bool:
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from mdtrace.frontends.exporter.collector import SnapshotCollector

    eng = Engine(mode="live")
    feed_all(eng, array_churn(n, every_ns=S // 100))
    reg = CollectorRegistry()
    reg.register(SnapshotCollector(eng.snapshot))
    body = generate_latest(reg)
    lines = body.count(b"\n")
    ok = len(body) < 1 << 20
    print(f"scrape after {n} stopped arrays: {len(body):,} bytes, "
          f"{lines} lines  [{'ok' if ok else 'OVER'} < 1 MB]")
    return ok


def bench_idle(n: int) -> bool:
    import socket
    import threading
    import urllib.request

    from prometheus_client.registry import CollectorRegistry

    from mdtrace.frontends.exporter.collector import SnapshotCollector
    from mdtrace.frontends.exporter.server import ExporterServer, MetricsApp

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * n + 64:      # both ends of every connection live in this process
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * n + 256), hard))
    eng = Engine(mode="live")
    feed_all(eng, array_churn(10))
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(eng.snapshot))
    srv = ExporterServer("127.0.0.1", 0, MetricsApp(reg))
    srv.start()
    threads0 = threading.active_count()
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        time.sleep(0.5)
        t0 = time.perf_counter()
        with urllib.request.urlopen(srv.url, timeout=5) as r:
            code, body = r.status, r.read()
        dt = time.perf_counter() - t0
        threads = threading.active_count()
        ok = code == 200 and b"mdtrace_arrays" in body and dt <= 1.0 and \
            threads - threads0 <= srv.limits.workers
        print(f"idle connections n={n}: scrape {code} in {dt * 1000:.0f} ms, "
              f"{srv.connections} held (cap {srv.limits.max_connections}, "
              f"{srv.evicted} oldest idle closed), threads {threads0} -> {threads} "
              f"[{'ok' if ok else 'OVER'}: <= 1 s, <= {srv.limits.workers} more threads]")
        return ok
    finally:
        for s in socks:
            s.close()
        srv.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", nargs="?", default="all",
                    choices=["blocked", "pids", "arrays", "scrape", "idle", "all"])
    ap.add_argument("--n", type=int, default=0, help="size (default: the issue's target)")
    a = ap.parse_args()
    runs = {"blocked": (bench_blocked, 5000), "pids": (bench_pids, 40_000),
            "arrays": (bench_arrays, 100_000), "scrape": (bench_scrape, 5000),
            "idle": (bench_idle, 2000)}
    ok = True
    for name, (fn, default) in runs.items():
        if a.which in (name, "all"):
            ok = fn(a.n or default) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
