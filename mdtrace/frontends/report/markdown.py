"""Markdown report (for tickets and wikis): summary, findings table, finding details, one
section per array with its properties and a compact ASCII timeline in a code block."""

from __future__ import annotations

from mdtrace.frontends.report.build import ReportModel
from mdtrace.frontends.report.common import (
    BLOCKED_COLUMNS,
    STRIP_LEGEND,
    array_findings,
    array_label,
    array_state_line,
    at,
    blocked_rows,
    finding_facts,
    fmt_dur,
    rel_s,
    text_strip,
)


def _prose(s: object) -> str:
    """Markdown-safe text: ``<``/``>`` escaped outside code spans (renderers pass inline
    HTML through), left alone inside them (entities are not decoded there)."""
    parts = str(s).replace("\n", " ").split("`")
    if len(parts) % 2 == 0:          # unbalanced backticks: treat all as plain text
        parts = ["\\`".join(parts)]
    return "`".join(p if i % 2 else p.replace("&", "&amp;").replace("<", "&lt;")
                    .replace(">", "&gt;") for i, p in enumerate(parts))


def _cell(s: object) -> str:
    """Table-cell safe: as :func:`_prose`, and pipes escaped (GFM splits cells first)."""
    return _prose(s).replace("|", "\\|")


def _code(s: object) -> str:
    """Inline code span that survives backticks in trace strings."""
    text = str(s).replace("\n", " ")
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def render(model: ReportModel) -> str:
    snap = model.snapshot
    h = model.header
    out = [f"# mdtrace {model.kind}: {_code(model.path)}", "",
           f"- kernel: {_code(h.kernel)}, source: {_code(h.source)}",
           f"- {model.events_read} events over "
           f"{fmt_dur(rel_s(model, model.last_ns))}, {len(snap.arrays)} arrays, "
           f"{len(snap.findings)} findings"
           + (f", {model.bad_lines} bad lines skipped" if model.bad_lines else ""),
           *([f"- trace start {_code(h.created or '?')}; times are seconds since the trace "
              "start (as in `mdtrace replay`)"] if model.kind == "report" else []),
           *[f"- note: {_prose(n)}" for n in model.notes], ""]
    out += ["## Findings", ""]
    if snap.findings:
        out += ["| code | severity | state | array | start | end | duration | title |",
                "|---|---|---|---|---|---|---|---|"]
        for f in snap.findings:
            x = finding_facts(model, f)
            end = "-" if f.end_ns is None else f"+{rel_s(model, f.end_ns):.3f}s"
            out.append(f"| {f.code} | {f.severity} | {'ACTIVE' if f.active else 'ended'} | "
                       f"{_cell(f.array)} | +{rel_s(model, f.start_ns):.3f}s | {end} | "
                       f"{fmt_dur(x.duration_s)} | {_cell(f.title)} |")
        for i, f in enumerate(snap.findings, 1):
            x = finding_facts(model, f)
            out += ["", f"### {i}. [{f.code}] {_cell(f.title)} on {_cell(f.array)}", ""]
            if model.kind == "report":
                until = at(model, f.end_ns) if f.end_ns is not None else "the end of the trace"
                out += [f"**When:** {at(model, f.start_ns)} .. {until}, "
                        f"{fmt_dur(x.duration_s)}; **ended:** {_prose(x.ended_by)}", "",
                        f"**State at the start:** {_prose(x.state_at_start)}", ""]
            if x.task:
                wait = f", waited {fmt_dur(x.total_wait_s)} in all" if x.total_wait_s else ""
                out += [f"**Task:** {_prose(x.task)}{wait}", ""]
            out += [f"**Why:** {_prose(f.explanation)}", ""]
            if f.fix:
                out += [f"**Kernel fix:** {_prose(f.fix)}", ""]
            out += [f"**Do now:** {_prose(f.remedy)}", ""]
            if f.evidence:
                ev = ", ".join(f"{e.kind} +{rel_s(model, e.ts):.3f}s" for e in f.evidence[:8])
                more = f" (+{len(f.evidence) - 8} more)" if len(f.evidence) > 8 else ""
                out += [f"Evidence: {_prose(ev)}{more}", ""]
    else:
        out += ["No findings.", ""]
    rows = blocked_rows(model)
    if rows:
        out += ["", "## Blocked tasks", "",
                "| " + " | ".join(BLOCKED_COLUMNS) + " |",
                "|" + "---|" * len(BLOCKED_COLUMNS)]
        out += ["| " + " | ".join(_cell(c) for c in r[:-1]) + f" | {_code(r[-1])} |"
                for r in rows]
    out += ["", "## Arrays", ""]
    for name in model.shown_arrays():
        a = snap.arrays[name]
        codes = sorted({f.code for f in array_findings(model, name)})
        problem = array_state_line(model, name)
        out += [f"### {_cell(array_label(a, name))}", "",
                *([f"State {_prose(problem)}; the table shows the end.", ""] if problem else []),
                "| kind | level | lifecycle | recovery flags | sync action | findings |",
                "|---|---|---|---|---|---|",
                f"| {_cell(a.kind)} | {_cell(a.level or '-')} | {a.lifecycle} | "
                f"{_cell(', '.join(a.recovery) or '-')} | {_cell(a.sync_action or '-')} | "
                f"{', '.join(codes) or '-'} |", ""]
        tl = model.timelines.get(name)
        if tl is not None and (tl.mask or tl.lifecycle):
            out += ["```text", *text_strip(model, tl), "```", ""]
    out += [f"_Timeline legend: {STRIP_LEGEND}._", ""]
    return "\n".join(out)
