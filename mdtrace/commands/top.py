"""`mdtrace top`: live terminal UI, or the same UI over a replayed trace."""

from __future__ import annotations

import signal
from typing import Any

import click

from mdtrace.commands._live import snapshot_option
from mdtrace.errors import EnvironmentProblem, MdtraceError


def _engine_class() -> type:
    """The engine class, checked before any source is opened (no half-started probes)."""
    try:
        from mdtrace.engine.core import Engine
    except ImportError as exc:
        raise MdtraceError(f"top: diagnosis engine not available ({exc}); "
                           "reinstall mdtrace (bash scripts/bootstrap.sh)") from None
    return Engine


def _engine(mode: str, kernel: str) -> object:
    return _engine_class()(mode=mode, kernel=kernel)


@click.command(name="top")
@click.option("--replay", "replay", type=click.Path(dir_okay=False), default=None,
              help="Replay a recorded trace instead of tracing live.")
@click.option("--speed", type=float, default=None,
              help="Replay speed: N trace-seconds per second (default: as fast as possible).")
@snapshot_option
def command(replay: str | None, speed: float | None, snapshot: bool) -> None:
    """Live terminal UI (or over a replayed trace)."""
    from mdtrace.frontends.tui.app import TopApp
    from mdtrace.frontends.tui.feed import Feeder

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
        engine = _engine("replay", kernel)
        live = False
        notes: list[str] = []
    else:
        try:
            from mdtrace.commands._live import open_live_source
        except ImportError:
            raise EnvironmentProblem("top: no live source available in this install; "
                                     "run 'mdtrace doctor', or use --replay TRACE") from None
        from mdtrace.commands._live import running_kernel, startup_watch
        from mdtrace.live import LiveSession, prime

        warnings: list[str] = []
        engine = _engine("live", running_kernel())
        watch = startup_watch() if snapshot else None
        if watch is not None:      # what already hangs is on the first screen
            prime(engine, watch, warn=warnings.append)
        source = open_live_source(warn=warnings.append)
        getattr(engine, "set_mode", lambda m: None)(str(getattr(source, "name", "bcc")))
        live = True
    feeder: Any
    if live:
        # the same session as `mdtrace run`: ticks on monotonic time, sysfs progress, kmsg
        feeder = LiveSession(source, engine, warn=warnings.append, watch=watch)
    else:
        feeder = Feeder(source, engine, live=False)
    feeder.start()
    if live:
        notes = [w.removeprefix("mdtrace: warning: ") for w in warnings]
    app = TopApp(feeder.poll, is_done=feeder.done.is_set, frame_lock=feeder.frame_lock,
                 notes=notes)
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
