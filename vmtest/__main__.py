"""``python -m vmtest build|info|run-script|scenarios|check|golden`` (docs/vm.md)."""

from __future__ import annotations

import sys

import click

from mdtrace.errors import MdtraceError
from vmtest.cli import command


def main(argv: list[str] | None = None) -> int:
    """One line on stderr and exit 2 for an expected failure, as `mdtrace` does."""
    try:
        command.main(args=argv, prog_name="python -m vmtest", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("vmtest: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code if exc.exit_code != 1 else 2
    except MdtraceError as exc:
        click.echo(f"vmtest: error: {exc}", err=True)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
