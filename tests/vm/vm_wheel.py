"""The wheel the guests install mdtrace from, built once per test session.

Guest jobs of different kernels run side by side (conftest.py, lanes) and both need it:
two `pip wheel` runs over the same tree at once race in its build directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_LOCK = threading.Lock()
_BUILT: list[Path] = []


def wheel_into(dest: Path) -> Path:
    """``dest`` emptied and holding this checkout's wheel (built on the first call)."""
    with _LOCK:
        if not _BUILT:
            tmp = Path(tempfile.mkdtemp(prefix="mdtrace-vm-wheel-"))
            r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                                "--no-build-isolation", "-q", "-w", str(tmp), str(ROOT)],
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"pip wheel of {ROOT} failed: {r.stderr[-2000:]}")
            _BUILT.extend(sorted(tmp.glob("mdtrace-*.whl")))
            if not _BUILT:
                raise RuntimeError(f"pip wheel of {ROOT} left no mdtrace-*.whl in {tmp}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for w in _BUILT:
        shutil.copy2(w, dest / w.name)
    return dest
