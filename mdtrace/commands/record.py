"""`mdtrace record -o TRACE`: live BPF events into a trace file until SIGINT/SIGTERM/--duration."""

from __future__ import annotations

import threading
import time

import click

from mdtrace.commands._live import start_progress_sampler, start_timer, stop_on_signals
from mdtrace.events import Event


@click.command("record")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="Trace file to write (.gz / .zst compress).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--locks", is_flag=True, help="Also trace md/dm mutexes (contention only).")
@click.option("--locks-full", is_flag=True,
              help="With --locks: every acquire/release of watched mutexes (costlier).")
@click.option("--io-threshold-ms", type=float, default=1000.0, show_default=True,
              help="Report raid5 requests slower/blocked longer than this.")
@click.option("--io-stats-s", type=float, default=5.0, show_default=True,
              help="Per-array IO counter period.")
@click.option("--btf-dir", type=click.Path(file_okay=False), default="/sys/kernel/btf",
              show_default=True, help="Where the kernel's BTF blobs are.")
@click.option("--sysfs-progress-s", type=float, default=1.0, show_default=True,
              help="Also record md arrays' sysfs sync_completed every N s (stall evidence); "
                   "0 disables.")
@click.option("--kernel-log/--no-kernel-log", default=True, show_default=True,
              help="Also record kernel oopses, BUGs, hung-task reports and md/dm-raid "
                   "messages from /dev/kmsg (how a dead md thread is diagnosed).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
def command(output: str, duration: float | None, locks: bool, locks_full: bool,
            io_threshold_ms: float, io_stats_s: float, btf_dir: str, sysfs_progress_s: float,
            kernel_log: bool, quiet: bool) -> None:
    """Trace md/dm-raid live with BPF into TRACE (stop with Ctrl-C)."""
    from mdtrace.sources.bcc_source import BccSource
    from mdtrace.sources.kmsg import start_kmsg_reader
    from mdtrace.trace import TraceWriter

    def say(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)

    src = BccSource(locks=locks, locks_full=locks_full, io_threshold_ms=io_threshold_ms,
                    io_stats_s=io_stats_s, btf_root=btf_dir)
    stop = threading.Event()
    n = 0
    try:
        attached = [k for k, v in src.status.items() if v["attached"]]
        missing = [f"{k} ({v['reason']})" for k, v in src.status.items() if not v["attached"]]
        with TraceWriter(output, src.header) as writer, stop_on_signals(stop):
            say(f"mdtrace: recording to {output}: {len(attached)} probes attached "
                f"(compile {src.compile_s:.1f} s)")
            for m in missing:
                say(f"mdtrace: not attached: {m}")
            start_timer(stop, duration)
            last_flush = time.monotonic()
            lock = threading.Lock()
            closed = False

            def write(ev: Event) -> None:
                nonlocal n
                with lock:
                    if not closed:
                        writer.write(ev)
                        n += 1

            if sysfs_progress_s > 0:
                start_progress_sampler(stop, write, sysfs_progress_s)
            if kernel_log:
                start_kmsg_reader(stop, write, warn=say)
            try:
                for ev in src.events(stop):
                    write(ev)
                    if time.monotonic() - last_flush > 1.0:
                        with lock:
                            writer.flush()
                        last_flush = time.monotonic()
            finally:
                stop.set()
                with lock:
                    closed = True   # the sampler must not write into a closing file
    finally:
        src.close()
    h = src.health()
    say(f"mdtrace: stopped: {n} events written to {output}, {h['lost']} lost"
        + (f", {h['undecodable']} undecodable" if h["undecodable"] else ""))
