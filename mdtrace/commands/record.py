"""`mdtrace record -o TRACE`: live BPF events into a trace file until SIGINT/SIGTERM/--duration.

SIGHUP reopens TRACE (logrotate's way), so one attach (a bcc compile: seconds on hardware,
a minute or two in a TCG guest) can record many files back to back.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from mdtrace.commands._live import (
    stale_probe_lines,
    start_progress_sampler,
    start_timer,
    stop_on_signals,
)
from mdtrace.errors import MdtraceError
from mdtrace.events import Event
from mdtrace.trace import TraceHeader, TraceWriter


class TraceOutput:
    """The trace file being written, shared by the source loop and the sampler threads.

    :meth:`reopen` closes the current file (flushed, gzip trailer written: it is complete)
    and starts a new one at the same path that begins with ``seed()`` (probe status, arrays
    sysfs shows), so every file reads on its own.
    """

    def __init__(self, path: str, header: TraceHeader,
                 seed: Callable[[], list[Event]] = list) -> None:
        self.path, self._header, self._seed = path, header, seed
        self._lock = threading.Lock()
        self._closed = False
        self.count = 0
        self.files = 1
        self._writer = TraceWriter(path, header)

    def write(self, ev: Event) -> None:
        with self._lock:
            if not self._closed:
                self._writer.write(ev)
                self.count += 1

    def flush(self) -> None:
        with self._lock:
            if not self._closed:
                self._writer.flush()

    def reopen(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._writer.close()
            try:
                self._writer = TraceWriter(self.path, self._header)
            except MdtraceError:
                self._closed = True
                raise
            self.files += 1
            for ev in self._seed():
                self._writer.write(ev)
                self.count += 1

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._writer.close()


def _seed_events(src: Any) -> list[Event]:
    from mdtrace.sources.sysfs import SysfsSource

    evs = list(src.probe_events())
    try:
        evs += SysfsSource().poll()
    except OSError:
        pass
    return evs


@contextmanager
def _on_sighup(flag: threading.Event) -> Iterator[None]:
    old = signal.signal(signal.SIGHUP, lambda _s, _f: flag.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, old)


def _start_reopener(stop: threading.Event, reopen: threading.Event, out: TraceOutput,
                    say: Callable[[str], None]) -> threading.Thread:
    def run() -> None:
        while not stop.is_set():
            if not reopen.wait(0.2):
                continue
            reopen.clear()
            try:
                out.reopen()
            except (MdtraceError, OSError) as exc:
                say(f"mdtrace: error: cannot reopen {out.path}: {exc}; stopping")
                stop.set()
                return
            say(f"mdtrace: reopened {out.path} (file {out.files})")

    th = threading.Thread(target=run, name="mdtrace-reopen", daemon=True)
    th.start()
    return th


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
@click.option("--ringbuf-pages", type=click.IntRange(1, 1 << 16), default=256, hidden=True,
              help="Ring buffer size in pages, a power of 2 (tests force loss with 1).")
def command(output: str, duration: float | None, locks: bool, locks_full: bool,
            io_threshold_ms: float, io_stats_s: float, btf_dir: str, sysfs_progress_s: float,
            kernel_log: bool, quiet: bool, ringbuf_pages: int) -> None:
    """Trace md/dm-raid live with BPF into TRACE (stop with Ctrl-C)."""
    from mdtrace.sources.bcc_source import BccSource
    from mdtrace.sources.kmsg import start_kmsg_reader

    def say(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)

    if ringbuf_pages & (ringbuf_pages - 1):
        raise MdtraceError(f"record: --ringbuf-pages {ringbuf_pages} is not a power of 2 "
                           "(the kernel's ring buffer needs one): give e.g. 1, 64 or 256")
    src = BccSource(locks=locks, locks_full=locks_full, io_threshold_ms=io_threshold_ms,
                    io_stats_s=io_stats_s, btf_root=btf_dir, ringbuf_pages=ringbuf_pages)
    stop = threading.Event()
    reopen = threading.Event()
    out: TraceOutput | None = None
    try:
        attached = [k for k, v in src.status.items() if v["attached"]]
        missing = [f"{k} ({v['reason']})" for k, v in src.status.items() if not v["attached"]]
        out = TraceOutput(output, src.header, lambda: _seed_events(src))
        with stop_on_signals(stop), _on_sighup(reopen):
            say(f"mdtrace: recording to {output}: {len(attached)} probes attached "
                f"(compile {src.compile_s:.1f} s)")
            for m in missing:
                say(f"mdtrace: not attached: {m}")
            for line in stale_probe_lines(src):
                say(line)
            start_timer(stop, duration)
            _start_reopener(stop, reopen, out, say)
            last_flush = time.monotonic()
            if sysfs_progress_s > 0:
                start_progress_sampler(stop, out.write, sysfs_progress_s)
            if kernel_log:
                start_kmsg_reader(stop, out.write, warn=say)
            try:
                for ev in src.events(stop):
                    out.write(ev)
                    if time.monotonic() - last_flush > 1.0:
                        out.flush()
                        last_flush = time.monotonic()
            finally:
                stop.set()
                out.close()   # the sampler and kmsg threads must not write into a closed file
    finally:
        src.close()
    n = out.count if out is not None else 0
    h = src.health()
    files = f" ({out.files} files: reopened on SIGHUP)" if out is not None and out.files > 1 else ""
    say(f"mdtrace: stopped: {n} events written to {output}{files}, {h['lost']} lost"
        + (f", {h['undecodable']} undecodable" if h["undecodable"] else ""))
