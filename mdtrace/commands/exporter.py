"""`mdtrace exporter`: serve the engine's view as Prometheus metrics, live or over a replay.

Live mode opens the same source as `mdtrace run` (bcc probes, else sysfs polling with a
warning); `--replay TRACE` serves a recorded trace (demos, tests), paced with `--speed`,
repeated with `--loop`.  Listens on loopback by default: metrics name arrays and kernel
state, so exposing them is an explicit choice (`--listen 0.0.0.0:PORT`, ideally with TLS
and basic auth).
"""

from __future__ import annotations

import threading

import click

from mdtrace.commands._live import live_options
from mdtrace.errors import MdtraceError


@click.command(name="exporter")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Address to serve /metrics on.  [default: 127.0.0.1:10820]")
@click.option("--replay", "replay", type=click.Path(dir_okay=False), default=None,
              help="Serve a recorded trace instead of tracing live.")
@click.option("--speed", type=float, default=None,
              help="Replay speed: N trace-seconds per second (default: as fast as possible).")
@click.option("--loop", is_flag=True, help="With --replay: start over when the trace ends.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None,
              help="Serve HTTPS with this PEM certificate (needs --tls-key).")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None,
              help="PEM private key of --tls-cert.")
@click.option("--tls-client-ca", type=click.Path(dir_okay=False), default=None,
              help="Require client certificates signed by this CA (mutual TLS).")
@click.option("--basic-auth-file", type=click.Path(dir_okay=False), default=None,
              help="Require HTTP basic auth: lines of USER:BCRYPT_HASH (htpasswd -nB USER).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@live_options
def command(listen: str | None, replay: str | None, speed: float | None, loop: bool,
            tls_cert: str | None, tls_key: str | None, tls_client_ca: str | None,
            basic_auth_file: str | None, duration: float | None, prefer: str, locks: bool,
            locks_full: bool, io_threshold_ms: float, config_path: str | None,
            thresholds: tuple[str, ...], interval: float, sysfs_root: str,
            snapshot: bool) -> None:
    """Prometheus exporter (live or replayed trace)."""
    from mdtrace.commands._live import start_timer, stop_on_signals
    from mdtrace.config import load_config
    from mdtrace.frontends.exporter import build_app
    from mdtrace.frontends.exporter.feed import ExporterFeeder, Feed
    from mdtrace.frontends.exporter.server import (
        DEFAULT_LISTEN,
        BasicAuth,
        ExporterServer,
        TlsFiles,
        parse_listen,
    )

    if speed is not None and speed <= 0:
        raise MdtraceError(f"exporter: --speed {speed:g} must be > 0 (omit it for full speed)")
    if loop and replay is None:
        raise MdtraceError("exporter: --loop needs --replay TRACE")
    if (tls_cert is None) != (tls_key is None):
        raise MdtraceError("exporter: --tls-cert and --tls-key go together")
    if tls_client_ca and not tls_cert:
        raise MdtraceError("exporter: --tls-client-ca needs --tls-cert and --tls-key")
    if interval <= 0:
        raise MdtraceError(f"exporter: --interval {interval:g} must be > 0")
    host, port = parse_listen(listen or DEFAULT_LISTEN)
    tls = TlsFiles(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
    auth = BasicAuth.from_file(basic_auth_file) if basic_auth_file else None
    cfg = load_config(config_path, thresholds)

    from mdtrace.engine.core import Engine

    # bind first: a bad address or a busy port fails before any trace is read or probe loaded
    server = ExporterServer(host, port, None, tls)

    feeder: Feed
    if replay is not None:
        from mdtrace.sources.replay import ReplaySource
        from mdtrace.trace import TraceError

        def open_source() -> ReplaySource:
            try:
                return ReplaySource(replay, speed=speed)
            except (OSError, TraceError) as exc:
                raise MdtraceError(f"exporter: cannot read trace {replay}: {exc}; give a file "
                                   "written by `mdtrace record`") from None

        def make_engine(src: ReplaySource) -> Engine:
            return Engine(cfg, mode="replay", kernel=str(src.header.kernel or ""))

        try:
            feeder = ExporterFeeder(open_source, make_engine, live=False, loop=loop)
        except BaseException:
            server.stop()
            raise
        what = f"replay of {replay}" + (f" at {speed:g}x" if speed else "")
    else:
        from mdtrace.commands._live import (
            live_bcc_kwargs,
            open_live_source,
            running_kernel,
            startup_watch,
        )
        from mdtrace.live import LiveSession, prime

        warn = lambda m: click.echo(m, err=True)  # noqa: E731
        engine = Engine(cfg, mode="live", kernel=running_kernel(sysfs_root))
        watch = startup_watch(sysfs_root) if snapshot else None
        try:
            if watch is not None:   # the first scrape shows what already hangs
                prime(engine, watch, warn=warn)
            src = open_live_source(prefer=prefer, sysfs_root=sysfs_root,
                                   **live_bcc_kwargs(dict(
                                       locks=locks, locks_full=locks_full,
                                       io_threshold_ms=io_threshold_ms,
                                       config_path=config_path, thresholds=thresholds)))
        except BaseException:
            server.stop()
            raise
        if getattr(src, "name", "") == "sysfs":
            src.interval = interval
        engine.set_mode(str(getattr(src, "name", "live")))
        # the same session as `mdtrace run`: monotonic ticks, sysfs progress, kernel log
        feeder = LiveSession(src, engine, tick_s=interval, progress_s=interval,
                             sysfs_root=sysfs_root, warn=warn, watch=watch)
        what = f"live, {getattr(src, 'name', '?')} source"

    server.set_app(build_app(feeder, auth))
    stop = threading.Event()
    with stop_on_signals(stop):
        start_timer(stop, duration)
        feeder.start()
        server.start()
        click.echo(f"mdtrace: exporter serving {server.url} ({what}); Ctrl-C to stop", err=True)
        try:
            while not stop.wait(0.2):
                if feeder.error is not None or (feeder.live and feeder.done.is_set()):
                    break
        finally:
            server.stop()
            feeder.close()
    err = feeder.error
    if err is not None and not isinstance(err, KeyboardInterrupt):
        if isinstance(err, MdtraceError):
            raise err
        raise MdtraceError(f"exporter: event source failed: {type(err).__name__}: {err}")
    scrapes = server.app.scrapes if server.app is not None else 0
    click.echo(f"mdtrace: exporter stopped after {scrapes} scrapes", err=True)

