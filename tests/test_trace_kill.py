"""SIGKILL a recorder at 20 random instants of a synthetic high-rate recording (issue 13).

The writer is ``mdtrace record``'s own (commands/record.py ``TraceOutput``: flusher thread,
a gzip member per flush; also plain and zstd files), driven from a small subprocess by a
fake source writing ~40,000 events/s, each numbered and stamped with CLOCK_MONOTONIC
(system-wide, so the test's kill time is on the same clock).  Every killed file must report
without flags, say in every format that it ends abruptly, and hold a gap-free prefix of the
events reaching past ``kill - 1 s``: every record older than 1 s before the kill is in it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from mdtrace.frontends.report import FORMATS, build_report, render
from mdtrace.trace import TraceReader

REPO = Path(__file__).resolve().parent.parent
WRITER = r"""
import sys, time
from mdtrace.commands.record import TraceOutput
from mdtrace.events import ArrayState, Event
from mdtrace.trace import TraceHeader

out = TraceOutput(sys.argv[1], TraceHeader(kernel="6.12.117+deb12-amd64", source="kill-test"))
st = ArrayState(recovery=3, sync_thread=True, resync_max=1 << 30)
print("ready", flush=True)
seq = 0
while True:
    for _ in range(50):
        seq += 1
        out.write(Event(ts=time.monotonic_ns(), kind="io_stats", array="md0", tid=7,
                        comm="md0_raid5", state=st, args={"requests": seq, "slow": 0}))
    time.sleep(0.001)
"""
KILLS = 20
PARALLEL = 5
SUFFIXES = (".jsonl.gz", ".jsonl.gz", ".jsonl", ".jsonl.zst")   # record's default, mostly


def _record_and_kill(tmp: Path, delays: list[float]) -> list[tuple[Path, int]]:
    """Start one writer per delay, SIGKILL each that long after it is ready."""
    procs = []
    n = len(list(tmp.iterdir()))
    for i, _ in enumerate(delays):
        path = tmp / f"kill{n + i}{SUFFIXES[(n + i) % len(SUFFIXES)]}"
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
        procs.append((p, path))
    ready = []
    for p, _ in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        ready.append(time.monotonic())
    out = []
    for (p, path), t0, delay in sorted(zip(procs, ready, delays),
                                       key=lambda x: x[1] + x[2]):
        pause = t0 + delay - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        kill_ns = time.monotonic_ns()
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        out.append((path, kill_ns))
    return out


def test_sigkill_at_20_random_instants_loses_at_most_the_last_second(tmp_path: Path) -> None:
    seed = int(os.environ.get("MDTRACE_KILL_SEED", random.randrange(1 << 30)))
    rnd = random.Random(seed)
    delays = [rnd.uniform(0.0, 2.0) for _ in range(KILLS)]
    killed: list[tuple[Path, int, float]] = []
    for at in range(0, KILLS, PARALLEL):
        part = delays[at:at + PARALLEL]
        killed += [(p, k, d) for (p, k), d in zip(_record_and_kill(tmp_path, part),
                                                                 sorted(part))]
    recovered = []
    for path, kill_ns, delay in killed:
        where = f"seed {seed}, {path.name}, killed {delay:.3f} s after start"
        assert path.stat().st_mode & 0o777 == 0o600, where
        model = build_report(path)                       # no flags
        assert model.abrupt_end.startswith("trace ends abruptly at"), where
        for fmt in FORMATS:
            assert "trace ends abruptly" in render(model, fmt), (where, fmt)
        reader = TraceReader(path)
        evs = list(reader)
        seqs = [e.args["requests"] for e in evs]
        assert seqs == list(range(1, len(seqs) + 1)), f"{where}: a gap in what was recovered"
        assert reader.truncated and reader.bad_lines == 0 and model.events_read == len(evs)
        if delay > 0.5:
            assert evs, where
        if evs:
            # the newest record recovered is at most 1 s older than the kill: all before it is in
            assert evs[-1].ts >= kill_ns - 1_000_000_000, (
                f"{where}: last record {(kill_ns - evs[-1].ts) / 1e9:.3f} s before the kill")
            recovered.append((kill_ns - evs[-1].ts) / 1e9)
    assert len(recovered) >= KILLS // 2, f"seed {seed}: too few kills after the first write"
    print(f"seed {seed}: {len(killed)} kills; newest record recovered "
          f"{min(recovered):.3f}-{max(recovered):.3f} s before the kill")
