"""Report model: run the engine over a trace once and keep, per array, the time series that the
renderers draw (lifecycle states, recovery-flag lanes, blocked IO, dm suspend intervals).

The engine's :class:`~mdtrace.engine.model.Snapshot` only holds the *final* state plus a bounded
lifecycle history of the current array generation, so the builder observes the stream itself as
it feeds the engine.  Every series is change-point encoded and bounded (:data:`MAX_POINTS`):
past the bound a series is thinned by half, which keeps its whole time span at a coarser
resolution, so memory stays flat however long the trace is.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mdtrace.clock import wall_start
from mdtrace.config import EngineConfig
from mdtrace.engine.core import Engine
from mdtrace.engine.lifecycle import KINDS as _LIFECYCLE_KINDS
from mdtrace.engine.model import Finding, Snapshot
from mdtrace.events import ArrayState, Event, calls
from mdtrace.kernel.flags import Recovery
from mdtrace.trace import TraceHeader, TraceReader

if TYPE_CHECKING:
    from mdtrace.sources.snapshot import Collected

MAX_POINTS = 4096        # per series; thinned by half beyond this
MAX_IOS = 512            # blocked IO intervals kept per array (longest kept when over)

# Pseudo-flags packed above the canonical Recovery bits in the per-array state mask.
SYNC_THREAD = 1 << 24
MD_SUSPENDED = 1 << 25
READ_ONLY = 1 << 26

# Lane order in timelines: lifecycle-relevant flags first, then the pseudo-flags.
# Plain ints: `int & Recovery.X` would run IntFlag's Python-level operator.
LANES: tuple[tuple[str, int], ...] = tuple((name, int(Recovery[name])) for name in (
    "NEEDED", "RUNNING", "SYNC", "RECOVER", "RESHAPE", "CHECK", "REQUESTED", "DONE", "INTR",
    "FROZEN", "WAIT", "ERROR", "LAZY_RECOVER")) + (
    ("sync thread", SYNC_THREAD), ("md suspended", MD_SUSPENDED), ("read-only", READ_ONLY))

_DM_KINDS = frozenset({"dm_suspend_exit", "dm_resume_exit", "raid_target"})


def _thin(points: list[Any]) -> None:
    """Halve a change-point list in place, keeping the first and last points."""
    last = points[-1]
    del points[1::2]
    if points[-1] is not last:
        points.append(last)


def _add_progress(tl: ArrayTimeline, ts: int, done: int, total: int) -> None:
    """Append a progress point (ts, done, total) unless equal to the last; thin past the cap."""
    pts = tl.progress
    if pts and pts[-1][1] == done and pts[-1][2] == total:
        return
    pts.append((ts, done, total))
    if len(pts) > MAX_POINTS:
        _thin(pts)


def _add_point(tl: ArrayTimeline, points: list[Any], ts: int, value: Any) -> None:
    """Append a change point (only when ``value`` changed); thin the series past the cap."""
    if not points or points[-1][1] != value:
        points.append((ts, value))
        if len(points) > MAX_POINTS:
            _thin(points)
            tl.thinned = True


@dataclass
class IoSpan:
    """One request seen blocked across the reshape position (first seen .. done/last seen)."""

    io_id: str
    start_ns: int
    end_ns: int
    done: bool
    tid: int
    comm: str
    sector: int
    sectors: int
    rw: str
    mode: str


@dataclass
class ArrayTimeline:
    """Time series of one array name (across generations: a recreated array continues it)."""

    name: str
    first_ns: int
    last_ns: int
    lifecycle: list[tuple[int, str]] = field(default_factory=list)   # change points
    mask: list[tuple[int, int]] = field(default_factory=list)        # change points
    progress: list[tuple[int, int, int]] = field(default_factory=list)  # (ts, done, total)
    dm_suspend: list[tuple[int, int | None]] = field(default_factory=list)  # [start, end)
    ios: dict[str, IoSpan] = field(default_factory=dict)
    thinned: bool = False
    events: int = 0
    last_lifecycle: object = None      # the engine's last Lifecycle seen (identity compare)
    last_state: ArrayState | None = None   # the last one seen (skip identical re-reads)

    # -- derived ------------------------------------------------------------------------------
    def lifecycle_spans(self, end_ns: int) -> list[tuple[int, int, str]]:
        """(start, end, state) segments; the last one runs to ``end_ns``."""
        out = []
        pts = self.lifecycle
        for i, (ts, state) in enumerate(pts):
            nxt = pts[i + 1][0] if i + 1 < len(pts) else max(end_ns, ts)
            out.append((ts, nxt, state))
        return out

    def lane_spans(self, end_ns: int) -> dict[str, list[tuple[int, int]]]:
        """Flag name -> [(start, end)] intervals while it was set (only lanes ever set)."""
        out: dict[str, list[tuple[int, int]]] = {}
        pts = self.mask
        for name, bit in LANES:
            spans: list[tuple[int, int]] = []
            start: int | None = None
            for ts, m in pts:
                if m & bit:
                    if start is None:
                        start = ts
                elif start is not None:
                    spans.append((start, ts))
                    start = None
            if start is not None:
                spans.append((start, max(end_ns, start)))
            if spans:
                out[name] = spans
        return out

    def dm_spans(self, end_ns: int) -> list[tuple[int, int]]:
        return [(s, e if e is not None else max(end_ns, s)) for s, e in self.dm_suspend]


@dataclass
class ReportModel:
    """Everything a renderer needs; renderers never touch the trace or the engine."""

    path: str
    header: TraceHeader
    events_read: int
    bad_lines: int
    errors: list[str]
    snapshot: Snapshot
    timelines: dict[str, ArrayTimeline]
    first_ns: int                     # the trace's start (its first event): every time's origin
    last_ns: int
    kind: str = "report"              # report | diagnose (a one-shot snapshot of this host)
    notes: list[str] = field(default_factory=list)   # what could not be read, and why
    recorder_end: dict[str, int] = field(default_factory=dict)   # the trace's end record
    abrupt_end: str = ""     # the reader's word on a trace cut short ('' when it is whole)

    @property
    def findings(self) -> list[Finding]:
        return self.snapshot.findings

    def shown_arrays(self) -> list[str]:
        """Arrays worth a section: skip dm sub-devices that only ever saw create/stop/target
        events; arrays with findings first, then by name."""
        with_findings = {f.array for f in self.findings}
        names = []
        for name, a in self.snapshot.arrays.items():
            if a.counters.keys() <= {"array_create", "array_stop", "raid_target"} \
                    and name not in with_findings:
                continue
            names.append(name)
        return sorted(names, key=lambda n: (n not in with_findings, n))

    def wall_t0(self) -> datetime | None:
        """Wall-clock time of the trace start: the header's ``created`` (UTC, whole seconds,
        written as recording began); None when the header has none."""
        return wall_start(self.header.created)


class TimelineRecorder:
    """Observes events (and the engine's per-array lifecycle) as they are fed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.timelines: dict[str, ArrayTimeline] = {}
        self.first_ns = 0
        self.last_ns = 0
        self._lifecycle_of = engine.lifecycle_of

    def observe(self, ev: Event) -> None:
        """Record what ``ev`` changed.  Called after ``engine.feed(ev)``."""
        ts = ev.ts
        if ts > self.last_ns:
            self.last_ns = ts
            if not self.first_ns:
                self.first_ns = ts      # the trace's start: the one time origin (replay's too)
        name = ev.array
        if not name:
            return
        tl = self.timelines.get(name)
        if tl is None:
            tl = self.timelines[name] = ArrayTimeline(name, ts, ts)
        tl.last_ns = ts
        tl.events += calls(ev)
        st = ev.state
        kind = ev.kind
        if st is not None and st != tl.last_state:
            tl.last_state = st
            m = st.rec if st.rec > 0 else 0
            if st.sync_thread:
                m |= SYNC_THREAD
            if st.suspended:
                m |= MD_SUSPENDED
            if st.ro:
                m |= READ_ONLY
            _add_point(tl, tl.mask, ts, m)
            if st.curr_resync > 3 and st.resync_max and (
                    not tl.progress or tl.progress[-1][1] != st.curr_resync):
                _add_progress(tl, ts, st.curr_resync, st.resync_max)
        if kind in _LIFECYCLE_KINDS:     # the engine's word on where the lifecycle moves
            cur = self._lifecycle_of(name)
            if cur is not None and cur is not tl.last_lifecycle:
                tl.last_lifecycle = cur
                _add_point(tl, tl.lifecycle, ts, str(cur))
        elif kind == "io_wait":
            self._io(tl, ev)
        elif kind == "progress":
            a = ev.args
            try:
                self._progress(tl, ts, int(a.get("done", 0)), int(a.get("total", 0)))
            except (TypeError, ValueError):
                pass
        elif kind in _DM_KINDS:
            self._dm(tl, ev)

    def _progress(self, tl: ArrayTimeline, ts: int, done: int, total: int) -> None:
        _add_progress(tl, ts, done, total)

    def _dm(self, tl: ArrayTimeline, ev: Event) -> None:
        kind = ev.kind
        if kind == "raid_target":
            hook, phase = ev.args.get("hook"), ev.args.get("phase")
            if hook == "postsuspend" and phase == "exit":
                kind = "dm_suspend_exit"
            elif hook == "resume":
                kind = "dm_resume_exit"
            else:
                return
        spans = tl.dm_suspend
        is_open = bool(spans) and spans[-1][1] is None
        if kind == "dm_suspend_exit" and not is_open:
            spans.append((ev.ts, None))
            if len(spans) > MAX_POINTS:
                del spans[: len(spans) // 2]
                tl.thinned = True
        elif kind == "dm_resume_exit" and is_open:
            spans[-1] = (spans[-1][0], ev.ts)

    def _io(self, tl: ArrayTimeline, ev: Event) -> None:
        a = ev.args
        io_id = str(a.get("io_id") or f"{ev.tid}/{a.get('sector')}")
        try:
            wait_ns = int(a.get("wait_ns", 0))
        except (TypeError, ValueError):
            wait_ns = 0
        if wait_ns < 0 or wait_ns >= 1 << 63:
            wait_ns = 0
        span = tl.ios.get(io_id)
        if span is not None and span.done:
            # io_id reused after completion: keep the old one under a unique key
            tl.ios[f"{io_id}@{span.start_ns}"] = tl.ios.pop(io_id)
            span = None
        if a.get("done"):
            if span is not None:
                span.end_ns, span.done = ev.ts, True
                span.comm = span.comm or ev.comm   # periodic scans carry no comm; completion does
            return
        if span is None:
            if len(tl.ios) >= MAX_IOS:
                # keep the longest waits: drop the shortest completed one
                victim = min(tl.ios, key=lambda k: tl.ios[k].end_ns - tl.ios[k].start_ns)
                del tl.ios[victim]
                tl.thinned = True
            try:
                sector, sectors = int(a.get("sector", 0)), int(a.get("sectors", 0))
            except (TypeError, ValueError):
                sector = sectors = 0
            tl.ios[io_id] = IoSpan(io_id, ev.ts - wait_ns, ev.ts, False, ev.tid, ev.comm,
                                   sector, sectors, str(a.get("rw", "")),
                                   str(a.get("mode", "")))
        else:
            span.end_ns = max(span.end_ns, ev.ts)
            span.start_ns = min(span.start_ns, ev.ts - wait_ns)
            span.comm = span.comm or ev.comm

    def finish(self, snap: Snapshot) -> None:
        """Fill lifecycle series the recorder could not see from the snapshot's history."""
        for name, view in snap.arrays.items():
            tl = self.timelines.get(name)
            if tl is not None and not tl.lifecycle and view.history:
                tl.lifecycle = list(view.history)


def feed_all(engine: Engine, batches: Iterable[list[Event]],
             recorder: TimelineRecorder) -> None:
    """The hot loop: engine first (so the recorder sees the post-event lifecycle)."""
    feed = engine.feed
    observe = recorder.observe
    for batch in batches:
        for ev in batch:
            feed(ev)
            observe(ev)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector around the hot loop.

    Decoded events are freed by reference counting; the collector only re-scans the
    thousands of live events of each decoded chunk (~0.3 us/event, a quarter of decoding).
    Nothing in the loop builds reference cycles, and the collector is restored after.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def build_report(path: str | os.PathLike[str], *, config: EngineConfig | None = None,
                 skip_bad: bool = False) -> ReportModel:
    """Read ``path`` through the engine and return the model every format renders.

    Raises :class:`~mdtrace.trace.TraceError` on unreadable input.
    """
    reader = TraceReader(path, skip_bad=skip_bad)
    engine = Engine(config, mode="replay", kernel=reader.header.kernel)
    recorder = TimelineRecorder(engine)
    with _no_cyclic_gc():
        feed_all(engine, reader.batches(), recorder)
    engine.finish()
    snap = engine.snapshot()
    recorder.finish(snap)
    end = reader.end_note(recorder.first_ns) or ""
    return ReportModel(
        path=str(path), header=reader.header, events_read=reader.events_read,
        bad_lines=reader.bad_lines, errors=list(reader.errors), snapshot=snap,
        timelines=recorder.timelines, first_ns=recorder.first_ns,
        last_ns=max(recorder.last_ns, snap.now_ns),
        notes=_reader_notes(end, reader.errors, reader.bad_lines) + _health_notes(snap)
        + _end_record_notes(reader.end_summary),
        abrupt_end=end, recorder_end=dict(reader.end_summary))


def _end_record_notes(summary: dict[str, int]) -> list[str]:
    """The recorder's own count of lost events (its end record), when it lost any."""
    lost = summary.get("lost_since_start", 0)
    if not lost:
        return []
    return [f"the recorder's end record: {summary.get('events', 0)} events written, {lost} "
            "lost since recording started (a rotated file may hold only part of them)"]


def _reader_notes(end: str, errors: list[str], bad: int, shown: int = 5) -> list[str]:
    """The reader's errors, said in every format: an abrupt end, the bad lines skipped."""
    notes = [end] if end else []
    notes += [f"skipped: {e}" for e in errors[:shown]]
    more = max(len(errors), bad) - shown
    if more > 0:
        notes.append(f"skipped: {more} more bad lines (the first {shown} are above)")
    return notes


def _health_notes(snap: Snapshot) -> list[str]:
    """What the recording missed, said in every format (lost events, missed probe hits)."""
    lost = snap.health.lost_summary()
    return [f"{lost}: the picture may be incomplete"] if lost else []


def build_diagnosis(collected: Collected, *, config: EngineConfig | None = None) -> ReportModel:
    """Run the engine over one snapshot (mdtrace.sources.snapshot) into a ReportModel.

    A snapshot has no duration: a task blocked *now* while the reshape cannot move is the
    evidence, so the IO-wait and wait-for-cycle persistence thresholds are 0 (blocked times
    are shown where /proc tells them).
    """
    from mdtrace.sources.snapshot import SnapshotSource
    cfg = config or EngineConfig(io_wait_s=0.0, cycle_s=0.0)
    engine = Engine(cfg, mode="snapshot", kernel=collected.kernel)
    for ev in collected.events:
        engine.feed(ev)
    engine.advance(collected.now_ns)
    snap = engine.snapshot()
    src = SnapshotSource(collected)
    times = [e.ts for e in collected.events if e.ts > 0]
    return ReportModel(
        path=f"this host ({collected.kernel or 'unknown kernel'})", header=src.header,
        events_read=len(collected.events), bad_lines=0, errors=[], snapshot=snap,
        timelines={}, first_ns=min(times, default=collected.now_ns), last_ns=collected.now_ns,
        kind="diagnose", notes=list(collected.notes))
