"""Helpers shared by the report renderers: labels, relative times, the ASCII timeline strip."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from mdtrace.clock import wall_at
from mdtrace.engine.model import ArrayView, Finding
from mdtrace.frontends.report.build import LANES, ArrayTimeline, IoSpan, ReportModel

# One character per lifecycle state in the ASCII strip (legend printed with it).
STATE_CHARS: dict[str, str] = {
    "idle": ".", "needed": "n", "running": "r", "syncing": "S", "done": "D", "reaped": "x",
    "stopped": "_", "unknown": "?",
}
STRIP_LANES = ("NEEDED", "RUNNING", "RESHAPE", "DONE", "INTR", "FROZEN", "WAIT", "sync thread",
               "md suspended", "read-only")


def array_label(view: ArrayView | None, name: str) -> str:
    if view is not None and view.dm_name:
        return f"{name} ({view.dm_name})"
    return name


def rel_s(model: ReportModel, ns: int) -> float:
    """Seconds since the trace start (its first event): the one origin of every time shown,
    the same as ``mdtrace replay`` and ``mdtrace top --replay``."""
    return (ns - model.first_ns) / 1e9 if model.first_ns else 0.0


def wall(model: ReportModel, ns: int) -> str:
    """``23:32:48`` UTC wall time of ``ns`` (trace start from the header + offset), or ''."""
    t0 = model.wall_t0()
    if t0 is None or not model.first_ns:
        return ""
    return wall_at(t0, rel_s(model, ns))


def at(model: ReportModel, ns: int) -> str:
    """'+5.379s' (and ' (23:32:48 UTC)' where the trace has a wall-clock start)."""
    w = wall(model, ns)
    return f"+{rel_s(model, ns):.3f}s" + (f" ({w} UTC)" if w else "")


@dataclass
class FindingFacts:
    """When a finding held and what ended it, in the report's words (one rule for all
    renderers)."""

    start_ns: int
    end_ns: int | None               # None: still active when the trace ended
    duration_s: float
    ended_by: str
    task: str                        # 'dd (tid 3992)' for a finding about one task's IO
    total_wait_s: float | None       # that IO's whole wait (not the wait when raised)
    state_at_start: str              # 'lifecycle syncing; flags RESHAPE,FROZEN'


def _io_of(model: ReportModel, f: Finding) -> IoSpan | None:
    tl = model.timelines.get(f.array)
    if tl is None:
        return None
    for io_id, io in tl.ios.items():
        if f.key.endswith(":" + io.io_id) or f.key.endswith(":" + io_id):
            return io
    return None


def state_at(tl: ArrayTimeline | None, ns: int) -> tuple[str, list[str]]:
    """(lifecycle, flag lanes set) of the array at ``ns`` from its recorded change points."""
    if tl is None:
        return "", []
    life = ""
    # change points at or before ns: the (ns + 1,) 1-tuple sorts before every (ns + 1, v) pair
    # and after every (ns, v) (bisect's key= is Python 3.10+)
    i = bisect_left(tl.lifecycle, (ns + 1,))
    if i:
        life = tl.lifecycle[i - 1][1]
    flags: list[str] = []
    j = bisect_left(tl.mask, (ns + 1,))
    if j:
        m = tl.mask[j - 1][1]
        flags = [name for name, bit in LANES if m & bit]
    return life, flags


def _state_words(life: str, flags: list[str]) -> str:
    return f"lifecycle {life or '?'}; flags {','.join(flags) or '-'}"


def _ended_by(model: ReportModel, f: Finding, io: IoSpan | None) -> str:
    if f.end_ns is None:
        return "still active when the trace ended" if model.kind == "report" else "active now"
    end = f.end_ns
    if io is not None and io.done and abs(io.end_ns - end) <= 1_000_000:
        who = f"{io.comm or 'task'}, tid {io.tid}"
        return f"the IO completed ({who}) after {fmt_dur((io.end_ns - io.start_ns) / 1e9)}"
    tl = model.timelines.get(f.array)
    for ts, state in (tl.lifecycle if tl is not None else []):
        if ts == end and state == "stopped":
            return f"the array {f.array} was stopped"
    if end >= model.last_ns:
        return "the trace ended (the condition no longer held at its last event)"
    before, after = state_at(tl, end - 1), state_at(tl, end)
    if after[0] == "unknown" and before[0] not in ("", "unknown"):
        return f"{f.array} was created again (a new generation, e.g. a dm table reload)"
    changes = []
    if before[0] != after[0] and after[0]:
        changes.append(f"lifecycle {before[0] or '?'} -> {after[0]}")
    gone = [x for x in before[1] if x not in after[1]]
    new = [x for x in after[1] if x not in before[1]]
    changes += [f"{x} cleared" for x in gone] + [f"{x} set" for x in new]
    if changes:
        return "the condition went away: " + ", ".join(changes)
    return "the condition went away (no state change of the array at that moment)"


def finding_facts(model: ReportModel, f: Finding) -> FindingFacts:
    io = _io_of(model, f)
    end = f.end_ns if f.end_ns is not None else model.last_ns
    task, total = "", None
    if io is not None:
        task = f"{io.comm or 'task'} (tid {io.tid})"
        total = (io.end_ns - io.start_ns) / 1e9 if io.done else (model.last_ns - io.start_ns) / 1e9
    return FindingFacts(
        start_ns=f.start_ns, end_ns=f.end_ns, duration_s=max(0, end - f.start_ns) / 1e9,
        ended_by=_ended_by(model, f, io), task=task, total_wait_s=total,
        state_at_start=_state_words(*state_at(model.timelines.get(f.array), f.start_ns)))


_SEVERITY = {"info": 0, "warning": 1, "critical": 2}


def array_state_line(model: ReportModel, name: str) -> str:
    """The array's state at the start of its most severe finding (the problem state; the
    earliest of equals), or '' when it has none."""
    tl = model.timelines.get(name)
    mine = array_findings(model, name)
    if mine and tl is not None:
        f = min(mine, key=lambda x: (-_SEVERITY.get(str(x.severity), 0), x.start_ns))
        return f"during {f.code} (from +{rel_s(model, f.start_ns):.3f}s): " + \
            _state_words(*state_at(tl, f.start_ns))
    return ""


def fmt_dur(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f}h"
    if s >= 120:
        return f"{s / 60:.1f}min"
    return f"{s:.3g}s" if s < 10 else f"{s:.1f}s"


def finding_end(model: ReportModel, f: Finding) -> int:
    return f.end_ns if f.end_ns is not None else model.last_ns


def array_findings(model: ReportModel, name: str) -> list[Finding]:
    return [f for f in model.findings if f.array == name]


def _cols(t0: int, t1: int, width: int, a: int, b: int) -> range:
    """Columns touched by the interval [a, b] on a ``width``-column axis over [t0, t1]."""
    span = max(t1 - t0, 1)
    c0 = max(0, min(width - 1, (a - t0) * width // span))
    c1 = max(0, min(width - 1, (max(b, a) - t0) * width // span))
    return range(c0, c1 + 1)


def text_strip(model: ReportModel, tl: ArrayTimeline, width: int = 64,
               label_w: int = 14) -> list[str]:
    """A compact ASCII timeline: lifecycle row, flag lanes that were ever set, dm suspend,
    blocked IO count, one row per finding (``*`` start, ``=`` while active)."""
    t0, t1 = model.first_ns, model.last_ns
    rows: list[str] = []
    head = f"+{fmt_dur(0.0)}".ljust(width // 2) + f"+{fmt_dur(rel_s(model, t1))}".rjust(
        width - width // 2)
    rows.append(" " * label_w + head)
    # lifecycle: the state covering most of each column
    best = [(0, " ")] * width
    for a, b, state in tl.lifecycle_spans(t1):
        ch = STATE_CHARS.get(state, "?")
        span = max(t1 - t0, 1)
        for c in _cols(t0, t1, width, a, b):
            lo = t0 + c * span // width
            hi = t0 + (c + 1) * span // width
            cover = max(0, min(b, hi) - max(a, lo)) + 1
            if cover > best[c][0]:
                best[c] = (cover, ch)
    rows.append("lifecycle".ljust(label_w) + "".join(ch for _, ch in best))
    lanes = tl.lane_spans(t1)
    for name in STRIP_LANES:
        spans = lanes.get(name)
        if spans:
            rows.append(name[:label_w - 1].ljust(label_w) + _fill(t0, t1, width, spans, "#"))
    dm = tl.dm_spans(t1)
    if dm:
        rows.append("dm suspended".ljust(label_w) + _fill(t0, t1, width, dm, "#"))
    if tl.ios:
        counts = [0] * width
        for io in tl.ios.values():
            for c in _cols(t0, t1, width, io.start_ns, io.end_ns if io.done else t1):
                counts[c] += 1
        rows.append("blocked IO".ljust(label_w) + "".join(
            "-" if n == 0 else str(n) if n < 10 else "+" for n in counts))
    for f in array_findings(model, tl.name):
        line = ["-"] * width
        for c in _cols(t0, t1, width, f.start_ns, finding_end(model, f)):
            line[c] = "="
        line[_cols(t0, t1, width, f.start_ns, f.start_ns)[0]] = "*"
        rows.append(f"{f.code}".ljust(label_w) + "".join(line))
    return rows


def _fill(t0: int, t1: int, width: int, spans: list[tuple[int, int]], ch: str) -> str:
    line = ["-"] * width
    for a, b in spans:
        for c in _cols(t0, t1, width, a, b):
            line[c] = ch
    return "".join(line)


STRIP_LEGEND = ("lifecycle: . idle  n needed  r running  S syncing  D done  x reaped  "
                "_ stopped  ? unknown;  # flag set;  digits: IOs blocked;  * finding start, "
                "= finding active")


BLOCKED_COLUMNS = ("pid", "comm", "state", "blocked", "array", "waits for", "stack")


def blocked_rows(model: ReportModel) -> list[tuple[str, ...]]:
    """The snapshot's blocked tasks (``task_blocked``) as table rows, longest blocked first;
    the engine's reading of each stack ('not recognised' for stacks no rule knows)."""
    rows: list[tuple[str, ...]] = []
    tasks = sorted(model.snapshot.blocked_tasks,
                   key=lambda b: (-(b.blocked_s or 0.0), b.tid))
    for b in tasks:
        blocked = "?" if b.blocked_s is None else fmt_dur(b.blocked_s)
        if b.timed_wait and b.blocked_s is not None:
            blocked += " since a timed wake-up"     # the IO may be older (tasks.TIMED_IO_WAITS)
        stack = " <- ".join(b.frames[:8]) if b.frames else (
            f"wchan {b.wchan}" if b.wchan else "(stack unreadable)")
        array = b.array + (f" ({b.tie})" if b.tie else "") if b.array else "?"
        rows.append((str(b.tid), b.comm, b.state, blocked, array, b.what, stack))
    return rows
