"""`mdtrace record -o TRACE`: live BPF events into a trace file until SIGINT/SIGTERM/--duration.

SIGHUP reopens TRACE (logrotate's way), so one attach (a bcc compile: seconds on hardware,
a minute or two in a TCG guest) can record many files back to back.  TRACE is created 0600
and never through a symlink; an existing one is refused unless ``--force``.  The file is
readable up to its last half second whenever the recorder dies (mdtrace.trace, format 2).
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from mdtrace.commands._live import (
    duration_option,
    stale_probe_lines,
    start_progress_sampler,
    start_timer,
    stop_on_signals,
)
from mdtrace.errors import MdtraceError
from mdtrace.events import Event
from mdtrace.trace import FLUSH_S, TraceError, TraceHeader, TraceWriter


class TraceOutput:
    """The trace file being written, shared by the source loop and the sampler threads.

    Crash safety: a flusher thread ends a compressed frame every ``flush_s`` (and fdatasyncs
    it with ``sync``) whether events arrive or not, so a SIGKILL or power loss loses at most
    that much (mdtrace.trace).  A write error (a full disk) stops the output: the file is cut
    back to its last complete record and closed, ``error`` holds the one-line TraceError and
    ``on_error`` is called (record stops and exits 2 with it).

    :meth:`reopen` closes the current file (flushed, end record written: it is complete)
    and starts a new one at the same path that begins with ``seed()`` (probe status, arrays
    sysfs shows), so every file reads on its own.  ``force``: replace an existing file at the
    path (else it is refused, as is any symlink: mdtrace.trace.create_private).
    """

    def __init__(self, path: str, header: TraceHeader,
                 seed: Callable[[], list[Event]] = list, *, force: bool = False,
                 flush_s: float = FLUSH_S, sync: bool = True,
                 on_error: Callable[[TraceError], None] | None = None,
                 summary: Callable[[], dict[str, int]] = dict) -> None:
        self.path, self._header, self._seed = path, header, seed
        self._summary = summary    # into each file's end record (the lost-event count)
        self._force, self._sync, self._on_error = force, sync, on_error
        self._lock = threading.Lock()
        self._closed = False
        self.error: TraceError | None = None
        self.count = 0
        self.files = 1
        self._writer = TraceWriter(path, header, exclusive=not force, sync=sync)
        self._done = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, args=(flush_s,),
                                         name="mdtrace-flush", daemon=True)
        self._flusher.start()

    def _flush_loop(self, interval: float) -> None:
        while not self._done.wait(interval):
            self.flush()

    def _guard(self, op: Callable[[], None]) -> None:
        """Run a writer operation (lock held); a write error closes the output."""
        try:
            op()
        except TraceError as exc:
            self._closed = True
            self._done.set()
            self.error = exc
            if self._on_error is not None:
                self._on_error(exc)

    def write(self, ev: Event) -> None:
        with self._lock:
            if not self._closed:
                self._guard(lambda: self._writer.write(ev))
                self.count += not self._closed

    def flush(self) -> None:
        with self._lock:
            if not self._closed:
                self._guard(self._writer.flush)

    def reopen(self) -> bool:
        """Start a new file at the path; False (nothing changed) when the path still names
        the current file (SIGHUP without renaming it first)."""
        with self._lock:
            if self._closed:
                return True
            fd = self._writer.fileno()
            try:
                same = fd is not None and os.path.samestat(os.lstat(self.path), os.fstat(fd))
            except OSError:
                same = False
            if same:
                return False
            self._guard(lambda: self._writer.close(self._summary()))
            if self._closed:
                return True
            try:
                self._writer = TraceWriter(self.path, self._header, exclusive=not self._force,
                                           sync=self._sync)
            except MdtraceError:
                self._closed = True
                self._done.set()
                raise
            self.files += 1
            for ev in self._seed():
                if not self._closed:
                    self._guard(functools.partial(self._writer.write, ev))
                    self.count += not self._closed
            return True

    def close(self) -> None:
        self._done.set()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._guard(lambda: self._writer.close(self._summary()))


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
                fresh = out.reopen()
            except (MdtraceError, OSError) as exc:
                say(f"mdtrace: error: cannot reopen {out.path}: {exc}; stopping")
                stop.set()
                return
            if fresh:
                say(f"mdtrace: reopened {out.path} (file {out.files})")
            else:
                say(f"mdtrace: warning: SIGHUP but {out.path} was not renamed: still writing "
                    "it (rename it first, then SIGHUP)")

    th = threading.Thread(target=run, name="mdtrace-reopen", daemon=True)
    th.start()
    return th


@click.command("record")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="Trace file to write (.gz / .zst compress); created 0600, refused if it "
                   "exists (see --force) or is a symlink.")
@click.option("--force", is_flag=True,
              help="Replace an existing OUTPUT (never written through: a new file is made).")
@click.option("--duration", type=float, default=None, callback=duration_option,
              help="Stop after this many seconds.")
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
def command(output: str, force: bool, duration: float | None, locks: bool, locks_full: bool,
            io_threshold_ms: float, io_stats_s: float, btf_dir: str, sysfs_progress_s: float,
            kernel_log: bool, quiet: bool, ringbuf_pages: int) -> None:
    """Trace md/dm-raid live with BPF into TRACE (stop with Ctrl-C)."""
    from mdtrace.sources.bcc_source import BccSource
    from mdtrace.sources.kmsg import start_kmsg_reader

    def say(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)

    if not force and os.path.lexists(output):     # before a minute of probe compiling
        raise TraceError(output, "already exists",
                         hint="choose another name, or --force to replace it")
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
        from mdtrace.kernel.probes import absent_by_design

        missing = [f"{k} ({v['reason']})" for k, v in src.status.items()
                   if not v["attached"] and not absent_by_design(k, src.release)]
        expected = [f"{k} ({absent_by_design(k, src.release)} only)"
                    for k, v in src.status.items()
                    if not v["attached"] and absent_by_design(k, src.release)]
        out = TraceOutput(output, src.header, lambda: _seed_events(src), force=force,
                          summary=lambda: {"lost_since_start": int(src.lost_total)},
                          on_error=lambda _e: stop.set())
        with stop_on_signals(stop), _on_sighup(reopen):
            say(f"mdtrace: recording to {output}: {len(attached)} probes attached "
                f"(compile {src.compile_s:.1f} s)")
            for m in missing:
                say(f"mdtrace: not attached: {m}")
            if expected:
                say(f"mdtrace: not in this kernel, as expected: {', '.join(expected)}")
            for line in stale_probe_lines(src):
                say(line)
            start_timer(stop, duration)
            _start_reopener(stop, reopen, out, say)
            if sysfs_progress_s > 0:
                start_progress_sampler(stop, out.write, sysfs_progress_s)
            if kernel_log:
                start_kmsg_reader(stop, out.write, warn=say)
            try:
                for ev in src.events(stop):     # out's flusher ends a frame every FLUSH_S
                    out.write(ev)
            finally:
                stop.set()
                out.close()   # the sampler and kmsg threads must not write into a closed file
    finally:
        src.close()
    if out is not None and out.error is not None:
        raise out.error
    n = out.count if out is not None else 0
    h = src.health()
    files = f" ({out.files} files: reopened on SIGHUP)" if out is not None and out.files > 1 else ""
    say(f"mdtrace: stopped: {n} events written to {output}{files}, {h['lost']} lost"
        + (f", {h['undecodable']} undecodable" if h["undecodable"] else ""))
