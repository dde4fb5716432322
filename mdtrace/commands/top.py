"""`mdtrace top`: live terminal UI, or the same UI over a replayed trace."""

from __future__ import annotations

import signal
from typing import Any

import click

from mdtrace.commands._live import live_options
from mdtrace.errors import EnvironmentProblem, MdtraceError


def _engine_class() -> type:
    """The engine class, checked before any source is opened (no half-started probes)."""
    try:
        from mdtrace.engine.core import Engine
    except ImportError as exc:
        raise MdtraceError(f"top: diagnosis engine not available ({exc}); "
                           "reinstall mdtrace (bash scripts/bootstrap.sh)") from None
    return Engine


def _engine(mode: str, kernel: str, config: object = None) -> object:
    return _engine_class()(config, mode=mode, kernel=kernel)


@click.command(name="top")
@click.option("--replay", "replay", type=click.Path(dir_okay=False), default=None,
              help="Replay a recorded trace instead of tracing live.")
@click.option("--speed", type=float, default=None,
              help="Replay speed: N trace-seconds per second (default: as fast as possible).")
@live_options
def command(replay: str | None, speed: float | None, prefer: str, locks: bool,
            locks_full: bool, io_threshold_ms: float, config_path: str | None,
            thresholds: tuple[str, ...], interval: float, sysfs_root: str,
            snapshot: bool) -> None:
    """Live terminal UI (or over a replayed trace)."""
    from mdtrace.commands._live import check_interval
    from mdtrace.config import load_config
    from mdtrace.frontends.tui.app import TopApp
    from mdtrace.frontends.tui.feed import Feeder

    check_interval("top", interval)
    config = load_config(config_path, thresholds)
    if speed is not None and speed < 0:
        raise MdtraceError(f"top: --speed {speed} is negative; give N > 0 or omit it")
    if replay is not None:
        from mdtrace.sources.replay import ReplaySource
        from mdtrace.trace import TraceError

        try:
            source = ReplaySource(replay, speed=speed)
        except (OSError, TraceError) as exc:
            raise MdtraceError(f"top: cannot read trace {replay}: {exc}; "
                               "give a file written by `mdtrace record`") from None
        kernel = str(getattr(source.header, "kernel", "") or "")
        engine = _engine("replay", kernel, config)
        live = False
        notes: list[str] = []
    else:
        try:
            from mdtrace.commands._live import open_live_source
        except ImportError:
            raise EnvironmentProblem("top: no live source available in this install; "
                                     "run 'mdtrace doctor', or use --replay TRACE") from None
        from mdtrace.commands._live import live_bcc_kwargs, running_kernel, startup_watch
        from mdtrace.live import LiveSession, prime

        warnings: list[str] = []
        engine = _engine("live", running_kernel(sysfs_root), config)
        watch = startup_watch(sysfs_root) if snapshot else None
        if watch is not None:      # what already hangs is on the first screen
            prime(engine, watch, warn=warnings.append)
        source = open_live_source(prefer=prefer, sysfs_root=sysfs_root, warn=warnings.append,
                                  **live_bcc_kwargs(dict(
                                      locks=locks, locks_full=locks_full,
                                      io_threshold_ms=io_threshold_ms,
                                      config_path=config_path, thresholds=thresholds)))
        if getattr(source, "name", "") == "sysfs":
            source.interval = interval
        getattr(engine, "set_mode", lambda m: None)(str(getattr(source, "name", "bcc")))
        live = True
    feeder: Any
    if live:
        # the same session as `mdtrace run`: ticks on monotonic time, sysfs progress, kmsg
        feeder = LiveSession(source, engine, tick_s=interval, progress_s=interval,
                             sysfs_root=sysfs_root, warn=warnings.append, watch=watch)
    else:
        feeder = Feeder(source, engine, live=False)
    feeder.start()
    if live:
        notes = [w.removeprefix("mdtrace: warning: ") for w in warnings]
    # live: one frame per engine tick (--interval); a frame between ticks shows nothing new,
    # and a 0.2 s redraw cost the 7.2 guest's `top` twice the CPU of `run` while the hang
    # it was started for ran beside it (2026-12-04).  A replay keeps the smooth default.
    ui = {"interval": interval} if live else {}
    app = TopApp(feeder.poll, is_done=feeder.done.is_set, frame_lock=feeder.frame_lock,
                 notes=notes, **ui)
    # SIGTERM/SIGHUP (systemd, a closed terminal) end the app like `q`: the terminal is
    # restored and the probes detached in the finally below
    old = {s: signal.signal(s, lambda _s, _f: app.exit()) for s in (signal.SIGTERM,
                                                                    signal.SIGHUP)}
    try:
        app.run()
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        feeder.close()
    if feeder.error is not None and not isinstance(feeder.error, KeyboardInterrupt):
        err = feeder.error
        if isinstance(err, MdtraceError):
            raise err
        raise MdtraceError(f"top: event source failed: {err}") from None
