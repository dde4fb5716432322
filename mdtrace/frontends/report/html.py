"""Self-contained HTML report: one file, inline CSS and inline SVG, no script, no network.

Per array an SVG timeline on a shared time axis: the lifecycle band, one lane per recovery
flag that was ever set (plus sync thread / md suspended / read-only), dm suspend intervals,
one bar per blocked IO, the resync/reshape progress line, and one row per finding (span
while active, a marker at its start, ticks at its evidence events).  Hover titles carry the
exact times.  Every string from the trace goes through :func:`html.escape`.
"""

from __future__ import annotations

from html import escape

from mdtrace.engine.model import Finding
from mdtrace.frontends.report.build import ArrayTimeline, ReportModel
from mdtrace.frontends.report.common import (
    BLOCKED_COLUMNS,
    array_findings,
    array_label,
    array_state_line,
    at,
    blocked_rows,
    finding_end,
    finding_facts,
    fmt_dur,
    rel_s,
)

W = 980            # svg width
LABEL_W = 120      # left label column
PLOT_W = W - LABEL_W - 20
ROW = 16
MAX_IO_ROWS = 12

STATE_COLOURS: dict[str, str] = {
    "idle": "#d9d9d9", "needed": "#f6d55c", "running": "#7fb3e6", "syncing": "#2f7ed8",
    "done": "#57b26a", "reaped": "#9bd3a7", "stopped": "#555555", "unknown": "#f0f0f0",
}
LANE_COLOURS: dict[str, str] = {
    "FROZEN": "#c23b22", "WAIT": "#e08a1e", "INTR": "#d4582a", "ERROR": "#a00000",
    "DONE": "#57b26a", "NEEDED": "#f6d55c", "RUNNING": "#2f7ed8", "md suspended": "#8e44ad",
    "read-only": "#b03060", "sync thread": "#3a8fb7",
}
SEV_COLOURS = {"critical": "#c0392b", "warning": "#e67e22", "info": "#2980b9"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1600px;color:#222;padding:0 12px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:16px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}code{background:#f3f3f3;padding:0 3px;border-radius:3px}
.sev-critical{color:#c0392b;font-weight:600}.sev-warning{color:#e67e22;font-weight:600}
.sev-info{color:#2980b9}.finding{border-left:4px solid #c0392b;padding:4px 12px;margin:12px 0;
background:#fdf6f5}.finding.cleared{border-color:#999;background:#f7f7f7}
.muted{color:#777}svg{display:block;margin:6px 0 2px;width:100%;height:auto}
svg text{font:11px sans-serif}
.legend span{display:inline-block;margin-right:10px;font-size:12px}
.legend i{display:inline-block;width:12px;height:10px;margin-right:3px;vertical-align:middle}
"""


class _Axis:
    """Trace time (ns) -> x pixel on the shared axis."""

    def __init__(self, t0: int, t1: int) -> None:
        self.t0, self.t1 = t0, max(t1, t0 + 1)

    def x(self, ns: int) -> float:
        frac = (ns - self.t0) / (self.t1 - self.t0)
        return LABEL_W + max(0.0, min(1.0, frac)) * PLOT_W

    def bar(self, a: int, b: int) -> tuple[float, float]:
        x0, x1 = self.x(a), self.x(max(a, b))
        return x0, max(x1 - x0, 1.0)


def _rect(x: float, y: float, w: float, h: float, fill: str, title: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return (f'<rect{c} x="{x:.1f}" y="{y}" width="{w:.1f}" height="{h}" fill="{fill}">'
            f"<title>{escape(title)}</title></rect>")


def _label(y: float, text: str) -> str:
    return f'<text x="4" y="{y + 11:.0f}">{escape(text)}</text>'


def _ticks(axis: _Axis, model: ReportModel, y0: int, height: int) -> list[str]:
    dur = (axis.t1 - axis.t0) / 1e9
    step = 1.0
    for cand in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60,
                 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400):
        step = cand
        if dur / cand <= 10:
            break
    out = []
    k = 0
    base = (axis.t0 - model.first_ns) / 1e9
    while True:
        t = k * step
        if t > dur + 1e-9 or k > 50:
            break
        ns = axis.t0 + int(t * 1e9)
        x = axis.x(ns)
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + height}" '
                   f'stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{y0 - 3}" text-anchor="middle" fill="#666">'
                   f"+{escape(fmt_dur(base + t))}</text>")
        k += 1
    return out


def timeline_svg(model: ReportModel, tl: ArrayTimeline) -> str:
    """The timeline picture of one array (an ``<svg>`` element)."""
    axis = _Axis(model.first_ns, model.last_ns)
    end = model.last_ns
    parts: list[str] = []
    y = 18
    # lifecycle band
    parts.append(_label(y, "lifecycle"))
    for a, b, state in tl.lifecycle_spans(end):
        x, w = axis.bar(a, b)
        parts.append(_rect(x, y, w, ROW, STATE_COLOURS.get(state, "#ccc"),
                           f"{state}: +{rel_s(model, a):.3f}s .. +{rel_s(model, b):.3f}s",
                           f"state state-{state}"))
    y += ROW + 6
    # flag lanes
    for lane, spans in tl.lane_spans(end).items():
        parts.append(_label(y - 2, lane))
        parts.append(f'<line x1="{LABEL_W}" y1="{y + 6}" x2="{LABEL_W + PLOT_W}" '
                     f'y2="{y + 6}" stroke="#f0f0f0"/>')
        colour = LANE_COLOURS.get(lane, "#6c8ebf")
        for a, b in spans:
            x, w = axis.bar(a, b)
            parts.append(_rect(x, y + 1, w, ROW - 6, colour,
                               f"{lane}: +{rel_s(model, a):.3f}s .. +{rel_s(model, b):.3f}s",
                               "lane"))
        y += ROW - 2
    dm = tl.dm_spans(end)
    if dm:
        parts.append(_label(y - 2, "dm suspended"))
        for a, b in dm:
            x, w = axis.bar(a, b)
            parts.append(_rect(x, y + 1, w, ROW - 6, "#6d4c41",
                               f"dm suspended: +{rel_s(model, a):.3f}s .. "
                               f"+{rel_s(model, b):.3f}s", "dm-suspend"))
        y += ROW - 2
    # progress line
    if len(tl.progress) >= 2:
        y += 4
        parts.append(_label(y + 4, "progress"))
        h = 26
        runs: list[list[str]] = [[]]
        prev = -1
        for ts, done, total in tl.progress:
            if done < prev and runs[-1]:      # a new sync run: do not join across the gap
                runs.append([])
            prev = done
            frac = min(done / total, 1.0) if total else 0.0
            runs[-1].append(f"{axis.x(ts):.1f},{y + h - frac * h:.1f}")
        parts.append(f'<rect x="{LABEL_W}" y="{y}" width="{PLOT_W}" height="{h}" fill="none" '
                     f'stroke="#eee"/>')
        for run in runs:
            parts.append(f'<polyline class="progress" points="{" ".join(run)}" fill="none" '
                         f'stroke="#2f7ed8" stroke-width="1.2"><title>sync/reshape progress '
                         f"(fraction of the array)</title></polyline>")
        y += h + 6
    # blocked IO bars (longest first)
    if tl.ios:
        ios = sorted(tl.ios.values(), key=lambda i: i.start_ns - (i.end_ns if i.done else end))
        parts.append(_label(y - 2, f"blocked IO ({len(ios)})"))
        for io in ios[:MAX_IO_ROWS]:
            b = io.end_ns if io.done else end
            x, w = axis.bar(io.start_ns, b)
            state = "completed" if io.done else "still blocked at end of trace"
            parts.append(_rect(
                x, y + 1, w, 6, "#e74c3c" if not io.done else "#f1948a",
                f"{io.comm or 'task'} tid {io.tid} {io.rw} sector {io.sector}+{io.sectors} "
                f"({io.mode or '?'}): blocked {fmt_dur((b - io.start_ns) / 1e9)} from "
                f"+{rel_s(model, io.start_ns):.3f}s, {state}", "io-wait"))
            y += 8
        if len(ios) > MAX_IO_ROWS:
            parts.append(f'<text x="{LABEL_W}" y="{y + 9}" fill="#777">'
                         f"... {len(ios) - MAX_IO_ROWS} more blocked IOs</text>")
            y += 12
        y += 6
    # findings: span, start marker, evidence ticks
    for f in array_findings(model, tl.name):
        parts.extend(_finding_row(model, axis, f, y))
        y += ROW + 2
    height = y + 6
    grid = _ticks(axis, model, 14, height - 14)
    label = escape(f"timeline of {tl.name}")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{W}" '
            f'height="{height}" viewBox="0 0 {W} {height}" role="img" aria-label="{label}">'
            + "".join(grid) + "".join(parts) + "</svg>")


def _finding_row(model: ReportModel, axis: _Axis, f: Finding, y: int) -> list[str]:
    colour = SEV_COLOURS.get(str(f.severity), "#c0392b")
    fend = finding_end(model, f)
    x, w = axis.bar(f.start_ns, fend)
    state = "active at end of trace" if f.active else f"ended +{rel_s(model, fend):.3f}s"
    code = escape(f.code)
    out = [_label(y, f"{f.code} {f.severity}"),
           f'<g class="finding-marker" data-code="{code}">',
           _rect(x, y + 4, w, ROW - 8, colour, f"{f.code} {f.title}: from "
                 f"+{rel_s(model, f.start_ns):.3f}s, {state}", "finding-span"),
           f'<polygon points="{x:.1f},{y + ROW - 1} {x - 5:.1f},{y} {x + 5:.1f},{y}" '
           f'fill="{colour}"><title>{escape(f.code)} starts +{rel_s(model, f.start_ns):.3f}s'
           f": {escape(f.title)}</title></polygon>"]
    for e in f.evidence:
        ex = axis.x(e.ts)
        out.append(f'<line class="evidence" x1="{ex:.1f}" y1="{y}" x2="{ex:.1f}" '
                   f'y2="{y + ROW}" stroke="#222" stroke-width="1"><title>'
                   f"{escape(e.kind)} +{rel_s(model, e.ts):.3f}s by {escape(e.comm or '?')}/"
                   f"{e.tid}</title></line>")
    out.append("</g>")
    return out


def _rich(s: object) -> str:
    """Escaped prose with `code spans` shown as <code> (remedies quote commands that way);
    unbalanced backticks stay literal."""
    parts = str(s).split("`")
    if len(parts) % 2 == 0:
        return escape(str(s))
    return "".join(f"<code>{escape(p)}</code>" if i % 2 else escape(p)
                   for i, p in enumerate(parts))


def _legend() -> str:
    items = [f'<span><i style="background:{c}"></i>{escape(s)}</span>'
             for s, c in STATE_COLOURS.items()]
    items += [f'<span><i style="background:{c}"></i>{escape(s)}</span>'
              for s, c in (("flag set", "#6c8ebf"), ("FROZEN", "#c23b22"),
                           ("dm suspended", "#6d4c41"), ("blocked IO", "#e74c3c"),
                           ("finding", "#c0392b"))]
    return '<div class="legend">' + "".join(items) + "</div>"


def render(model: ReportModel) -> str:
    snap = model.snapshot
    h = model.header
    e = escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>mdtrace {e(model.kind)}: {e(model.path)}</title>",
           f"<style>{CSS}</style></head><body>",
           f"<h1>mdtrace {e(model.kind)}</h1><p><code>{e(model.path)}</code></p>",
           *[f'<p class="muted">note: {e(n)}</p>' for n in model.notes],
           "<table><tr><th>kernel</th><td>" + e(h.kernel) + "</td><th>source</th><td>"
           + e(h.source) + f"</td></tr><tr><th>events</th><td>{model.events_read}</td>"
           f"<th>duration</th><td>{e(fmt_dur(rel_s(model, model.last_ns)))}</td></tr>"
           f"<tr><th>arrays</th><td>{len(snap.arrays)}</td><th>findings</th>"
           f"<td>{len(snap.findings)}</td></tr>"
           + (f"<tr><th>bad lines</th><td colspan=3>{model.bad_lines} skipped</td></tr>"
              if model.bad_lines else "") + "</table>",
           "<h2>Findings</h2>"]
    if snap.findings:
        out.append("<table><tr><th>code</th><th>severity</th><th>state</th><th>array</th>"
                   "<th>start</th><th>end</th><th>duration</th><th>title</th></tr>")
        for i, f in enumerate(snap.findings, 1):
            sev = e(str(f.severity))
            out.append(f'<tr><td><a href="#finding-{i}">{e(f.code)}</a></td>'
                       f'<td class="sev-{sev}">{sev}</td>'
                       f"<td>{'ACTIVE' if f.active else 'ended'}</td>"
                       f'<td><a href="#array-{e(f.array)}">{e(f.array)}</a></td>'
                       f"<td>+{rel_s(model, f.start_ns):.3f}s</td><td>"
                       + ("-" if f.end_ns is None else f"+{rel_s(model, f.end_ns):.3f}s")
                       + f"</td><td>{e(fmt_dur(finding_facts(model, f).duration_s))}</td>"
                       f"<td>{e(f.title)}</td></tr>")
        out.append("</table>")
        for i, f in enumerate(snap.findings, 1):
            cls = "finding" + ("" if f.active else " cleared")
            out.append(f'<div class="{cls}" id="finding-{i}"><h3>[{e(f.code)}] {e(f.title)} '
                       f"on {e(f.array)}</h3>")
            x = finding_facts(model, f)
            if model.kind == "report":
                until = at(model, f.end_ns) if f.end_ns is not None else "the end of the trace"
                out.append(f"<p><b>When:</b> {e(at(model, f.start_ns))} .. {e(until)}, "
                           f"{e(fmt_dur(x.duration_s))}; <b>ended:</b> {_rich(x.ended_by)}</p>"
                           f"<p><b>State at the start:</b> {e(x.state_at_start)}</p>")
            if x.task:
                wait = f", waited {fmt_dur(x.total_wait_s)} in all" if x.total_wait_s else ""
                out.append(f"<p><b>Task:</b> {e(x.task + wait)}</p>")
            out.append(f"<p><b>Why:</b> {_rich(f.explanation)}</p>")
            if f.fix:
                out.append(f"<p><b>Kernel fix:</b> {_rich(f.fix)}</p>")
            out.append(f"<p><b>Do now:</b> {_rich(f.remedy)}</p>")
            if f.details:
                out.append("<p class=muted>" + ", ".join(
                    f"{e(str(k))}={e(str(v))}" for k, v in f.details.items()) + "</p>")
            if f.evidence:
                out.append("<details><summary>evidence events "
                           f"({len(f.evidence)})</summary><table><tr><th>time</th>"
                           "<th>event</th><th>task</th><th>recovery flags</th></tr>")
                for ev in f.evidence:
                    flags = ",".join(ev.state.recovery_names()) if ev.state else ""
                    out.append(f"<tr><td>+{rel_s(model, ev.ts):.6f}s</td><td>{e(ev.kind)}</td>"
                               f"<td>{e(ev.comm)}/{ev.tid}</td><td>{e(flags)}</td></tr>")
                out.append("</table></details>")
            out.append("</div>")
    else:
        out.append("<p>No findings.</p>")
    rows = blocked_rows(model)
    if rows:
        out.append("<h2>Blocked tasks</h2><table><tr>"
                   + "".join(f"<th>{e(c)}</th>" for c in BLOCKED_COLUMNS) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r[:-1])
                + f"<td><code>{e(r[-1])}</code></td></tr>" for r in rows]
        out.append("</table>")
    out.append("<h2>Arrays</h2>" + _legend())
    for name in model.shown_arrays():
        a = snap.arrays[name]
        out.append(f'<section id="array-{e(name)}"><h3>{e(array_label(a, name))}</h3>'
                   "<table><tr><th>kind</th><th>level</th><th>lifecycle</th>"
                   "<th>recovery flags</th><th>sync action</th><th>blocked IO</th></tr>"
                   f"<tr><td>{e(a.kind)}</td><td>{e(a.level or '-')}</td>"
                   f"<td>{e(str(a.lifecycle))}</td><td>{e(', '.join(a.recovery) or '-')}</td>"
                   f"<td>{e(a.sync_action or '-')}</td><td>{len(a.blocked_io)}</td></tr>"
                   "</table>")
        problem = array_state_line(model, name)
        if problem:
            out.append(f"<p>State {e(problem)}; the table shows the end.</p>")
        tl = model.timelines.get(name)
        if tl is not None:
            out.append(timeline_svg(model, tl))
            if tl.thinned:
                out.append('<p class="muted">(long trace: series thinned to a bounded number'
                           " of points; short intervals may not show)</p>")
        out.append("</section>")
    out.append('<p class="muted">Generated by mdtrace. Times are seconds since the trace '
               f"start ({e(h.created or '?')}), as in <code>mdtrace replay</code>."
               "</p></body></html>")
    return "\n".join(out) + "\n"
