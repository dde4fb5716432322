"""A SIGKILLed tracer's tracefs kprobe events are removed by its watcher (kernel/reaper.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mdtrace.kernel.reaper import reap

TRACER = """
import sys, time
from mdtrace.kernel import reaper
r = reaper.start(sys_root=sys.argv[1])
print("watching" if r else "no-reaper", r.proc.pid if r else 0, flush=True)
time.sleep(120)
"""


def _kprobe_events(root: Path) -> Path:
    tr = root / "kernel" / "tracing"
    tr.mkdir(parents=True, exist_ok=True)
    return tr / "kprobe_events"


def test_sigkill_of_the_tracer_removes_its_events(tmp_path: Path) -> None:
    sysroot = tmp_path / "sys"
    ke = _kprobe_events(sysroot)
    ke.write_text("")
    tracer = subprocess.Popen([sys.executable, "-c", TRACER, str(sysroot)],
                              stdout=subprocess.PIPE, text=True)
    assert tracer.stdout is not None
    word, watcher = tracer.stdout.readline().split()
    assert word == "watching"
    # what bcc would have made for the tracer, and an event of a live process (this one)
    ke.write_text(f"r64:kprobes/r_md_do_sync_bcc_{tracer.pid} md_do_sync\n"
                  f"r64:kprobes/r_md_do_sync_bcc_{os.getpid()} md_do_sync\n")
    tracer.send_signal(signal.SIGKILL)
    tracer.wait(timeout=30)
    want = f"-:kprobes/r_md_do_sync_bcc_{tracer.pid}\n"
    end = time.monotonic() + 30
    while time.monotonic() < end and not ke.read_text().startswith(want):
        time.sleep(0.1)
    # a regular file stands in for tracefs: the delete command is written at offset 0
    assert ke.read_text().startswith(want), ke.read_text()
    assert f"-:kprobes/r_md_do_sync_bcc_{os.getpid()}" not in ke.read_text()
    # and the watcher is gone once done (it is not this test's child: poll its pid)
    end = time.monotonic() + 30
    while time.monotonic() < end and Path(f"/proc/{watcher}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{watcher}").exists()


def test_reap_retries_while_the_kernel_holds_the_event_busy(tmp_path: Path,
                                                            monkeypatch) -> None:  # noqa: ANN001
    from mdtrace.kernel import reaper

    calls: list[int] = []

    def fake_remove(_root, alive):  # noqa: ANN001, ANN202
        calls.append(1)
        assert alive(4242) is False          # the dead tracer, even as a zombie
        if len(calls) < 3:
            return [], ["kprobes/r_md_do_sync_bcc_4242: Device or resource busy"]
        return ["kprobes/r_md_do_sync_bcc_4242"], []

    monkeypatch.setattr(reaper, "remove_stale", fake_remove)
    removed, failed = reap(4242, tmp_path, retry_s=5, sleep=0.01)
    assert removed == ["kprobes/r_md_do_sync_bcc_4242"] and failed == [] and len(calls) == 3
