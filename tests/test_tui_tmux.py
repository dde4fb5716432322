"""Drive the REAL `mdtrace top --replay` binary inside tmux: the screen shows the array from a
real recorded trace, `q` exits 0, and the terminal is restored (alternate screen left, cursor
visible)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from mdtrace.trace import TraceReader

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent / "mdtrace"
GOLDEN = ROOT / "tests" / "data" / "golden"

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed"),
    pytest.mark.skipif(not BIN.exists(), reason=f"{BIN} missing: run scripts/bootstrap.sh"),
]


def _trace() -> Path:
    found = sorted(GOLDEN.glob("*/resync_raid5.jsonl*"))
    if not found:
        pytest.skip("no golden resync_raid5 trace in tests/data/golden")
    return found[-1]


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True,
                          text=True).stdout


def _wait(pred, timeout: float = 20.0) -> bool:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


def _assert_exited_and_restored(sess: str, done: Path) -> None:
    """top exited 0 and left the terminal as it found it: main screen, cursor shown."""
    def screen() -> str:
        return _tmux("capture-pane", "-p", "-t", sess)

    assert _wait(done.exists), screen()
    assert done.read_text().strip() == "0"
    assert _wait(lambda: "TOP-EXITED" in screen())
    assert _tmux("display", "-p", "-t", sess, "#{alternate_on}").strip() == "0"
    assert _tmux("display", "-p", "-t", sess, "#{cursor_flag}").strip() == "1"
    assert "Traceback" not in screen()


def test_top_replay_in_tmux_quits_cleanly(tmp_path: Path) -> None:
    trace = _trace()
    arrays = {ev.array for ev in TraceReader(str(trace)) if ev.array}
    assert arrays, "golden trace names no array"
    sess = f"mdtrace-top-{uuid.uuid4().hex[:8]}"
    done = tmp_path / "rc"
    cmd = f"{BIN} top --replay {trace}; echo $? > {done}; echo TOP-EXITED"
    _tmux("new-session", "-d", "-s", sess, "-x", "160", "-y", "48", "bash", "--norc")
    try:
        _tmux("send-keys", "-t", sess, cmd, "Enter")

        def screen() -> str:
            return _tmux("capture-pane", "-p", "-t", sess)

        def painted() -> bool:
            # status line and footer are painted separately: under load the footer can lag
            # the status line by a frame, so wait for both before judging the screen
            s = screen()
            return "trace finished" in s and "Quit" in s

        assert _wait(painted), screen()
        shown = screen()
        assert "mdtrace top" in shown or "mode replay" in shown
        assert any(a in shown for a in arrays), shown
        assert "events " in shown and "Quit" in shown  # status line and footer bindings
        assert _tmux("display", "-p", "-t", sess, "#{alternate_on}").strip() == "1"
        _tmux("send-keys", "-t", sess, "q")
        _assert_exited_and_restored(sess, done)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", sess], capture_output=True)


def test_top_bad_trace_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "nope.jsonl"
    r = subprocess.run([str(BIN), "top", "--replay", str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "nope.jsonl" in lines[0], r.stderr


def test_top_sigterm_restores_the_terminal(tmp_path: Path) -> None:
    """systemd or `kill` ends top like `q`: alternate screen left, cursor back, exit 0."""
    trace = _trace()
    sess = f"mdtrace-top-{uuid.uuid4().hex[:8]}"
    done, pidf = tmp_path / "rc", tmp_path / "pid"
    cmd = (f"sh -c 'echo $$ > {pidf}; exec {BIN} top --replay {trace}'; echo $? > {done}; "
           "echo TOP-EXITED")
    _tmux("new-session", "-d", "-s", sess, "-x", "160", "-y", "48", "bash", "--norc")
    try:
        _tmux("send-keys", "-t", sess, cmd, "Enter")

        def screen() -> str:
            return _tmux("capture-pane", "-p", "-t", sess)

        assert _wait(lambda: "Quit" in screen() and pidf.exists()), screen()
        assert _tmux("display", "-p", "-t", sess, "#{alternate_on}").strip() == "1"
        subprocess.run(["kill", "-TERM", pidf.read_text().strip()], check=True)
        _assert_exited_and_restored(sess, done)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", sess], capture_output=True)
