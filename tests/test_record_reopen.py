"""`mdtrace record` SIGHUP: the renamed file is complete, the new one reads on its own."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from mdtrace.commands.record import TraceOutput, _on_sighup, _start_reopener
from mdtrace.events import Event
from mdtrace.trace import TraceHeader, TraceReader


def _ev(ts: int, kind: str = "check_recovery_enter") -> Event:
    return Event(ts=ts, kind=kind, array="md0")


def test_rename_then_sighup_rotates_the_trace(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl.gz"
    seed = [Event(ts=1, kind="probe_status", args={"probe": "md_do_sync", "attached": True})]
    out = TraceOutput(str(path), TraceHeader(kernel="6.1.0-56-amd64", source="bcc"),
                      lambda: list(seed))
    stop, flag = threading.Event(), threading.Event()
    said: list[str] = []
    _start_reopener(stop, flag, out, said.append)
    for t in range(10):
        out.write(_ev(100 + t))
    first = tmp_path / "scenario1.jsonl.gz"
    path.rename(first)
    with _on_sighup(flag):
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not said and time.monotonic() < deadline:
            time.sleep(0.05)
    assert said and said[0].startswith(f"mdtrace: reopened {path}"), said
    for t in range(5):
        out.write(_ev(200 + t, "io_stats"))
    stop.set()
    out.close()
    old = list(TraceReader(first))        # complete: gzip trailer, no --skip-bad needed
    new = list(TraceReader(path))
    assert [e.ts for e in old] == list(range(100, 110))
    assert new[0].kind == "probe_status" and [e.ts for e in new[1:]] == list(range(200, 205))
    assert out.files == 2 and out.count == 16
    out.write(_ev(999))                   # after close: dropped, not an error
    assert out.count == 16
