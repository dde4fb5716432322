"""The built wheel is a tracer: it carries the BPF C and finds it where it is installed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_bpf_programs(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("mdtrace-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.removeprefix("mdtrace/bpf/") for n in names if n.startswith("mdtrace/bpf/")}
    in_tree = {p.name for p in (ROOT / "mdtrace" / "bpf").iterdir() if p.suffix in (".c", ".h")}
    assert in_tree and shipped == in_tree
    # the harness is not the product (issue 15): no vm harness, load generator or test data
    harness = sorted(n for n in names if n.startswith(("vmtest/", "tests/", "mdtrace/vm/"))
                     or "loadgen" in n or "exporter_load" in n)
    assert not harness, harness
    assert not any(n.startswith("mdtrace/") and "/guest/" in n for n in names)
    # installed elsewhere, bcc_source looks beside the package, not in a checkout
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    out = subprocess.run([sys.executable, "-c", "from mdtrace.sources import bcc_source as b; "
                          "print(b.bpf_dir())"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert Path(out.stdout.strip()) == site / "mdtrace" / "bpf"
