"""One live session for `mdtrace run`, `mdtrace top` and `mdtrace exporter`.

A session owns the live producers: the source (bcc, else the sysfs poller), the sysfs
progress sampler (the position evidence F10 needs on md arrays, which the probes see only
when md_check_recovery runs) and the kernel-log reader (F11: a dead md thread leaves no
probe hit).  It also owns one engine under one lock and one tick policy: the engine advances
to CLOCK_MONOTONIC (the clock bpf_ktime_get_ns stamps events with) every ``tick_s`` whether
events arrive or not, so time-based findings (grace periods, the F7 threshold, F10 stalls,
F9 cycles) fire on a quiet array in every front end alike.

Front ends only read: ``snapshot()``/``version()``/``extra()`` (exporter), ``poll()`` and
``frame_lock`` (TUI); ``on_findings`` receives the findings each event raises and, every
tick, all of them (a finding that ended is not returned by the engine; run prints both).

A hang that began before the session is found by :func:`prime` (the diagnose snapshot, fed
before the probes are compiled) and followed by the session's re-scans of blocked tasks.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from mdtrace.engine.model import Finding, Snapshot
from mdtrace.events import Event
from mdtrace.privileges import drop_after_attach

_END = object()


def prime(engine: Any, watch: Any, clock: Callable[[], int] = time.monotonic_ns,
          warn: Callable[[str], None] | None = None) -> list[Finding]:
    """Feed the start-up snapshot (sources/snapshot/watch.py) to ``engine`` and advance it
    to now: what already hangs is found before any probe is compiled (60-130 s under TCG).
    A snapshot that cannot be read is a warning; the live session goes on without it."""
    try:
        events = watch.startup()
    except OSError as exc:
        if warn is not None:
            warn(f"mdtrace: warning: start-up snapshot not read ({exc}); only what happens "
                 "from now on is traced")
        return []
    for ev in events:
        engine.feed(ev)
    engine.advance(clock())
    return list(engine.findings)


class LiveSession:
    def __init__(self, source: Any, engine: Any, *, tick_s: float = 1.0,
                 progress_s: float = 1.0, kernel_log: bool = True, sysfs_root: str = "/",
                 keep: int = 2000, warn: Callable[[str], None] | None = None,
                 on_findings: Callable[[list[Finding]], None] | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, watch: Any = None,
                 rescan_s: float = 2.0) -> None:
        if tick_s <= 0:
            raise ValueError("tick_s must be > 0")
        self.source, self.engine = source, engine
        self.tick_s, self.progress_s = tick_s, progress_s
        self.kernel_log, self.sysfs_root = kernel_log, sysfs_root
        self._warn = warn or (lambda m: None)
        self._on_findings = on_findings or (lambda fs: None)
        self._clock = clock
        self.live = True
        self.stop = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.events = 0
        self._q: queue.Queue[Any] = queue.Queue(maxsize=100_000)
        self._lock = threading.RLock()
        self._recent: deque[Event] = deque(maxlen=keep)
        self._version = 0
        self._threads: list[threading.Thread] = []
        self.watch, self.rescan_s = watch, rescan_s

    @property
    def source_name(self) -> str:
        return str(getattr(self.source, "name", "") or "live")

    # -- running ------------------------------------------------------------------------------
    def start(self) -> None:
        from mdtrace.commands._live import start_progress_sampler
        from mdtrace.sources.kmsg import start_kmsg_reader

        self._spawn(self._produce, "mdtrace-source")
        if self.source_name != "sysfs" and self.progress_s > 0:
            start_progress_sampler(self.stop, self._q.put, self.progress_s, self.sysfs_root)
        if self.kernel_log:
            start_kmsg_reader(self.stop, self._q.put, warn=self._warn)
        if self.watch is not None and self.rescan_s > 0:
            self._spawn(self._rescan, "mdtrace-tasks")
        self._spawn(self._consume, "mdtrace-engine")
        # least privilege from here on: this thread and those it starts keep only what BPF
        # map reads need (the exporter's HTTP threads, started later, confine themselves)
        self.privileges = drop_after_attach(self.source_name == "bcc")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        th = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(th)
        th.start()

    def _produce(self) -> None:
        try:
            for ev in self.source.events(self.stop):
                self._q.put(ev)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, then the command
            self._q.put(exc)
        finally:
            self._q.put(_END)

    def _rescan(self) -> None:
        """Blocked tasks re-scanned (the waits that began before the probes existed, and the
        kinds no probe sees: sb_wait, barriers, stop_sync_thread); an unreadable /proc ends
        the re-scans quietly."""
        while not self.stop.wait(self.rescan_s):
            try:
                events = self.watch.rescan()
            except OSError:
                return
            for ev in events:
                self._q.put(ev)

    def _consume(self) -> None:
        last_tick = time.monotonic()
        try:
            while True:
                try:
                    item = self._q.get(timeout=min(self.tick_s, 0.25))
                except queue.Empty:
                    item = None
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                if item is not None:
                    with self._lock:
                        new = self.engine.feed(item)
                        self._recent.append(item)
                        self.events += 1
                        self._version += 1
                        if new:
                            self._on_findings(new)
                if time.monotonic() - last_tick >= self.tick_s:
                    last_tick = time.monotonic()
                    self.tick()
        except BaseException as exc:  # noqa: BLE001 - surfaced by the command, one line
            self.error = exc
        finally:
            self.stop.set()
            self.done.set()

    def tick(self) -> None:
        """Advance the engine to now (also called by the consumer every ``tick_s``)."""
        with self._lock:
            self.engine.advance(self._clock())
            self._version += 1
            self._on_findings(self.engine.findings)   # all: ended ones are not "returned"

    def close(self) -> None:
        """Stop the producers, detach the source (probes), a last tick and the engine's finish."""
        self.stop.set()
        for th in self._threads:
            th.join(timeout=5)
        close = getattr(self.source, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - detaching is best effort at exit
                pass
        if self.error is None:
            with self._lock:
                self.engine.advance(self._clock())
                self.engine.finish()
                self._on_findings(self.engine.findings)

    # -- reading (any thread) -----------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self._lock:
            snap: Snapshot = self.engine.snapshot()
            return snap

    def findings(self) -> list[Finding]:
        with self._lock:
            return list(self.engine.findings)

    def version(self) -> int:
        return self._version

    def poll(self, since: int) -> tuple[Snapshot, list[Event], int]:
        """The TUI's view: snapshot, events newer than sequence ``since``, new sequence."""
        from mdtrace.frontends.tui.feed import events_since

        with self._lock:
            return self.engine.snapshot(), events_since(self._recent, self.events, since), \
                self.events

    @property
    def frame_lock(self) -> threading.RLock:
        return self._lock

    def health(self) -> dict[str, Any]:
        h = getattr(self.source, "health", None)
        try:
            return dict(h() or {}) if h is not None else {}
        except Exception:  # noqa: BLE001 - health is best effort
            return {}

    def extra(self) -> Any:
        from mdtrace.frontends.exporter.collector import ExtraHealth

        h = self.health()
        return ExtraHealth(lost=int(h.get("lost", 0) or 0),
                           bad_lines=int(h.get("bad_lines", 0) or 0),
                           replay_done=False, replay_loops=0, source=self.source_name)
