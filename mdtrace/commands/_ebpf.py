"""``--ebpf`` for the live commands (record, run, top, exporter), as bcc's tools have it:
print the exact BPF program text and compile flags the command would load, and exit.

The program comes from :func:`mdtrace.sources.bcc_source.build_program`, the path BccSource
loads with, fed the same arguments the command passes (``BCC_ARGS``).  Printing needs neither
root nor a kernel with md: where /proc/kallsyms shows no md functions (md not loaded, or not
root) the plan assumes every probe point exists and says so; where the md module's BTF is
missing the offsets cannot be known, so the BTF-derived ``-D`` flags are left out, with the
reason (``mdtrace record --btf-dir DIR`` reads captured BTF instead).
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable
from typing import Any

import click

from mdtrace.commands._live import live_bcc_kwargs
from mdtrace.errors import MdtraceError

# command -> how its options become BccSource keyword arguments (as the command passes them)
BCC_ARGS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "record": lambda kw: {"locks": kw["locks"], "locks_full": kw["locks_full"],
                          "io_threshold_ms": kw["io_threshold_ms"],
                          "io_stats_s": kw["io_stats_s"], "ringbuf_pages": kw["ringbuf_pages"],
                          "btf_root": kw["btf_dir"]},
    # the live front ends share their options and this mapping (commands/_live.py)
    "run": live_bcc_kwargs,
    "exporter": live_bcc_kwargs,
    "top": live_bcc_kwargs,
}

# BccSource's own defaults for what a command does not pass
DEFAULTS: dict[str, Any] = {"locks": False, "locks_full": False, "io_threshold_ms": 1000.0,
                            "io_stats_s": 5.0, "ringbuf_pages": 256, "io_alert_s": 5.0,
                            "btf_root": "/sys/kernel/btf"}


def listing(command: str, bcc_kwargs: dict[str, Any], kallsyms: str = "/proc/kallsyms") -> str:
    """The program ``command`` would load, as a C file: flags and notes in a comment header."""
    from mdtrace.kernel.offsets import BtfSet, compute_offsets
    from mdtrace.kernel.probes import SPECS, Symbols, wanted_functions
    from mdtrace.sources.bcc_source import build_program, cflags_for

    args = {**DEFAULTS, **bcc_kwargs}
    btf_root = args.pop("btf_root")
    notes: list[str] = []
    symbols = Symbols.read(kallsyms, wanted=wanted_functions())
    try:
        offsets = compute_offsets(BtfSet.from_dir(btf_root))
    except MdtraceError as exc:
        offsets = None
        notes.append(f"BTF-derived -D flags omitted: {exc}")
    if symbols.addresses_hidden or not any(symbols.funcs.get(s.func) for s in SPECS
                                           if s.required):
        notes.append(f"{kallsyms} shows no md functions (md not loaded, or not root): the "
                     "plan assumes every probe point exists")
        symbols = Symbols(funcs={s.func: [(s.func, s.module)] for s in SPECS})
    if offsets is not None:
        prog = build_program(offsets, symbols, **args)
        text, flags, files = prog.text, prog.cflags, prog.plan.files()
    else:
        from mdtrace.kernel.flags import FlagTable
        from mdtrace.kernel.offsets import KernelOffsets
        from mdtrace.kernel.probes import make_plan
        from mdtrace.sources.bcc_source import program_text

        bare = KernelOffsets({"HAVE_DM_MOD": 1}, FlagTable.for_release(""), [], [])
        plan = make_plan(symbols, locks=args["locks"], locks_full=args["locks_full"])
        files = plan.files()
        text = program_text(files)
        flags = [f for f in cflags_for(bare, **args) if not f.startswith("-DHAVE_DM_MOD")]
    head = [f"// mdtrace {command} --ebpf: the BPF program it would compile with bcc",
            f"// kernel {platform.release()}, BTF from {btf_root}",
            f"// files: common.h {' '.join(files)}",
            *[f"// note: {n}" for n in notes],
            "// cflags:", *[f"//   {f}" for f in flags], ""]
    return "\n".join(head) + "\n" + text.decode() + "\n"


def add_ebpf_option(name: str, cmd: click.Command) -> click.Command:
    """Give live command ``name`` an ``--ebpf`` flag (once): print :func:`listing`, exit 0."""
    if name not in BCC_ARGS or any(p.name == "ebpf" for p in cmd.params) or cmd.callback is None:
        return cmd
    inner = cmd.callback
    # `record --ebpf` needs no -o: required options are checked here unless --ebpf is given
    required = [p for p in cmd.params if p.required and isinstance(p, click.Option)]
    for p in required:
        p.required = False

    @functools.wraps(inner)
    def callback(*args: Any, ebpf: bool = False, **kwargs: Any) -> Any:
        if not ebpf:
            for p in required:
                if kwargs.get(p.name or "") is None:
                    raise click.MissingParameter(ctx=click.get_current_context(), param=p)
            return inner(*args, **kwargs)
        click.echo(listing(name, BCC_ARGS[name](kwargs)), nl=False)
        return None

    cmd.callback = callback
    cmd.params.append(click.Option(
        ["--ebpf"], is_flag=True,
        help="Print the BPF program text and compile flags this would load, and exit "
             "(no root or md needed)."))
    return cmd
