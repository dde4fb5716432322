"""`mdtrace` command line.  Subcommands live in mdtrace/commands/<name>.py (one per command,
each exporting a click command called ``command``) and are imported lazily, so `mdtrace report`
never pays for Textual or bcc imports.  Every user-facing error becomes one line and exit 2."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

import click

from mdtrace import __version__
from mdtrace.errors import MdtraceError

# name -> (module, one-line help shown in `mdtrace --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "report": ("mdtrace.commands.report", "Post-mortem report from a recorded trace."),
    "diagnose": ("mdtrace.commands.diagnose",
                 "Explain a hang happening now (sysfs, stacks, kernel log; no BPF)."),
    "replay": ("mdtrace.commands.replay", "Print the decoded event stream of a trace."),
    "record": ("mdtrace.commands.record", "Trace md/dm-raid live with BPF into a trace file."),
    "run": ("mdtrace.commands.run", "Live daemon: trace, diagnose, print findings."),
    "doctor": ("mdtrace.commands.doctor", "Check what can be traced on this kernel, and why not."),
    "top": ("mdtrace.commands.top", "Live terminal UI (or over a replayed trace)."),
    "exporter": ("mdtrace.commands.exporter", "Prometheus exporter (live or replayed trace)."),
}

# the commands that load BPF: each gets --ebpf (print the program, exit; commands/_ebpf.py)
LIVE = ("record", "run", "top", "exporter")


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (mod, _) in COMMANDS.items() if _module_exists(mod))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None or not _module_exists(entry[0]):
            return None
        module = importlib.import_module(entry[0])
        cmd: click.Command = module.command
        if cmd_name in LIVE:
            from mdtrace.commands._ebpf import add_ebpf_option

            add_ebpf_option(cmd_name, cmd)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mdtrace")
def cli() -> None:
    """mdtrace: live tracer and hang diagnoser for Linux software RAID (md) and dm-raid.

    Start with `mdtrace report` (no argument: the bundled example trace), `mdtrace doctor`
    to see what this kernel allows, `mdtrace run` / `mdtrace top` to watch live.
    """


def main(argv: list[str] | None = None) -> Any:
    """Entry point: turn every expected failure into one line on stderr and exit code 2."""
    try:
        return cli.main(args=argv, prog_name="mdtrace", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("mdtrace: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code if exc.exit_code != 1 else 2)
    except MdtraceError as exc:
        click.echo(f"mdtrace: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - last line of defence: no tracebacks to users
        if os.environ.get("MDTRACE_DEBUG"):
            raise
        click.echo(f"mdtrace: internal error: {type(exc).__name__}: {exc} "
                   "(re-run with MDTRACE_DEBUG=1 for a traceback and report it)", err=True)
        sys.exit(70)


if __name__ == "__main__":
    main()
