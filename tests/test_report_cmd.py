"""`mdtrace report` end to end through the installed console script."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

MDTRACE = [sys.executable, "-m", "mdtrace.cli"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MDTRACE, *args], capture_output=True, text=True, timeout=120)


def test_default_reports_bundled_real_kernel_example() -> None:
    res = _run("report")
    assert res.returncode == 0, res.stderr
    assert "[F7]" in res.stdout and "sync_action" in res.stdout
    assert "bundled example" in res.stderr


def test_json_report_schema() -> None:
    res = _run("report", "--format", "json")
    data = json.loads(res.stdout)
    assert data["schema_version"] == 1 and data["kernel"] == "6.1.0-56-amd64"
    f7 = [f for f in data["findings"] if f["code"] == "F7"]
    assert f7 and f7[0]["details"]["reason"] == "frozen" and f7[0]["remedy"]
    assert "syncing" in data["arrays"]["md0"]["history"]


def _bad_files(tmp: Path) -> dict[str, Path]:
    good = (Path(__file__).parent / "data" / "golden" / "6.12.117+deb12-amd64"
            / "resync_raid5.jsonl.gz").read_bytes()
    files = {
        "empty": b"", "garbage": b"\x00\x01garbage\n", "truncated_gzip": good[: len(good) // 2],
        "unknown_version": b'{"format": "mdtrace-trace", "version": 99}\n',
        "wrong_schema": gzip.decompress(good).split(b"\n")[0] + b'\n{"t": "x", "k": 3}\n',
    }
    out = {}
    for name, data in files.items():
        p = tmp / name
        p.write_bytes(data)
        out[name] = p
    out["missing"] = tmp / "does-not-exist"
    return out


@pytest.mark.parametrize("case", ["empty", "garbage", "unknown_version",
                                  "wrong_schema", "missing"])
def test_bad_input_one_line_exit_2(tmp_path: Path, case: str) -> None:
    res = _run("report", str(_bad_files(tmp_path)[case]))
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
