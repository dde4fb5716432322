"""``python -m vmtest``: build the real-kernel guest image and run scripts / scenarios in it.

The test harness, kept out of the shipped package (issue 15), like drgn's vmtest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mdtrace.errors import MdtraceError


def _kernels(value: tuple[str, ...]) -> list[str]:
    from vmtest.recipe import kernel_release, tier_kernels

    names = list(value) or tier_kernels()
    return [kernel_release(k) for k in names]


def _images(value: tuple[str, ...]) -> list[str]:
    """One kernel per distinct image (distro) among the kernels asked for."""
    from vmtest.recipe import guest_os

    seen: dict[str, str] = {}
    for rel in _kernels(value):
        seen.setdefault(guest_os(rel).suite, rel)
    return list(seen.values())


@click.group("vmtest")
def command() -> None:
    """Real-kernel qemu guest (Debian 6.1 and 6.12 kernels with md, dm-raid, bcc).

    The image is cached under ${MDTRACE_VM_CACHE:-~/.cache/mdtrace/vm}, keyed by its recipe;
    the first build needs root, network access to Debian mirrors and ~5 minutes.
    """


KERNEL_HELP = ("Guest kernel(s): 5.10 (bullseye), 6.1, 6.12 (bookworm), 7.2 (sid); default: "
               "$MDTRACE_VM_KERNELS or 6.1 and 6.12.")


@command.command("build")
@click.option("--kernel", "-k", "kernels", multiple=True, help=KERNEL_HELP)
@click.option("--rebuild", is_flag=True, help="Build again even if a cached image exists.")
def build(kernels: tuple[str, ...], rebuild: bool) -> None:
    """Build (or find) the guest image of each kernel's distro and print where it is."""
    from vmtest.image import image_for

    for rel in _images(kernels):
        img = image_for(rel, rebuild=rebuild)
        t = img.manifest.get("timings", {})
        click.echo(f"image {img.path} (recipe {img.recipe_digest}); kernels: "
                   f"{', '.join(img.kernels)}; build timings: {json.dumps(t)}")


@command.command("info")
@click.option("--kernel", "-k", "kernels", multiple=True, help=KERNEL_HELP)
def info(kernels: tuple[str, ...]) -> None:
    """Show the cache directory, each image's recipe digest and whether it is built."""
    from vmtest.image import build_tools_problem, find_image
    from vmtest.recipe import cache_root, default_recipe
    from vmtest.runner import qemu_problem
    from vmtest.scenarios import tier_problem

    click.echo(f"cache: {cache_root()}")
    for rel in _images(kernels):
        r = default_recipe(rel)
        img = find_image(r)
        click.echo(f"{r.suite}: recipe {r.digest()}, kernels {', '.join(r.kernels)}, python "
                   f"{r.python}; image: "
                   f"{img.path if img else 'not built (run: python -m vmtest build)'}")
    click.echo(f"can build: {build_tools_problem() or 'yes'}\ncan boot: {qemu_problem() or 'yes'}")
    click.echo(f"vm tier can run: {tier_problem() or 'yes'}")


@command.command("run-script", context_settings={"ignore_unknown_options": True})
@click.option("--kernel", "-k", default="6.12", show_default=True,
              help="Guest kernel: 5.10, 6.1, 6.12 or 7.2 (or the full release).")
@click.option("--disks", default=4, show_default=True, help="Extra virtio disks (/dev/vdb...).")
@click.option("--disk-mb", default=256, show_default=True, help="Size of each extra disk.")
@click.option("--timeout", "timeout_s", default=900.0, show_default=True,
              help="Hard host-side limit on the whole guest run, seconds.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Writable share ($MDTRACE_OUT in the guest); default: a new temp dir.")
@click.option("--src", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Project tree shared read-only at /mnt/src (default: this checkout).")
@click.option("--env", "env", multiple=True, metavar="K=V", help="Export in the guest.")
@click.option("--quiet", "-q", is_flag=True, help="Do not echo the script's output.")
@click.argument("script", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_script_cmd(kernel: str, disks: int, disk_mb: int, timeout_s: float,
                   out_dir: Path | None, src: Path | None, env: tuple[str, ...], quiet: bool,
                   script: Path, args: tuple[str, ...]) -> None:
    """Boot KERNEL, run SCRIPT [ARGS] as root in the guest, exit with its exit code."""
    from vmtest.image import image_for
    from vmtest.recipe import kernel_release
    from vmtest.runner import run_script

    kernel_release(kernel)  # one-line error before any build
    envd = {}
    for kv in env:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise MdtraceError(f"--env {kv!r}: expected K=V")
        envd[k] = v
    img = image_for(kernel)
    res = run_script(img, kernel, script, out_dir=out_dir, src=src, disks=disks,
                     disk_mb=disk_mb, timeout_s=timeout_s, env=envd, args=list(args))
    if not quiet:
        sys.stdout.write(res.output)
    click.echo(f"mdtrace vm: {res.summary()}", err=True)
    if res.timed_out:
        sys.exit(124)
    if res.rc is None:
        raise MdtraceError(f"the guest powered off without an exit code (console: "
                           f"{res.console_log})")
    sys.exit(res.rc)


@command.command("scenarios")
@click.option("--kernel", "-k", "kernels", multiple=True,
              help=KERNEL_HELP)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/vm"), show_default=True,
              help="Where each kernel's results go (<out>/<release>/).")
@click.option("--only", multiple=True, help="Run only these scenarios (default: all).")
@click.option("--timeout", "timeout_s", default=1500.0, show_default=True,
              help="Hard limit per kernel boot, seconds.")
def scenarios(kernels: tuple[str, ...], out_dir: Path, only: tuple[str, ...],
              timeout_s: float) -> None:
    """Run every guest scenario (tests/vm/scenarios) under mdtrace record, one boot per kernel,
    and check each scenario's findings and lifecycle."""
    from vmtest.scenarios import check_all, run_scenarios

    failed = 0
    rels = _kernels(kernels)  # validate names before booting anything
    for rel in rels:
        res = run_scenarios(rel, out_dir / rel, only=list(only), timeout_s=timeout_s)
        for line in check_all(res):
            click.echo(line)
            failed += line.startswith("FAIL")
    if failed:
        raise MdtraceError(f"{failed} scenario check(s) failed; results under {out_dir}")


@command.command("check")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/vm"), show_default=True,
              help="Output of 'python -m vmtest scenarios' (<out>/<release>/).")
@click.option("--kernel", "-k", "kernels", multiple=True,
              help="Guest kernel(s): 5.10, 6.1, 6.12, 7.2 (default: every kernel with results).")
@click.option("--only", multiple=True, help="Check only these scenarios (default: all).")
def check(out_dir: Path, kernels: tuple[str, ...], only: tuple[str, ...]) -> None:
    """Check saved scenario results again without booting: the findings come from this host's
    `mdtrace report` of each recorded trace, so engine changes are re-checked in seconds."""
    from vmtest.recipe import KERNELS
    from vmtest.scenarios import check_all, load_run

    rels = _kernels(kernels) if kernels else list(KERNELS.values())
    failed = checked = 0
    for rel in rels:
        run = load_run(out_dir / rel)
        if run is None:
            if kernels:
                raise MdtraceError(f"{out_dir / rel}: no saved scenario run (run 'python -m vmtest "
                                   f"scenarios --kernel {rel}' first)")
            continue
        if only:
            missing = sorted(set(only) - set(run.results))
            if missing:
                raise MdtraceError(f"{out_dir / rel}: no results for {', '.join(missing)}")
            run.results = {k: v for k, v in run.results.items() if k in only}
        checked += 1
        for line in check_all(run):
            click.echo(line)
            failed += line.startswith("FAIL")
    if not checked:
        raise MdtraceError(f"{out_dir}: no saved scenario runs (run 'python -m vmtest scenarios')")
    if failed:
        raise MdtraceError(f"{failed} scenario check(s) failed; results under {out_dir}")


@command.command("golden")
@click.option("--from", "src_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=Path("out/vm"), show_default=True,
              help="Output of 'python -m vmtest scenarios' (<dir>/<release>/scenarios/...).")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path),
              default=Path("tests/data/golden"), show_default=True)
def golden(src_dir: Path, dest: Path) -> None:
    """Keep the recorded scenario traces as golden traces (pointer-checked) for the fast tier."""
    from vmtest.golden import collect
    from vmtest.scenarios import load_results

    kernels = [d for d in sorted(src_dir.iterdir()) if (d / "scenarios").is_dir()]
    if not kernels:
        raise MdtraceError(f"{src_dir}: no scenario results "
                           "(run 'python -m vmtest scenarios' first)")
    for kdir in kernels:
        for line in collect(load_results(kdir, kdir.name), dest):
            click.echo(line)
