"""Report benchmark: `mdtrace report` over a generated, realistic N-event trace.

Prints events/s and peak RSS of the report path (reader + engine + report build + render),
run in a child process so that generating the trace does not count.  Targets (issue 2):
>= 1 M events/s and <= 200 MB peak RSS over 10 M events.

    .venv/bin/python bench/bench_report.py                  # 10 M events
    .venv/bin/python bench/bench_report.py --events 1000000 # quick iteration
    .venv/bin/python bench/bench_report.py --profile        # cProfile top entries (child)
    .venv/bin/python bench/bench_report.py --stage read     # reader only / engine / full

The generated trace mimics the real recordings in tests/data/golden: md_check_recovery
entry/exit pairs dominate (~90 %), plus resync/recovery/reshape cycles (register, do_sync,
progress, DONE, reap), periodic io_stats, reconfig_mutex lock traffic, a dm-raid LV with
suspend/resume and raid_target hooks, and a frozen reshape with IO blocked across the reshape
position (so the report has F7 findings to render).  It is cached under the temp directory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

from mdtrace.events import ArrayState, Event  # noqa: E402
from mdtrace.kernel.flags import RECOVERY_6_11, FlagTable  # noqa: E402
from mdtrace.trace import TraceHeader, TraceWriter  # noqa: E402

GEN_VERSION = 2
KERNEL = "6.12.117+deb12-amd64"


def _raw(*names: str) -> int:
    out = 0
    for n in names:
        out |= 1 << RECOVERY_6_11[n]
    return out


class _Array:
    """One simulated array: cycles idle -> needed -> running/syncing -> done -> reaped."""

    def __init__(self, name: str, level: int, action: str, dm_name: str = "",
                 size: int = 8 << 20) -> None:
        self.name, self.level, self.action, self.dm_name = name, level, action, dm_name
        self.size = size
        self.mddev = f"p:{zlib.crc32(name.encode()):012x}"
        self.phase = "idle"
        self.done = 0
        self.frozen = False
        self.suspended = 0
        self.reshape_pos: int | None = 0 if action == "reshape" else None
        self.daemon_tid = 1000 + level * 10 + len(name)
        self.sync_tid = self.daemon_tid + 1
        self.flags = 0

    def state(self) -> ArrayState:
        act = {"resync": ("SYNC",), "recover": ("SYNC", "RECOVER"),
               "reshape": ("SYNC", "RESHAPE"), "check": ("SYNC", "CHECK", "REQUESTED")}
        names: list[str] = []
        if self.phase == "needed":
            names = ["NEEDED"]
        elif self.phase in ("running", "syncing"):
            names = ["RUNNING", *act[self.action]]
        elif self.phase == "done":
            names = ["RUNNING", "DONE", *act[self.action]]
        if self.frozen:
            names.append("FROZEN")
        return ArrayState(recovery=_raw(*names), flags=self.flags, suspended=self.suspended,
                          sync_thread=self.phase in ("running", "syncing", "done"),
                          reshape_pos=self.reshape_pos,
                          curr_resync=self.done if self.phase == "syncing" else 0,
                          resync_max=self.size, level=self.level)


def generate(path: Path, n: int, seed: int = 1) -> None:
    """Write an ``n``-event trace to ``path`` (compression by suffix) with TraceWriter."""
    rnd = random.Random(seed)
    tables = FlagTable.for_release(KERNEL)
    header = TraceHeader(kernel=KERNEL, source="bench", flag_tables=tables,
                         meta={"generator": "bench/bench_report.py", "gen_version": GEN_VERSION})
    arrays = [_Array("md0", 5, "resync"), _Array("md1", 1, "recover"),
              _Array("md2", 6, "check"), _Array("md3", 10, "resync"),
              _Array("dm-6", 5, "reshape", dm_name="vg-r5")]
    ts = 1_000_000_000
    count = 0
    io_seq = 0
    with TraceWriter(path, header, flush_every=16384) as w:
        def emit(kind: str, arr: _Array | None, tid: int, comm: str,
                 args: dict[str, object] | None = None, state: bool = True) -> None:
            nonlocal count
            if arr is None:
                w.write(Event(ts=ts, kind=kind, tid=tid, pid=tid, comm=comm, args=args or {}))
            else:
                w.write(Event(ts=ts, kind=kind, array=arr.name, cpu=tid & 1, pid=tid, tid=tid,
                              comm=comm, dm_name=arr.dm_name, mddev=arr.mddev,
                              state=arr.state() if state else None, args=args or {}))
            count += 1

        for probe in ("md_check_recovery", "md_do_sync", "md_reap_sync_thread",
                      "md_register_thread", "raid5_make_request", "dm_suspend"):
            emit("probe_status", None, 0, "", {"probe": probe, "attached": True,
                                                 "method": "kprobe", "reason": ""})
        for a in arrays:
            emit("array_create", a, 900, "mdadm",
                 {"level": f"raid{a.level}", "kind": "dm-raid" if a.dm_name else "md"})
        while count < n:
            a = arrays[rnd.randrange(len(arrays))]
            ts += rnd.randrange(200_000, 2_000_000)
            comm = f"{a.name}_raid{a.level}" if not a.dm_name else "mdX_raid5"
            # the daemon: md_check_recovery entry/exit dominates real traces
            emit("check_recovery_enter", a, a.daemon_tid, comm)
            r = rnd.random()
            if a.phase == "idle" and r < 0.002:
                a.phase = "needed"
                emit("sync_action", a, 901, "bash", {"action": a.action, "source": "sysfs"})
            elif a.phase == "needed" and r < 0.3:
                a.phase = "running"
                emit("lock", a, a.daemon_tid, comm, {"lock": "reconfig_mutex",
                                                     "lock_id": "l:" + a.name, "op": "acquire"})
                emit("thread_register", a, a.daemon_tid, comm,
                     {"name": f"{a.name}_{a.action}", "caller": "md_start_sync", "sync": True,
                      "run": "md_do_sync"})
                emit("lock", a, a.daemon_tid, comm, {"lock": "reconfig_mutex",
                                                     "lock_id": "l:" + a.name, "op": "release"})
            elif a.phase == "running":
                a.phase = "syncing"
                a.done = 0
                emit("do_sync_enter", a, a.sync_tid, f"{a.name}_{a.action}",
                     {"thread": f"{a.name}_{a.action}", "action": a.action})
            elif a.phase == "syncing":
                if not a.frozen:
                    a.done = min(a.size, a.done + rnd.randrange(1024, 16384))
                    if a.reshape_pos is not None:
                        a.reshape_pos = a.done
                if r < 0.2:
                    emit("progress", a, a.sync_tid, f"{a.name}_{a.action}",
                         {"done": a.done, "total": a.size, "action": a.action,
                          "speed_kbs": rnd.randrange(50_000, 200_000)})
                if a.reshape_pos is not None and not a.frozen and r > 0.9995:
                    a.frozen = True  # echo frozen > sync_action, then IO across the position
                    emit("sync_action", a, 901, "bash", {"action": "frozen", "source": "sysfs"})
                elif a.frozen and r < 0.05:
                    io_seq += 1
                    sector = (a.reshape_pos or 0) + 8
                    emit("io_wait", a, 2000 + io_seq % 7, "fio",
                         {"sector": sector, "sectors": 8, "rw": "W",
                          "wait_ns": 6_000_000_000 + rnd.randrange(10**9), "done": False,
                          "mode": "requeue", "retries": io_seq, "io_id": f"io{io_seq % 5}"})
                elif a.frozen and r > 0.997:
                    a.frozen = False
                    emit("sync_action", a, 901, "bash", {"action": "reshape", "source": "sysfs"})
                    for k in range(5):
                        emit("io_wait", a, 2000 + k, "fio",
                             {"sector": 0, "sectors": 8, "rw": "W", "wait_ns": 0, "done": True,
                              "mode": "requeue", "io_id": f"io{k}"})
                if a.done >= a.size:
                    a.phase = "done"
                    emit("do_sync_exit", a, a.sync_tid, f"{a.name}_{a.action}",
                         {"thread": f"{a.name}_{a.action}", "action": a.action})
            elif a.phase == "done":
                emit("reap", a, a.daemon_tid, comm, {"mutex_owned": True, "mutex_locked": True,
                                                     "caller": "md_check_recovery"})
                emit("thread_unregister", a, a.daemon_tid, comm,
                     {"name": f"{a.name}_{a.action}", "caller": "md_reap_sync_thread",
                      "sync": True})
                a.phase = "idle"
                if a.reshape_pos is not None:
                    a.reshape_pos = 0
            emit("check_recovery_exit", a, a.daemon_tid, comm)
            if r > 0.985:
                emit("io_stats", a, 2100, "fio",
                     {"requests": rnd.randrange(100, 10_000), "slow": rnd.randrange(3),
                      "blocked": 0, "max_wait_ns": rnd.randrange(10**6, 10**8)})
            elif r > 0.975:
                lock_id = "l:" + a.name
                emit("lock", a, 901, "mdadm", {"lock": "reconfig_mutex", "lock_id": lock_id,
                                               "op": "acquire"})
                emit("lock", a, 901, "mdadm", {"lock": "reconfig_mutex", "lock_id": lock_id,
                                               "op": "release"})
            elif a.dm_name and r > 0.9735:
                # lvchange / dmsetup: suspend -> resume cycle of the dm-raid LV
                dm = {"dm_name": a.dm_name, "dm_dev": "252:6"}
                emit("dm_suspend_enter", a, 1500, "dmsetup", {**dm, "flags": 1})
                emit("raid_target", a, 1500, "dmsetup", {"hook": "presuspend", "phase": "enter"})
                a.suspended += 1
                emit("mddev_suspend", a, 1500, "dmsetup", {"phase": "enter"})
                emit("raid_target", a, 1500, "dmsetup",
                     {"hook": "postsuspend", "phase": "exit"})
                emit("dm_suspend_exit", a, 1500, "dmsetup", {**dm, "rc": 0})
                ts += rnd.randrange(1_000_000, 50_000_000)
                emit("dm_resume_enter", a, 1500, "dmsetup", dm)
                a.suspended -= 1
                emit("mddev_resume", a, 1500, "dmsetup", {"phase": "enter"})
                emit("raid_target", a, 1500, "dmsetup", {"hook": "resume", "phase": "exit"})
                emit("dm_resume_exit", a, 1500, "dmsetup", {**dm, "rc": 0})


def trace_path(n: int, compression: str) -> Path:
    cache = Path(os.environ.get("MDTRACE_BENCH_CACHE", Path(tempfile.gettempdir())
                                / "mdtrace-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    return cache / f"report-{n}-v{GEN_VERSION}.jsonl.{compression}"


def _child(path: str, stage: str, profile: bool) -> None:
    """Run the report path over ``path`` and print one JSON line of figures."""
    from mdtrace.engine.core import Engine
    from mdtrace.trace import TraceReader

    def work() -> int:
        if stage in ("read", "engine"):
            reader = TraceReader(path)
            eng = Engine(kernel=reader.header.kernel)
            for batch in reader.batches():
                if stage == "engine":
                    for ev in batch:
                        eng.feed(ev)
            eng.finish()
            return reader.events_read
        from mdtrace.frontends.report import build_report, render
        model = build_report(path)
        for fmt in ("text", "markdown", "html", "json"):
            render(model, fmt)
        return model.events_read

    t0 = time.perf_counter()
    c0 = time.process_time()
    if profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        n = prof.runcall(work)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    else:
        n = work()
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"events": n, "seconds": dt, "cpu_s": cpu, "rss_mb": rss_mb}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--compression", choices=["zst", "gz"], default="zst")
    ap.add_argument("--stage", choices=["read", "engine", "report"], default="report")
    ap.add_argument("--profile", action="store_true", help="cProfile the child (slower)")
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.stage, args.profile)
        return
    path = trace_path(args.events, args.compression)
    if args.regenerate or not path.exists():
        t0 = time.perf_counter()
        tmp = path.with_name(path.name.replace(".jsonl", ".tmp.jsonl"))
        generate(tmp, args.events)
        tmp.replace(path)
        print(f"generated {path} ({path.stat().st_size / 1e6:.1f} MB) in "
              f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
    cmd = [sys.executable, __file__, "--child", str(path), "--stage", args.stage]
    if args.profile:
        cmd.append("--profile")
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"bench child failed:\n{res.stderr}")
    sys.stderr.write(res.stderr)
    fig = json.loads(res.stdout.strip().splitlines()[-1])
    eps = fig["events"] / fig["seconds"]
    rss = fig["rss_mb"]
    ok_speed = "ok" if eps >= 1e6 else "BELOW TARGET 1M/s"
    ok_rss = "ok" if rss <= 200 else "ABOVE TARGET 200 MB"
    print(f"stage={args.stage} trace={path.name} events={fig['events']:,} "
          f"seconds={fig['seconds']:.2f}")
    print(f"events/s: {eps:,.0f} ({ok_speed}); per CPU-second: "
          f"{fig['events'] / max(fig['cpu_s'], 1e-9):,.0f} (CPU {fig['cpu_s']:.2f} s; load: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"peak RSS: {rss:.1f} MB ({ok_rss})")


if __name__ == "__main__":
    main()
