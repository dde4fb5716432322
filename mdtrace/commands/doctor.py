"""`mdtrace doctor`: what can attach on this kernel and, in plain words, why not."""

from __future__ import annotations

import json
import sys

import click


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json: bool) -> None:
    """Check whether live md/dm-raid tracing is possible here (exit 0 only if it is)."""
    from mdtrace.kernel.environment import live_possible, run_checks

    checks = run_checks()
    ok = live_possible(checks)
    if as_json:
        click.echo(json.dumps({"live_tracing_possible": ok,
                               "checks": [c.to_json() for c in checks]}, indent=2))
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.blocking else "warn")
            line = f"[{mark}] {c.name}: {c.detail}"
            if not c.ok and c.fix:
                line += f"  -> {c.fix}"
            click.echo(line)
        if ok:
            click.echo("Live md tracing is possible: 'mdtrace record -o trace.jsonl.gz' or "
                       "'mdtrace run'.")
        else:
            bad = [c for c in checks if c.blocking and not c.ok]
            click.echo(f"Live md tracing is NOT possible here ({len(bad)} blocking problem"
                       f"{'s' if len(bad) != 1 else ''}: {', '.join(c.name for c in bad)}). "
                       "'mdtrace run' would fall back to sysfs polling; recorded traces can "
                       "still be analysed with 'mdtrace report'.")
    sys.exit(0 if ok else 1)
