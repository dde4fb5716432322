"""Terminal text report: summary, arrays, findings (when / ended / why / fix / do now), ASCII
timelines.  Every time is seconds since the trace start, with the UTC wall time beside it."""

from __future__ import annotations

from mdtrace.frontends.report.build import ReportModel
from mdtrace.frontends.report.common import (
    STRIP_LEGEND,
    array_label,
    array_state_line,
    at,
    blocked_rows,
    finding_facts,
    fmt_dur,
    rel_s,
    text_strip,
)


def render(model: ReportModel, *, timelines: bool = True) -> str:
    snap = model.snapshot
    out = [f"mdtrace {model.kind}: {model.path}",
           f"kernel {model.header.kernel}, source {model.header.source}, "
           f"{model.events_read} events, {len(snap.arrays)} arrays, "
           f"{len(snap.findings)} findings"]
    if model.first_ns and model.kind == "report":
        out.append(f"trace start {model.header.created or '?'}"
                   f", duration {fmt_dur(rel_s(model, model.last_ns))}; times are seconds "
                   "since the trace start (as in `mdtrace replay`)")
    if model.bad_lines:
        out.append(f"  ({model.bad_lines} bad lines skipped)")
    out += [f"  note: {n}" for n in model.notes]
    shown = model.shown_arrays()
    for name in sorted(shown):
        a = snap.arrays[name]
        extra = f"; sync_action {a.sync_action}" if model.kind == "diagnose" and \
            a.sync_action else ""
        end = f"lifecycle {a.lifecycle}; flags {','.join(a.recovery) or '-'}{extra}"
        problem = array_state_line(model, name)
        out.append(f"  array {array_label(a, name)}: {a.kind} {a.level}; "
                   + (f"{problem}; at the end: {end}" if problem else end))
    for f in snap.findings:
        out.extend(finding_block(model, f))
    rows = blocked_rows(model)
    if rows:
        out.append(f"\nblocked tasks ({len(rows)})")
        for tid, comm, state, blocked, array, what, stack in rows:
            out.append(f"  {tid} {comm} {state} blocked {blocked} array {array}: {what}")
            out.append(f"      {stack}")
    elif model.kind == "diagnose":
        out.append("\nno task is blocked in md/dm code")
    if timelines:
        drawn = [n for n in shown if n in model.timelines and model.timelines[n].mask]
        if drawn:
            out.append("\ntimelines (" + STRIP_LEGEND + ")")
        for name in drawn:
            out.append(f"\n{array_label(snap.arrays.get(name), name)}")
            out.extend(text_strip(model, model.timelines[name]))
    return _printable("\n".join(out)) + "\n"


def finding_block(model: ReportModel, f: object) -> list[str]:
    """One finding: headline, when (start .. end, duration), what ended it, the task and its
    whole wait, the array's state at the start, why, the fix (if this kernel lacks it), do now."""
    from mdtrace.engine.model import Finding
    assert isinstance(f, Finding)
    x = finding_facts(model, f)
    state = "ACTIVE" if f.active else "ended"
    out = [f"\n[{f.code}] {f.severity.upper()} {state} {f.array}: {f.title}"]
    if f.end_ns is not None:
        until = at(model, f.end_ns)
    else:
        until = "now" if model.kind == "diagnose" else "the end of the trace"
    if model.kind == "report":
        out.append(f"  when:   {at(model, f.start_ns)} .. {until}, {fmt_dur(x.duration_s)}")
        out.append(f"  ended:  {x.ended_by}")
    if x.task:
        wait = f", waited {fmt_dur(x.total_wait_s)} in all" if x.total_wait_s else ""
        out.append(f"  task:   {x.task}{wait}")
    if model.kind == "report":
        out.append(f"  state:  {x.state_at_start} (at the start)")
    out.append(f"  why:    {f.explanation}")
    if f.fix:
        out.append(f"  fix:    {f.fix}")
    out.append(f"  do now: {f.remedy}")
    return out


# Trace strings (array names, comm) reach the terminal: neutralise control characters so a
# crafted trace cannot move the cursor or change colours.
_CONTROL = {c: "?" for c in (*range(0, 10), *range(11, 32), 127)}


def _printable(s: str) -> str:
    return s.translate(_CONTROL)
