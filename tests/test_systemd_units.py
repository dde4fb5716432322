"""The hardened units in contrib/systemd/: `systemd-analyze verify` clean (with the man pages
their Documentation= names, generated from the click definitions), the hardening the issue
asks for present, and each ExecStart a command line mdtrace accepts."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mdtrace.docgen import write_all

UNITS = sorted((Path(__file__).parents[1] / "contrib" / "systemd").glob("*.service"))


def _keys(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k, []).append(v)
    return out


def test_units_present() -> None:
    assert {u.name for u in UNITS} == {"mdtrace-exporter.service", "mdtrace-run.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_is_hardened(unit: Path) -> None:
    k = _keys(unit.read_text())
    caps = set(k["CapabilityBoundingSet"][0].split())
    assert caps and caps <= {"CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYSLOG",
                             "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE"}
    assert set(k["AmbientCapabilities"][0].split()) == caps
    for key, want in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                      ("ProtectHome", "yes"), ("Restart", "on-failure")):
        assert k[key] == [want], key
    assert "CAP_NET_ADMIN" not in caps and "CAP_SYS_MODULE" not in caps


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_execstart_is_a_valid_mdtrace_command_line(unit: Path) -> None:
    argv = shlex.split(_keys(unit.read_text())["ExecStart"][0])
    assert argv[0] == "/usr/local/bin/mdtrace"
    # --ebpf parses every option of the line, then prints instead of tracing
    r = subprocess.run([sys.executable, "-m", "mdtrace.cli", *argv[1:], "--ebpf"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"// mdtrace {argv[1]} --ebpf")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze not installed (apt-get install systemd)")
@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    shim = tmp_path / "mdtrace"                       # verify wants ExecStart executable
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m mdtrace.cli "$@"\n')
    shim.chmod(0o755)
    write_all(tmp_path / "gen")                       # the man pages Documentation= names
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/usr/local/bin/mdtrace", str(shim)))
    r = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                       text=True, timeout=120,
                       env={**os.environ, "MANPATH": str(tmp_path / "gen" / "share" / "man")})
    assert r.returncode == 0 and r.stderr == "", r.stderr
