"""Tracefs kprobe events a dead mdtrace left behind, and their removal.

bcc attaches a kretprobe with ``maxactive`` through a tracefs event
(``r64:kprobes/r_<func>_bcc_<pid>`` in kprobe_events) instead of a perf-fd kprobe; a process
killed by SIGKILL never removes it, so it outlives us on every kernel.  Ours carry the pid
of the process that made them: an event whose pid is gone is stale and can go (a live
process's events are left alone, whoever it is).  A pid from another pid namespace looks dead
here; its events are in use, and the kernel refuses to delete an event in use (EBUSY), so
such a removal fails harmlessly and is reported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

_EVENT = re.compile(r"^[pr]\d*:(?P<ev>[^/\s]+/\S+?_bcc_(?P<pid>\d+))\s", re.M)


def tracefs_dirs(sys_root: Path = Path("/sys")) -> list[Path]:
    return [sys_root / "kernel" / "tracing", sys_root / "kernel" / "debug" / "tracing"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_bcc_events(kprobe_events: str, alive: Callable[[int], bool] = pid_alive,
                     ) -> list[str]:
    """``group/name`` of every bcc-made kprobe event whose creating pid is gone."""
    out = []
    for m in _EVENT.finditer(kprobe_events):
        if not alive(int(m.group("pid"))) and m.group("ev") not in out:
            out.append(m.group("ev"))
    return out


def find_stale(sys_root: Path = Path("/sys"),
               alive: Callable[[int], bool] = pid_alive) -> tuple[Path | None, list[str]]:
    """(the kprobe_events file, stale events in it); (None, []) without tracefs access."""
    for d in tracefs_dirs(sys_root):
        f = d / "kprobe_events"
        try:
            text = f.read_text()
        except OSError:
            continue
        return f, stale_bcc_events(text, alive)
    return None, []


def remove_stale(sys_root: Path = Path("/sys"),
                 alive: Callable[[int], bool] = pid_alive) -> tuple[list[str], list[str]]:
    """Remove stale bcc kprobe events: (removed, could not remove: 'event: why')."""
    f, stale = find_stale(sys_root, alive)
    removed, failed = [], []
    for ev in stale:
        assert f is not None
        # "-:group/name" deletes one event.  Plain O_WRONLY: O_TRUNC would delete every
        # event, and Python's append mode seeks to the end, which tracefs refuses (EINVAL)
        try:
            fd = os.open(f, os.O_WRONLY)
            try:
                os.write(fd, f"-:{ev}\n".encode())
            finally:
                os.close(fd)
            removed.append(ev)
        except OSError as exc:
            failed.append(f"{ev}: {exc.strerror}")
    return removed, failed
