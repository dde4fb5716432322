"""Issue 16, operating like a system tool: a man page per command and bash/zsh/fish
completion generated from the click definitions (rendered with ``man -l``, loaded in bash),
``--ebpf`` on the live commands (the exact program text and cflags, from the loading path),
and `replay --array` naming an array the trace does not have."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from mdtrace.cli import LIVE, cli
from mdtrace.commands._ebpf import BCC_ARGS
from mdtrace.docgen import COMPLETION_PATHS, write_all
from mdtrace.kernel.offsets import BtfSet, compute_offsets
from mdtrace.sources.bcc_source import cflags_for, program_text

MDTRACE = [sys.executable, "-m", "mdtrace.cli"]
EXAMPLE = str(Path(__file__).parents[1] / "mdtrace" / "data" / "example.jsonl.gz")
BTF_61 = Path(__file__).parent / "data" / "btf" / "6.1.0-56-amd64"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MDTRACE, *args], capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    write_all(root)
    return root


def _commands() -> list[str]:
    ctx = click.Context(cli, info_name="mdtrace")
    return cli.list_commands(ctx)


@pytest.mark.skipif(shutil.which("man") is None, reason="man(1) not installed")
def test_man_page_per_command_renders(generated: Path) -> None:
    pages = sorted((generated / "share/man/man1").glob("*.1"))
    assert {p.name for p in pages} == {"mdtrace.1", *(f"mdtrace-{c}.1" for c in _commands())}
    for p in pages:
        r = subprocess.run(["man", "-l", str(p)], capture_output=True, text=True, timeout=30,
                           env={**os.environ, "MANWIDTH": "90", "MANPAGER": "cat",
                                "PAGER": "cat"})
        assert r.returncode == 0, (p, r.stderr)
        out = r.stdout
        assert "NAME" in out and "SYNOPSIS" in out and "OPTIONS" in out, p
    record = (generated / "share/man/man1/mdtrace-record.1").read_text()
    assert "\\-\\-io\\-threshold\\-ms" in record and "\\-\\-ebpf" in record


def test_completion_scripts_load_in_bash(generated: Path) -> None:
    for shell in ("bash", "zsh", "fish"):
        assert "_MDTRACE_COMPLETE" in (generated / COMPLETION_PATHS[shell]).read_text()
    script = generated / COMPLETION_PATHS["bash"]
    # the script calls `mdtrace` back by name: put this interpreter's mdtrace first on PATH
    bindir = generated / "bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / "mdtrace"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m mdtrace.cli "$@"\n')
    shim.chmod(0o755)
    probe = (f"source {script} && complete -p mdtrace && "
             "COMP_WORDS=(mdtrace rep); COMP_CWORD=1; _mdtrace_completion mdtrace; "
             'echo "words: ${COMPREPLY[*]}"; COMPREPLY=(); '
             "COMP_WORDS=(mdtrace record --eb); COMP_CWORD=2; _mdtrace_completion mdtrace; "
             'echo "opts: ${COMPREPLY[*]}"')
    r = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    assert "-F _mdtrace_completion mdtrace" in r.stdout
    assert "words: replay report" in r.stdout and "opts: --ebpf" in r.stdout


def test_ebpf_option_maps_every_live_command() -> None:
    ctx = click.Context(cli, info_name="mdtrace")
    assert set(BCC_ARGS) == set(LIVE)
    for name in LIVE:
        cmd = cli.get_command(ctx, name)
        assert cmd is not None
        params = {p.name for p in cmd.params}
        assert "ebpf" in params
        # every option BCC_ARGS reads is one the command really has
        fake = {p: 1.0 for p in params} | {"thresholds": (), "config_path": None}
        BCC_ARGS[name](fake)


def test_record_ebpf_prints_the_loading_path_program() -> None:
    r = _run("record", "--ebpf", "--btf-dir", str(BTF_61), "--locks",
             "--io-threshold-ms", "250")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    head, _, text = out.partition("\n\n")
    files = head.split("// files: common.h ")[1].splitlines()[0].split()
    assert files == ["lifecycle.c", "reshape_io.c", "dm_suspend.c", "locks.c"]
    assert text == program_text(files).decode() + "\n"
    flags = [ln.strip("/ ") for ln in head.splitlines() if ln.startswith("//   ")]
    want = cflags_for(compute_offsets(BtfSet.from_dir(BTF_61)), locks=True,
                      io_threshold_ms=250, io_alert_s=5.0)
    assert flags == want


def test_live_commands_ebpf_need_no_root_or_md() -> None:
    for name in ("run", "top", "exporter"):
        r = _run(name, "--ebpf")
        assert r.returncode == 0, (name, r.stderr)
        assert r.stdout.startswith(f"// mdtrace {name} --ebpf") and "/* ---- common.h" in \
            r.stdout
    r = _run("run", "--ebpf", "--threshold", "io_wait_s=2")
    assert "-DIO_ALERT_NS=2000000000ULL" in r.stdout
    r = _run("record")                     # without --ebpf, -o is still required
    assert r.returncode == 2 and "--output" in r.stderr


def test_replay_unknown_array_says_which_exist() -> None:
    r = _run("replay", EXAMPLE, "--array", "md9")
    assert r.returncode == 2 and r.stdout == ""
    assert "no array md9" in r.stderr and "its arrays: md0" in r.stderr
    assert "Traceback" not in r.stderr
    ok = _run("replay", EXAMPLE, "--array", "md0", "--kind", "array_stop", "--wall")
    assert ok.returncode == 0 and ok.stdout.startswith("23:33:04.423160    21.423160")
