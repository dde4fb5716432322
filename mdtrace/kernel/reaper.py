"""Remove our tracefs kprobe events when the tracing process dies, however it dies.

bcc makes every kretprobe with ``maxactive`` a tracefs event (``r64:kprobes/r_<fn>_bcc_<pid>``);
a clean exit removes them (``BPF.cleanup``), SIGKILL cannot.  So before attaching, the tracer
starts this small watcher as a child in its own session holding the read end of a pipe whose
write end only the tracer has.  The pipe reaches EOF when the tracer is gone (exit, crash,
SIGKILL: the kernel closes its files); the watcher then deletes the tracer's events
(mdtrace.kernel.tracefs) and exits.  The kernel may still hold an event busy for a moment
while the dead tracer's perf fds are released, so removal is retried for a few seconds.

It ignores SIGINT/SIGTERM/SIGHUP (a Ctrl-C or a service stop aimed at the tracer's group must
not kill it before the tracer is gone) and runs as ``python -m mdtrace.kernel.reaper PID``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from mdtrace.kernel.tracefs import pid_alive, remove_stale

RETRY_S = 10.0


class Reaper:
    """The tracer's side: the watcher process and the pipe that keeps it waiting."""

    def __init__(self, proc: subprocess.Popen[bytes], pipe: IO[bytes]) -> None:
        self.proc, self._pipe = proc, pipe

    def release(self) -> None:
        """A clean stop: close our end (the watcher then checks once and exits)."""
        try:
            self._pipe.close()
        except OSError:
            pass


def start(pid: int | None = None, sys_root: str = "/sys") -> Reaper | None:
    """Start the watcher for ``pid`` (default: this process); None where it cannot start."""
    pid = pid or os.getpid()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mdtrace.kernel.reaper", str(pid), sys_root],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)
    except OSError:
        return None
    assert proc.stdin is not None
    return Reaper(proc, proc.stdin)


def reap(pid: int, sys_root: Path = Path("/sys"), retry_s: float = RETRY_S,
         sleep: float = 0.2) -> tuple[list[str], list[str]]:
    """Delete the tracefs kprobe events ``pid`` made (it is gone, even if still a zombie)."""
    def alive(p: int) -> bool:
        return p != pid and pid_alive(p)

    removed: list[str] = []
    end = time.monotonic() + retry_s
    while True:
        got, failed = remove_stale(sys_root, alive)
        removed += got
        if not failed or time.monotonic() >= end:
            return removed, failed
        time.sleep(sleep)


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    pid = int(argv[0])
    sys_root = Path(argv[1]) if len(argv) > 1 else Path("/sys")
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    reap(pid, sys_root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
