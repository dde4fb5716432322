"""Helpers shared by the report renderers: labels, relative times, the ASCII timeline strip."""

from __future__ import annotations

from mdtrace.engine.model import ArrayView, Finding
from mdtrace.frontends.report.build import ArrayTimeline, ReportModel

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
    """Seconds since the first array event of the trace."""
    return (ns - model.first_ns) / 1e9 if model.first_ns else 0.0


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
    rows = []
    tasks = sorted(model.snapshot.blocked_tasks,
                   key=lambda b: (-(b.blocked_s or 0.0), b.tid))
    for b in tasks:
        blocked = "?" if b.blocked_s is None else fmt_dur(b.blocked_s)
        stack = " <- ".join(b.frames[:8]) if b.frames else (
            f"wchan {b.wchan}" if b.wchan else "(stack unreadable)")
        array = b.array + (f" ({b.tie})" if b.tie else "") if b.array else "?"
        rows.append((str(b.tid), b.comm, b.state, blocked, array, b.what, stack))
    return rows
