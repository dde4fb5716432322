"""`mdtrace report [TRACE]`: post-mortem findings from a recorded trace.

Without TRACE it reports the bundled example: a real recording from a Debian 6.1 kernel guest
(raid5 reshape, frozen, then IO across the reshape position).  Rendering lives in
:mod:`mdtrace.frontends.report`; this module only parses options and writes the result.
"""

from __future__ import annotations

from importlib import resources

import click

from mdtrace.config import load_config
from mdtrace.errors import MdtraceError
from mdtrace.frontends.report import FORMATS, build_report, render
from mdtrace.frontends.report.json_ import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "command"]


@click.command("report")
@click.argument("trace", required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text",
              help="text (terminal), markdown, html (self-contained, timelines) or json.")
@click.option("-o", "--output", "output", metavar="FILE",
              help="Write the report to FILE instead of standard output.")
@click.option("--skip-bad", is_flag=True, help="Continue past corrupt lines (counted).")
@click.option("--config", "config_path", help="TOML file of engine thresholds.")
@click.option("--threshold", multiple=True, help="Override a threshold, e.g. io_wait_s=2.")
def command(trace: str | None, fmt: str, output: str | None, skip_bad: bool,
            config_path: str | None, threshold: tuple[str, ...]) -> None:
    """Report what went wrong in TRACE (default: the bundled real-kernel example).

    Exit 0 after a report (with or without findings), 2 on unreadable input.
    """
    cfg = load_config(config_path, threshold)
    if trace is None:
        path = str(resources.files("mdtrace") / "data" / "example.jsonl.gz")
        click.echo(f"(no TRACE given: reporting the bundled example {path})", err=True)
    else:
        path = trace
    text = render(build_report(path, config=cfg, skip_bad=skip_bad), fmt)
    if output is None or output == "-":
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise MdtraceError(f"{output}: cannot write report ({exc.strerror})") from None
    click.echo(f"report written to {output}", err=True)
