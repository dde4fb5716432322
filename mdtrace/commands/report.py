"""`mdtrace report [TRACE]`: post-mortem findings from a recorded trace (text or JSON).

Without TRACE it reports the bundled example: a real recording from a Debian 6.1 kernel guest
(raid5 reshape, frozen, then IO across the reshape position).
"""

from __future__ import annotations

import json
from importlib import resources

import click

from mdtrace.config import load_config
from mdtrace.engine.core import Engine
from mdtrace.engine.model import Snapshot
from mdtrace.trace import TraceReader

SCHEMA_VERSION = 1


def _as_json(path: str, reader: TraceReader, snap: Snapshot) -> dict[str, object]:
    t0 = min((a.history[0][0] for a in snap.arrays.values() if a.history), default=0)
    return {
        "schema_version": SCHEMA_VERSION, "trace": path, "kernel": reader.header.kernel,
        "source": reader.header.source, "events": reader.events_read,
        "bad_lines": reader.bad_lines,
        "findings": [{
            "code": f.code, "title": f.title, "array": f.array, "severity": str(f.severity),
            "start_s": round((f.start_ns - t0) / 1e9, 3), "start_ns": f.start_ns,
            "end_ns": f.end_ns, "active": f.active, "explanation": f.explanation,
            "fix": f.fix, "remedy": f.remedy, "details": f.details,
        } for f in snap.findings],
        "arrays": {name: {
            "kind": a.kind, "dm_name": a.dm_name, "level": a.level, "lifecycle": str(a.lifecycle),
            "history": [s for i, (_, s) in enumerate(a.history)
                        if i == 0 or a.history[i - 1][1] != s],
            "recovery": a.recovery,
        } for name, a in snap.arrays.items()},
        "health": {"events_by_kind": snap.health.events_by_kind, "lost": snap.health.lost_total},
    }


@click.command("report")
@click.argument("trace", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--skip-bad", is_flag=True, help="Continue past corrupt lines (counted).")
@click.option("--config", "config_path", help="TOML file of engine thresholds.")
@click.option("--threshold", multiple=True, help="Override a threshold, e.g. io_wait_s=2.")
def command(trace: str | None, fmt: str, skip_bad: bool, config_path: str | None,
            threshold: tuple[str, ...]) -> None:
    """Report what went wrong in TRACE (default: the bundled real-kernel example).

    Exit 0 after a report (with or without findings), 2 on unreadable input.
    """
    cfg = load_config(config_path, threshold)
    if trace is None:
        ref = resources.files("mdtrace") / "data" / "example.jsonl.gz"
        path = str(ref)
        click.echo(f"(no TRACE given: reporting the bundled example {path})", err=True)
    else:
        path = trace
    reader = TraceReader(path, skip_bad=skip_bad)
    eng = Engine(cfg, mode="replay", kernel=reader.header.kernel)
    for ev in reader:
        eng.feed(ev)
    eng.finish()
    snap = eng.snapshot()
    if fmt == "json":
        click.echo(json.dumps(_as_json(path, reader, snap), indent=1, default=str))
        return
    click.echo(f"mdtrace report: {path}")
    click.echo(f"kernel {reader.header.kernel}, source {reader.header.source}, "
               f"{reader.events_read} events, {len(snap.arrays)} arrays, "
               f"{len(snap.findings)} findings")
    for name, a in sorted(snap.arrays.items()):
        if a.counters.keys() <= {"array_create", "array_stop", "raid_target"}:
            continue
        label = f"{name} ({a.dm_name})" if a.dm_name else name
        click.echo(f"  array {label}: {a.kind} {a.level} lifecycle={a.lifecycle} "
                   f"flags={','.join(a.recovery) or '-'}")
    for f in snap.findings:
        state = "ACTIVE" if f.active else "cleared"
        click.echo(f"\n[{f.code}] {f.severity.upper()} {state} {f.array}: {f.title}")
        click.echo(f"  why:    {f.explanation}")
        if f.fix:
            click.echo(f"  fix:    {f.fix}")
        click.echo(f"  do now: {f.remedy}")
