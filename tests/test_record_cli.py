"""`mdtrace record` where live tracing is impossible: one line, exit 2, no trace file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MAIN = "from mdtrace.cli import main; main()"


@pytest.mark.skipif(Path("/sys/kernel/btf/md_mod").exists(), reason="host has md BTF")
def test_record_without_md_is_a_one_line_error(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl.gz"
    r = subprocess.run([sys.executable, "-c", MAIN, "record", "-o", str(out), "--duration",
                        "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mdtrace: error:"), r.stderr
    assert "md" in lines[0] and "Traceback" not in r.stderr
    assert not out.exists()


def test_record_with_missing_btf_dir(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", MAIN, "record", "-o", str(tmp_path / "t"),
                        "--btf-dir", str(tmp_path / "none")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    assert "no kernel BTF" in r.stderr or "bcc is not importable" in r.stderr
