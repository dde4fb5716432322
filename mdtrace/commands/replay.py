"""`mdtrace replay TRACE`: the decoded event stream, filtered by array, kind and time."""

from __future__ import annotations

import json

import click

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
def command(trace: str, arrays: tuple[str, ...], kinds: tuple[str, ...], since: float | None,
            until: float | None, as_json: bool, skip_bad: bool) -> None:
    """Print TRACE's events with decoded recovery flags, one per line."""
    reader = TraceReader(trace, skip_bad=skip_bad)
    t0: int | None = None
    for ev in reader:
        if t0 is None:
            t0 = ev.ts
        rel = (ev.ts - t0) / 1e9
        if since is not None and rel < since:
            continue
        if until is not None and rel > until:
            break
        if (arrays and ev.array not in arrays) or (kinds and ev.kind not in kinds):
            continue
        if as_json:
            d = describe(ev)
            d["rel_s"] = round(rel, 6)
            click.echo(json.dumps(d, default=str))
            continue
        flags = ",".join(ev.state.recovery_names()) if ev.state is not None else ""
        args = " ".join(f"{k}={v}" for k, v in ev.args.items())
        click.echo(f"{rel:12.6f} cpu{ev.cpu} {ev.comm or '-'}/{ev.tid} {ev.array or '-':8} "
                   f"{ev.kind:22} [{flags}] {args}")
    if reader.bad_lines:
        click.echo(f"mdtrace: skipped {reader.bad_lines} bad lines", err=True)
