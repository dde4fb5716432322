"""`mdtrace run`: the live daemon.  Source -> Engine -> one line per finding raised/cleared.

The same live session (mdtrace.live) as `mdtrace top` and the exporter: those render the
engine; this one prints.
Falls back to sysfs polling (with a warning) where BPF cannot attach.
"""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path
from typing import IO, Any

import click

from mdtrace.commands._live import (
    check_interval,
    live_bcc_kwargs,
    live_options,
    open_live_source,
    running_kernel,
    stale_probe_lines,
    start_timer,
    startup_watch,
    stop_on_signals,
)
from mdtrace.errors import MdtraceError
from mdtrace.live import LiveSession


def finding_line(f: Any, state: str, wall: _dt.datetime | None = None) -> str:
    """One log line for a finding: time, code, array, severity, state, title, remedy."""
    t = (wall or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sev = getattr(f.severity, "value", f.severity)
    line = f"{t} {f.code} {f.array or '-'} {sev} {state}: {f.title}"
    if state == "RAISED" and f.remedy:
        line += f" | remedy: {f.remedy}"
    return line


class FindingPrinter:
    """Prints each finding once when raised and once when cleared."""

    def __init__(self, out: list[IO[str]]) -> None:
        self.out = out
        self.raised: set[str] = set()
        self.cleared: set[str] = set()
        self.lines = 0

    def _key(self, f: Any) -> str:
        return f.key or f"{f.code}:{f.array}:{f.start_ns}"

    def emit(self, line: str) -> None:
        self.lines += 1
        for fh in self.out:
            fh.write(line + "\n")
            fh.flush()

    def update(self, findings: list[Any]) -> None:
        for f in findings:
            k = self._key(f)
            if k not in self.raised:
                self.raised.add(k)
                self.emit(finding_line(f, "RAISED"))
            if not f.active and k not in self.cleared:
                self.cleared.add(k)
                self.emit(finding_line(f, "CLEARED"))


@click.command("run")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), default=None,
              help="Also append finding lines to this file.")
@live_options
def command(duration: float | None, prefer: str, locks: bool, locks_full: bool,
            io_threshold_ms: float, config_path: str | None, thresholds: tuple[str, ...],
            log_path: str | None, interval: float, sysfs_root: str, snapshot: bool) -> None:
    """Trace live, diagnose, and print findings as they are raised and cleared."""
    from mdtrace.config import load_config
    from mdtrace.engine.core import Engine
    from mdtrace.live import prime

    check_interval("run", interval)
    cfg = load_config(config_path, thresholds)
    warn = lambda m: click.echo(m, err=True)  # noqa: E731
    outs: list[IO[str]] = [sys.stdout]
    log_fh = open(log_path, "a") if log_path else None  # noqa: SIM115 - closed below
    if log_fh:
        outs.append(log_fh)
    printer = FindingPrinter(outs)
    engine = Engine(cfg, mode="live", kernel=running_kernel(sysfs_root))
    watch = startup_watch(sysfs_root) if snapshot else None
    if watch is not None:
        # what already hangs, said before the probes compile (a minute or more under TCG)
        printer.update(prime(engine, watch, warn=warn))
        click.echo(f"mdtrace: start-up snapshot: {len(engine.findings)} findings; "
                   "attaching probes", err=True)
    try:
        src = open_live_source(prefer=prefer, sysfs_root=sysfs_root, **live_bcc_kwargs(dict(
            locks=locks, locks_full=locks_full, io_threshold_ms=io_threshold_ms,
            config_path=config_path, thresholds=thresholds)))
    finally:
        if log_fh and sys.exc_info()[0] is not None:
            log_fh.close()
    if getattr(src, "name", "") == "sysfs":
        src.interval = interval
    session = LiveSession(src, engine, tick_s=interval, progress_s=interval,
                          sysfs_root=sysfs_root, warn=warn, on_findings=printer.update,
                          watch=watch)
    click.echo(f"mdtrace: running ({src.name} source, kernel {src.header.kernel}); "
               "Ctrl-C to stop", err=True)
    for line in stale_probe_lines(src):
        click.echo(line, err=True)
    if not (Path(sysfs_root) / "proc" / "mdstat").exists():
        # md_mod publishes /proc/mdstat once loaded: without it there is nothing to watch
        # (yet), which must not read as a clean bill of health ("0 findings")
        click.echo("mdtrace: no md driver loaded here (no /proc/mdstat): nothing to watch "
                   "until md_mod is loaded (e.g. by the first mdadm --assemble)", err=True)
    with stop_on_signals(session.stop):
        start_timer(session.stop, duration)
        session.start()
        try:
            while not session.done.wait(0.5):
                pass
        finally:
            session.close()
            printer.update(session.findings())
            if log_fh:
                log_fh.close()
    if session.error is not None and not isinstance(session.error, KeyboardInterrupt):
        err = session.error
        if isinstance(err, MdtraceError):
            raise err
        raise MdtraceError(f"run: event source failed: {type(err).__name__}: {err}") from None
    n = session.events
    h = src.health()
    active = sum(1 for f in engine.findings if f.active)
    click.echo(f"mdtrace: stopped: {n} events ({src.name}), {h.get('lost', 0)} lost, "
               f"{len(engine.findings)} findings ({active} active)", err=True)
