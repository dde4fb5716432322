"""Man pages and shell completion scripts generated from the click definitions (one source of
truth for options and help).  setup.py calls :func:`write_all` at build time; tests render
every page with ``man -l`` and load the bash completion.

A man page per command: ``mdtrace(1)`` for the group, ``mdtrace-<command>(1)`` for each
subcommand (``man mdtrace-report``), the way git names its pages.
"""

from __future__ import annotations

from pathlib import Path

import click

SHELLS = ("bash", "zsh", "fish")
# where each shell looks, relative to the install prefix
COMPLETION_PATHS = {"bash": "share/bash-completion/completions/mdtrace",
                    "zsh": "share/zsh/site-functions/_mdtrace",
                    "fish": "share/fish/vendor_completions.d/mdtrace.fish"}


def _roff(text: str) -> str:
    """Plain text -> roff body text: escapes, no line starting with a control character."""
    out = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").splitlines():
        line = line.strip()
        out.append("\\&" + line if line[:1] in (".", "'") else line)
    return "\n".join(out)


def _paragraphs(text: str) -> str:
    paras = [p.strip() for p in (text or "").split("\n\n") if p.strip()]
    return "\n.PP\n".join(_roff(" ".join(p.split())) for p in paras)


def man_page(cmd: click.Command, name: str, version: str, parent: str = "",
             parent_ctx: click.Context | None = None) -> str:
    """One roff page for ``cmd`` (called ``name``; ``parent`` the group's name, if any)."""
    full = f"{parent} {name}".strip()
    page = full.replace(" ", "-")
    ctx = click.Context(cmd, info_name=name, parent=parent_ctx)
    short = cmd.get_short_help_str(limit=200) or full
    lines = [f'.TH {page.upper()} 1 "" "mdtrace {version}" "mdtrace manual"',
             ".SH NAME", f"{_roff(page)} \\- {_roff(short)}",
             ".SH SYNOPSIS", f".B {_roff(full)}",
             _roff(" ".join(cmd.collect_usage_pieces(ctx))),
             ".SH DESCRIPTION", _paragraphs(cmd.help or short)]
    opts = [p for p in cmd.get_params(ctx) if isinstance(p, click.Option) and not p.hidden]
    if opts:
        lines.append(".SH OPTIONS")
        for p in opts:
            rec = p.get_help_record(ctx)
            if rec is None:
                continue
            names, helptext = rec
            lines += [".TP", f"\\fB{_roff(names)}\\fR", _roff(helptext or "")]
    if isinstance(cmd, click.Group):
        subs = cmd.list_commands(ctx)
        if subs:
            lines.append(".SH COMMANDS")
            for sub in subs:
                c = cmd.get_command(ctx, sub)
                if c is None:
                    continue
                lines += [".TP", f"\\fB{_roff(sub)}\\fR",
                          _roff(c.get_short_help_str(limit=200)) + f" See mdtrace\\-{sub}(1)."]
    see = "mdtrace(1)" if parent else ", ".join(
        f"mdtrace\\-{s}(1)" for s in cmd.list_commands(ctx)) if isinstance(cmd, click.Group) \
        else ""
    if see:
        lines += [".SH SEE ALSO", see]
    return "\n".join(lines) + "\n"


def man_pages(group: click.Group, version: str) -> dict[str, str]:
    """File name (``mdtrace-report.1``) -> page, for the group and every subcommand."""
    ctx = group.make_context("mdtrace", [], resilient_parsing=True)
    pages = {"mdtrace.1": man_page(group, "mdtrace", version)}
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is not None:
            pages[f"mdtrace-{name}.1"] = man_page(cmd, name, version, parent="mdtrace",
                                                  parent_ctx=ctx)
    return pages


def completion_script(group: click.Group, shell: str) -> str:
    """click's completion script for ``shell``: it calls ``mdtrace`` back with
    ``_MDTRACE_COMPLETE`` set, so completions follow the installed version."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:
        raise ValueError(f"no click completion for shell {shell!r}")
    return cls(group, {}, "mdtrace", "_MDTRACE_COMPLETE").source()


def write_all(root: Path) -> list[tuple[str, list[str]]]:
    """Write man pages and completions under ``root`` (prefix-relative layout); return
    setuptools ``data_files`` entries (install dir, [files])."""
    from mdtrace import __version__
    from mdtrace.cli import cli

    man_dir = root / "share" / "man" / "man1"
    man_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for fname, text in man_pages(cli, __version__).items():
        (man_dir / fname).write_text(text)
        files.append(str(man_dir / fname))
    out = [("share/man/man1", sorted(files))]
    for shell in SHELLS:
        rel = COMPLETION_PATHS[shell]
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(completion_script(cli, shell))
        out.append((str(Path(rel).parent), [str(path)]))
    return out
