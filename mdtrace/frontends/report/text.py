"""Terminal text report: summary, arrays, findings (why / fix / do now), ASCII timelines."""

from __future__ import annotations

from mdtrace.engine.dm_context import summary as dm_summary
from mdtrace.frontends.report.build import ReportModel
from mdtrace.frontends.report.common import (
    STRIP_LEGEND,
    array_label,
    blocked_rows,
    text_strip,
)


def render(model: ReportModel, *, timelines: bool = True) -> str:
    snap = model.snapshot
    out = [f"mdtrace {model.kind}: {model.path}",
           f"kernel {model.header.kernel}, source {model.header.source}, "
           f"{model.events_read} events, {len(snap.arrays)} arrays, "
           f"{len(snap.findings)} findings"]
    if model.bad_lines:
        out.append(f"  ({model.bad_lines} bad lines skipped)")
    out += [f"  note: {n}" for n in model.notes]
    shown = model.shown_arrays()
    for name in sorted(shown):
        a = snap.arrays[name]
        extra = f" sync_action={a.sync_action}" if model.kind == "diagnose" and \
            a.sync_action else ""
        out.append(f"  array {array_label(a, name)}: {a.kind} {a.level} "
                   f"lifecycle={a.lifecycle} flags={','.join(a.recovery) or '-'}{extra}")
        if a.dm_members:
            out.append("    " + dm_summary(a.dm_members))
    for f in snap.findings:
        state = "ACTIVE" if f.active else "cleared"
        out.append(f"\n[{f.code}] {f.severity.upper()} {state} {f.array}: {f.title}")
        out.append(f"  why:    {f.explanation}")
        if f.fix:
            out.append(f"  fix:    {f.fix}")
        out.append(f"  do now: {f.remedy}")
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


# Trace strings (array names, comm) reach the terminal: neutralise control characters so a
# crafted trace cannot move the cursor or change colours.
_CONTROL = {c: "?" for c in (*range(0, 10), *range(11, 32), 127)}


def _printable(s: str) -> str:
    return s.translate(_CONTROL)
