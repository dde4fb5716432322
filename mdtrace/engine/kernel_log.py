"""Kernel-log reports (``kernel_log`` events) as array facts: which md thread died, when.

An oops or BUG kills the task it happens in (die() -> make_task_dead()).  When that task is
an md kernel thread (the personality's daemon, e.g. ``md0_raid5``, or a sync thread) nothing
restarts it: the array's stripes, its sync thread's reap and every IO waiting on it are lost
until reboot.  This module names the array from the task and keeps the evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mdtrace.events import Event

# report classes (mdtrace.sources.kmsg) whose task the kernel kills: die() ->
# make_task_dead() for BUG()/oops; a WARNING, hung-task or soft-lockup report leaves it alive
FATAL_CLASSES = frozenset({"bug", "oops", "panic"})
_MD_THREAD = re.compile(r"(md\d+|mdX)_(\w+)")


@dataclass
class ThreadDeath:
    """An md kernel thread killed by a kernel report."""

    ts: int
    thread: str          # task name, e.g. md0_raid5
    role: str            # raid5 (the personality daemon) / resync / reshape / ...
    pid: int
    text: str            # the report's first line, e.g. "kernel BUG at mm/slub.c:550!"
    rip: str
    frames: tuple[str, ...]
    event: Event

    @property
    def daemon(self) -> bool:
        """The personality thread (raid1/raid5/raid10d...) rather than a sync thread."""
        return self.role.startswith("raid")

    def stack(self, n: int = 6) -> str:
        """'md_end_clone_io [md_mod] <- ... <- raid5d [raid456]': innermost first."""
        frames = [f for f in self.frames if not f.startswith(("kthread", "ret_from_fork"))]
        return " <- ".join(frames[:n]) or self.rip


def md_thread_array(comm: str) -> tuple[str, str] | None:
    """``md0_raid5`` -> ('md0', 'raid5'); ``mdX_resync`` -> ('mdX', 'resync'): md names its
    threads ``<mdname>_<name>`` (md_register_thread, every version); a dm-raid mddev has no
    gendisk, so mdname() gives 'mdX'.  None for any other task."""
    m = _MD_THREAD.fullmatch(comm)
    return (m.group(1), m.group(2)) if m else None


def thread_death(ev: Event) -> tuple[str, ThreadDeath] | None:
    """(md name as the thread calls it, the death) when ``ev`` reports an md thread killed."""
    a = ev.args
    if a.get("class") not in FATAL_CLASSES:
        return None
    comm = str(a.get("task") or ev.comm)
    named = md_thread_array(comm)
    if named is None:
        return None
    frames = a.get("frames")
    return named[0], ThreadDeath(
        ts=ev.ts, thread=comm, role=named[1], pid=int(a.get("task_pid") or ev.pid or 0),
        text=str(a.get("text", "")), rip=str(a.get("rip", "")),
        frames=tuple(str(f) for f in frames) if isinstance(frames, list) else (), event=ev)


def superseded(d: ThreadDeath, threads: dict[str, int] | None) -> bool:
    """The dead thread's name runs again under another pid (a snapshot's /proc): the oops
    killed an earlier array of that name (the log covers the whole boot)."""
    if not threads or d.thread not in threads:
        return False
    return bool(d.pid) and threads[d.thread] != d.pid
