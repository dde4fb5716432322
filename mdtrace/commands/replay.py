"""`mdtrace replay TRACE`: the decoded event stream, filtered by array, kind and time."""

from __future__ import annotations

import json

import click

from mdtrace.clock import wall_at, wall_start
from mdtrace.errors import MdtraceError
from mdtrace.events import KINDS, describe
from mdtrace.trace import TraceReader


@click.command("replay")
@click.argument("trace")
@click.option("--array", "arrays", multiple=True, help="Only these arrays (repeatable).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS),
              help="Only these event kinds (repeatable).")
@click.option("--since", type=float, default=None, help="Seconds after the first event.")
@click.option("--until", type=float, default=None, help="Seconds after the first event.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--skip-bad", is_flag=True, help="Continue past corrupt lines (counted).")
@click.option("--wall", is_flag=True,
              help="Also print each event's UTC wall time (from the trace's start time).")
def command(trace: str, arrays: tuple[str, ...], kinds: tuple[str, ...], since: float | None,
            until: float | None, as_json: bool, skip_bad: bool, wall: bool) -> None:
    """Print TRACE's events with decoded recovery flags, one per line.

    Times are seconds since the trace start (its first event), the clock of `mdtrace report`
    and `mdtrace top --replay` too."""
    reader = TraceReader(trace, skip_bad=skip_bad)
    t0: int | None = None
    start = wall_start(reader.header.created) if wall else None
    seen: set[str] = set()
    shown = 0
    for ev in reader:
        if t0 is None:
            t0 = ev.ts
        if ev.array:
            seen.add(ev.array)
        rel = (ev.ts - t0) / 1e9
        if since is not None and rel < since:
            continue
        if until is not None and rel > until:
            break
        if (arrays and ev.array not in arrays) or (kinds and ev.kind not in kinds):
            continue
        shown += 1
        stamp = ""
        if start is not None:
            stamp = wall_at(start, rel, "%H:%M:%S.%f ")
        if as_json:
            d = describe(ev)
            d["rel_s"] = round(rel, 6)
            if stamp:
                d["wall"] = stamp.strip()
            click.echo(json.dumps(d, default=str))
            continue
        flags = ",".join(ev.state.recovery_names()) if ev.state is not None else ""
        args = " ".join(f"{k}={v}" for k, v in ev.args.items())
        click.echo(f"{stamp}{rel:12.6f} cpu{ev.cpu} {ev.comm or '-'}/{ev.tid} "
                   f"{ev.array or '-':8} {ev.kind:22} [{flags}] {args}")
    if reader.bad_lines:
        click.echo(f"mdtrace: skipped {reader.bad_lines} bad lines", err=True)
    end = reader.end_note(t0 or 0)     # the same words as every report format
    if end:
        click.echo(f"mdtrace: note: {end}", err=True)
    missing = [a for a in arrays if a not in seen]
    if missing and not shown:
        names = ", ".join(sorted(seen)) or "none"
        raise MdtraceError(f"replay: no array {', '.join(missing)} in {trace} (its arrays: "
                           f"{names}); give one of those to --array")
    if missing:
        click.echo(f"mdtrace: note: no array {', '.join(missing)} in {trace}", err=True)
