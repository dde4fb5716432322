"""`mdtrace diagnose`: explain a hang that is already happening, from what the machine shows now.

One shot, read-only, no BPF and no prior trace: sysfs and ``dmsetup status`` for every md
array and dm-raid target, every task blocked in md/dm code with its kernel stack, the kernel
log since boot, then each mddev's own words from /proc/kcore, or where that is closed a BPF
probe fired by reading array_state / dmsetup status (mdtrace.sources.snapshot.kernel_state),
fed to the engine like any event stream; the findings render through the report renderers
(same schema and finding model as `mdtrace report`).  Exit 0: no finding; 1: findings; 2:
cannot diagnose (one line).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

import click

from mdtrace.errors import MdtraceError
from mdtrace.frontends.report import FORMATS, render
from mdtrace.frontends.report.build import build_diagnosis
from mdtrace.sources.snapshot import (
    DmsetupStatus,
    KernelLog,
    collect,
    klog,
    run_dmsetup_status,
)
from mdtrace.sources.snapshot.kernel_state import read_kernel_state_any


def _startup_s() -> float | None:
    """Seconds from this process's start (/proc/self/stat starttime, clock ticks since boot)
    to now (/proc/uptime): the interpreter and imports, before any of our code ran."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start = int(stat.rpartition(")")[2].split()[19]) / os.sysconf("SC_CLK_TCK")
        return round(float(Path("/proc/uptime").read_text().split()[0]) - start, 2)
    except (OSError, ValueError, IndexError):
        return None


def _file(path: str, what: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError as exc:
        raise MdtraceError(f"{path}: cannot read {what} ({exc.strerror})") from None


@click.command("diagnose")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text",
              help="text (terminal), markdown, html or json (the report's schema).")
@click.option("-o", "--output", "output", metavar="FILE",
              help="Write the diagnosis to FILE instead of standard output.")
@click.option("--sys-root", default="/sys", metavar="DIR", show_default=True,
              help="The sysfs tree to read (a copied tree, tests).")
@click.option("--proc-root", default="/proc", metavar="DIR", show_default=True,
              help="The /proc tree to read (a copied tree, tests).")
@click.option("--dmsetup-status", "dmsetup_file", metavar="FILE",
              help="`dmsetup status` output to use instead of running dmsetup.")
@click.option("--kernel-log", "klog_file", metavar="FILE",
              help="Kernel log text (dmesg, journalctl -k, a kmsg dump) instead of /dev/kmsg.")
@click.option("--no-kernel-state", "no_kernel_state", is_flag=True,
              help="Do not read each mddev's own state (from /proc/kcore with BTF offsets, "
                   "or a BPF probe where kcore is closed; needs root, no kernel lockdown).")
def command(fmt: str, output: str | None, sys_root: str, proc_root: str,
            dmsetup_file: str | None, klog_file: str | None, no_kernel_state: bool) -> None:
    """Explain an md/dm-raid hang happening now: which array, which tasks, why, what to do.

    Reads only (sysfs, /proc, dmsetup status, the kernel log, and each mddev's own state
    from /proc/kcore + kallsyms + BTF under the --proc-root / --sys-root trees, or where
    kcore is closed on a live host a BPF probe on array_state_show / raid_status); run as
    root for kernel stacks and kernel state.  Exit 0 no finding, 1 findings, 2 cannot
    diagnose.
    """
    startup = _startup_s()
    t0 = time.monotonic()
    if not (Path(proc_root) / "self").exists() and not any(Path(proc_root).glob("[0-9]*")):
        raise MdtraceError(f"{proc_root}: not a /proc tree (no processes): cannot diagnose")
    if not (Path(sys_root) / "block").is_dir():
        raise MdtraceError(f"{sys_root}: no block/ directory (not a sysfs tree): "
                           "cannot diagnose")
    live = sys_root == "/sys" and proc_root == "/proc"
    dmsetup: DmsetupStatus | None
    kernel_log: KernelLog | None
    if dmsetup_file is not None:
        text = _file(dmsetup_file, "dmsetup status output")
        dmsetup = lambda: (text, "")  # noqa: E731
    else:
        dmsetup = run_dmsetup_status if live else None
    if klog_file is not None:
        records = klog.parse_text(_file(klog_file, "the kernel log"))
        kernel_log = lambda: (records, "")  # noqa: E731
    else:
        kernel_log = klog.read_kmsg if live else None
    reader = None if no_kernel_state else functools.partial(
        read_kernel_state_any, announce=lambda m: click.echo(f"mdtrace: {m}", err=True))
    collected = collect(sys_root, proc_root, dmsetup=dmsetup, kernel_log=kernel_log,
                        kernel_state=reader)
    if live and os.geteuid() != 0:
        click.echo("mdtrace: not root: other users' kernel stacks, open files, /dev/kmsg and "
                   "dmsetup cannot be read; the diagnosis uses sysfs, task states and wchan "
                   "(run with sudo for the full picture)", err=True)
    elif not collected.stacks_readable:
        click.echo("mdtrace: kernel stacks (/proc/PID/stack) not readable here: blocked "
                   "tasks are judged from state and wchan only", err=True)
    model = build_diagnosis(collected)
    text_out = render(model, fmt)
    if output is None or output == "-":
        click.echo(text_out, nl=False)
    else:
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text_out)
        except OSError as exc:
            raise MdtraceError(f"{output}: cannot write the diagnosis ({exc.strerror})") \
                from None
        click.echo(f"diagnosis written to {output}", err=True)
    if os.environ.get("MDTRACE_TIMINGS") == "1":
        stages = " ".join(f"{k} {v:.2f}" for k, v in collected.timings.items())
        click.echo(f"mdtrace diagnose timings (s): start-up {startup} {stages} total-in-"
                   f"command {time.monotonic() - t0:.2f}", err=True)
    sys.exit(1 if model.snapshot.active_findings() else 0)
