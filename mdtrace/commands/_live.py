"""Shared plumbing of the live commands (record, run): signals, duration, source choice."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from mdtrace.errors import MdtraceError


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (clean detach + flush) instead of killing the process."""
    def handler(_sig: int, _frm: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


MAX_DURATION_S = 1e9     # ~31.7 years; threading.Timer refuses far larger waits


def check_duration(duration: float | None) -> float | None:
    """``--duration`` as a timer can take it, or a one-line error (NaN, inf, <= 0, 1e300)."""
    if duration is None:
        return None
    if not math.isfinite(duration) or not 0 < duration <= MAX_DURATION_S:
        raise MdtraceError(f"--duration {duration:g}: give a number of seconds > 0 and at most "
                           f"{MAX_DURATION_S:g}, or leave it out to run until Ctrl-C")
    return duration


def duration_option(_ctx: Any, _param: Any, value: float | None) -> float | None:
    """click callback: :func:`check_duration` before anything attaches (one line, exit 2)."""
    return check_duration(value)


def start_timer(stop: threading.Event, duration: float | None) -> None:
    if check_duration(duration):
        t = threading.Timer(duration, stop.set)   # type: ignore[arg-type]
        t.daemon = True
        t.start()


def open_live_source(*, prefer: str = "auto", warn: Callable[[str], None] | None = None,
                     sysfs_root: str = "/", **bcc_kwargs: Any) -> Any:
    """The best live source: bcc when it can attach, else the sysfs poller with a warning."""
    from mdtrace.sources.sysfs import SysfsSource

    def sysfs() -> SysfsSource:
        root = Path(sysfs_root)
        return SysfsSource(sys_root=root / "sys", proc_root=root / "proc")

    if prefer == "sysfs":
        return sysfs()
    try:
        from mdtrace.sources.bcc_source import BccSource

        return BccSource(**bcc_kwargs)
    except MdtraceError as exc:
        if prefer == "bcc":
            raise
        (warn or (lambda m: click.echo(m, err=True)))(
            f"mdtrace: warning: BPF tracing unavailable ({exc}); falling back to sysfs "
            "polling (names, sync action, progress only; no lifecycle or hang detection "
            "that needs kernel probes). Run 'mdtrace doctor' for details.")
        return sysfs()


def now_ns() -> int:
    return time.monotonic_ns()


def start_progress_sampler(stop: threading.Event, sink: Callable[[Any], None],
                           interval: float = 1.0, sysfs_root: str = "/") -> threading.Thread:
    """Feed the sysfs poller's progress samples to ``sink`` every ``interval`` until ``stop``.

    bcc sees a sync's position only when md_check_recovery runs; sync_completed re-sampled
    while a sync runs (even unchanged) is the evidence stall detection (F10) needs on md
    arrays.  A vanished or unreadable sysfs ends the sampler quietly.
    """
    from mdtrace.sources.sysfs import SysfsSource

    root = Path(sysfs_root)
    poller = SysfsSource(sys_root=root / "sys", proc_root=root / "proc")

    def run() -> None:
        while not stop.wait(interval):
            try:
                events = poller.progress_only()
            except OSError:
                return
            for ev in events:
                sink(ev)

    th = threading.Thread(target=run, name="mdtrace-progress", daemon=True)
    th.start()
    return th



def stale_probe_lines(src: Any) -> list[str]:
    """What the source did with kprobe events dead processes left (mdtrace.kernel.tracefs)."""
    removed = list(getattr(src, "stale_removed", []) or [])
    failed = list(getattr(src, "stale_failed", []) or [])
    out = []
    if removed:
        out.append(f"mdtrace: removed {len(removed)} stale kprobe event(s) of dead processes "
                   f"({removed[0]}{', ...' if len(removed) > 1 else ''})")
    for f in failed:
        out.append(f"mdtrace: warning: could not remove stale kprobe event {f}")
    return out


def live_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options run, top and exporter share, defined once (issue 17); the command receives
    ``prefer, locks, locks_full, io_threshold_ms, config_path, thresholds, interval,
    sysfs_root, snapshot`` and passes them on through :func:`live_bcc_kwargs` and
    :func:`mdtrace.config.load_config`."""
    options = [
        click.option("--source", "prefer", type=click.Choice(["auto", "bcc", "sysfs"]),
                     default="auto", show_default=True,
                     help="Live source (auto: bcc, else sysfs polling)."),
        click.option("--locks", is_flag=True, help="Trace md/dm mutexes (contention only)."),
        click.option("--locks-full", is_flag=True,
                     help="With --locks: every acquire/release (costlier)."),
        click.option("--io-threshold-ms", type=float, default=1000.0, show_default=True,
                     help="Report raid5 requests blocked longer than this."),
        click.option("--config", "config_path", type=click.Path(dir_okay=False),
                     default=None, help="TOML file of engine thresholds."),
        click.option("--threshold", "thresholds", multiple=True, metavar="NAME=VALUE",
                     help="Override one engine threshold, e.g. io_wait_s=2 (repeatable)."),
        click.option("--interval", type=float, default=1.0, show_default=True,
                     help="Engine tick, sysfs poll and progress sample interval in seconds "
                          "(and `top`'s screen refresh)."),
        click.option("--sysfs-root", default="/", hidden=True,
                     help="Root holding sys/ and proc/ for the sysfs source (tests)."),
        click.option(
            "--snapshot/--no-snapshot", "snapshot", default=True, show_default=True,
            help="First read what already hangs (the `mdtrace diagnose` snapshot: sysfs, "
                 "blocked tasks' stacks, the kernel log), before the probes are compiled, "
                 "and re-scan blocked tasks while running."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def live_bcc_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """BccSource arguments from :func:`live_options` values (the command and ``--ebpf`` alike):
    the F7 threshold of the engine's config is the in-kernel alert threshold."""
    from mdtrace.config import load_config

    cfg = load_config(kw.get("config_path"), kw.get("thresholds") or ())
    return {"locks": bool(kw.get("locks")), "locks_full": bool(kw.get("locks_full")),
            "io_threshold_ms": float(kw.get("io_threshold_ms", 1000.0)),
            "io_alert_s": float(cfg.io_wait_s)}


def check_interval(command: str, interval: float) -> None:
    if not interval > 0 or interval > 3600:
        raise MdtraceError(f"{command}: --interval {interval:g} must be > 0 and <= 3600 s")


def startup_watch(sysfs_root: str = "/") -> Any:
    """The blocked-task watch of a live session over ``sysfs_root`` (dmsetup and /dev/kmsg
    only on the real root)."""
    from mdtrace.sources.snapshot import klog, run_dmsetup_status
    from mdtrace.sources.snapshot.watch import BlockedTaskWatch

    root = Path(sysfs_root)
    real = root == Path("/")
    return BlockedTaskWatch(root / "sys", root / "proc",
                            dmsetup=run_dmsetup_status if real else None,
                            kernel_log=klog.read_kmsg if real else None)


def running_kernel(sysfs_root: str = "/") -> str:
    """The kernel release the live engine judges by (before any source exists)."""
    import platform

    try:
        return (Path(sysfs_root) / "proc/sys/kernel/osrelease").read_text().strip() or \
            platform.release()
    except OSError:
        return platform.release()
