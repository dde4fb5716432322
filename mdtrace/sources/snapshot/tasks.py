"""Every task asleep in md/dm/raid code, and every md/dm kernel thread, from ``/proc``.

Per task (``/proc/PID/task/TID``): the scheduler state from ``stat`` (D, S, I, R, Z), ``wchan``,
the kernel stack (``stack``: root with CAP_SYS_ADMIN only; unreadable stacks are counted, not
guessed), ``comm``, and how long it has been off the CPU: ``se.exec_start`` of ``sched``
(CONFIG_SCHED_DEBUG; the rq clock in ms, updated when the task last ran) against
``/proc/uptime`` -- approximate (the rq task clock excludes IRQ time), and unknown without
``sched``.  Per process: the block devices it holds open (``fd``) and its arguments, which tie
it to an array.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mdtrace.engine.blocked import idle, is_md_frame, md_frames

_STACK_LINE = re.compile(r"^\[<[0-9a-fx]+>\]\s+(?P<fn>[A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+"
                         r"(?:\s+\[(?P<mod>\w+)\])?")
_MD_THREAD = re.compile(r"^(md\d+|mdX)_\w+$")
_DM_THREAD = re.compile(r"^(kdmflush|kcopyd|kdmremove|dm_bufio_cache|kdmraid|dm-\w+)(/\d+)?")
MAX_FDS = 256
_MD_DEV = re.compile(r"^/dev/(md\d+|md/.+|dm-\d+|mapper/.+)$")
# innermost frames of an IO wait the kernel wakes on a timer so hung_task stays quiet: 6.1-6.12
# submit_bio_wait -> blk_wait_io() (block/blk.h) waits with
# wait_for_completion_io_timeout(hung_task_timeout_secs / 2), blk_io_schedule()
# (block/blk-core.c) with io_schedule_timeout(the same); each wake-up resets se.exec_start,
# so the off-CPU time read for such a task is since its last wake-up, not since the IO began
TIMED_IO_WAITS = frozenset({"submit_bio_wait", "blk_wait_io", "blk_io_schedule",
                            "io_schedule_timeout", "wait_for_completion_io_timeout"})


@dataclass(frozen=True)
class TaskFacts:
    tid: int
    pid: int
    comm: str
    state: str
    wchan: str
    frames: tuple[str, ...] | None     # None: stack unreadable
    blocked_s: float | None
    devices: tuple[str, ...] = ()       # /dev paths of open block devices
    argv: tuple[str, ...] = ()
    # '' or "FRAME, woken every N s": a timed IO wait (TIMED_IO_WAITS), blocked_s is since
    # its last wake-up
    timed_wait: str = ""
    # running (R), no md frame caught, but holding an md/dm block device open: 6.9+ busy-
    # retries IO refused across a reshape that cannot move (md_handle_request's loop), so such
    # a task is the IO's only trace besides the kernel log; kept only with that log evidence
    # (sources/snapshot/__init__.py)
    spinning: bool = False

    @property
    def md_thread(self) -> bool:
        return bool(_MD_THREAD.match(self.comm))

    @property
    def dm_thread(self) -> bool:
        return bool(_DM_THREAD.match(self.comm))

    @property
    def idle(self) -> bool:
        """Asleep in an md/dm thread's wait for work (its stack read): a sync thread seen so
        has returned from md_do_sync and waits to be reaped (engine/detectors/sync_stop.py)."""
        return self.state in ("S", "I") and bool(self.frames) and idle(self.frames or ())

    @property
    def blocked(self) -> bool:
        """In D state, or asleep/running in md/dm code other than a thread's idle wait."""
        if self.state == "D" or self.spinning:
            return True
        frames = self.frames if self.frames else ((self.wchan,) if self.wchan else ())
        return bool(md_frames(frames)) and not idle(frames)


def parse_stack(text: str) -> tuple[str, ...]:
    """``/proc/PID/stack`` text -> frames innermost first, as ``fn [module]`` (the kernel-log
    parser's form).  Addresses (``[<0>]`` since 4.x hides them) are dropped."""
    out = []
    for line in text.splitlines():
        m = _STACK_LINE.match(line.strip())
        if m:
            mod = m.group("mod")
            out.append(m.group("fn") + (f" [{mod}]" if mod else ""))
    return tuple(out)


def parse_stat(text: str) -> tuple[str, str] | None:
    """``/proc/T/stat`` -> (comm, state).  comm is between the first '(' and the last ')'
    (it may hold spaces and parentheses)."""
    a, b = text.find("("), text.rfind(")")
    if a < 0 or b < a:
        return None
    rest = text[b + 1:].split()
    return (text[a + 1:b], rest[0]) if rest else None


def parse_exec_start_ms(text: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("se.exec_start"):
            try:
                return float(line.split(":", 1)[1])
            except (IndexError, ValueError):
                return None
    return None


def _read(p: Path) -> str | None:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return None


def _devices(proc_pid: Path) -> tuple[str, ...]:
    out: list[str] = []
    try:
        fds = list(os.scandir(proc_pid / "fd"))
    except OSError:
        return ()
    for ent in fds[:MAX_FDS]:
        try:
            target = os.readlink(ent.path)
        except OSError:
            continue
        if target.startswith("/dev/") and target not in out:
            out.append(target)
    return tuple(out)


def _argv(proc_pid: Path) -> tuple[str, ...]:
    try:
        raw = (proc_pid / "cmdline").read_bytes()
    except OSError:
        return ()
    return tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)[:32]


def timed_wait(frames: tuple[str, ...] | None, wchan: str, hung_timeout_s: int | None) -> str:
    """'' or 'submit_bio_wait, woken every 5 s' for a timed IO wait (TIMED_IO_WAITS) while
    hung_task's timeout is set (0 disables the timer: an untimed wait)."""
    first = (frames[0] if frames else wchan).split(" ", 1)[0].split("+", 1)[0].split(".", 1)[0]
    if first not in TIMED_IO_WAITS or not hung_timeout_s:
        return ""
    return f"{first}, woken every {hung_timeout_s / 2:g} s"


def wanted(comm: str, state: str, wchan: str, frames: tuple[str, ...] | None) -> bool:
    """Keep md/dm threads, D tasks, and S/I/R tasks whose stack (or wchan) is in md/dm code
    (but not an md/dm thread's idle wait)."""
    if _MD_THREAD.match(comm) or _DM_THREAD.match(comm) or state == "D":
        return True
    if frames:
        return bool(md_frames(frames)) and not idle(frames)
    return bool(wchan) and is_md_frame(wchan) and not idle((wchan,))


@dataclass
class TaskScan:
    tasks: list[TaskFacts]
    stacks_unreadable: int = 0
    sched_unreadable: int = 0
    seen: int = 0


def scan(proc_root: Path, now_s: float | None) -> TaskScan:
    """Walk ``proc_root/*/task/*``; tasks that vanish meanwhile are skipped."""
    res = TaskScan([])
    hung = (_read(proc_root / "sys" / "kernel" / "hung_task_timeout_secs") or "").strip()
    hung_s = int(hung) if hung.isdigit() else None
    try:
        pids = sorted((int(e.name), e.path) for e in os.scandir(proc_root) if e.name.isdigit())
    except OSError:
        return res
    for pid, ppath in pids:
        proc_pid = Path(ppath)
        try:
            tids = sorted(int(e.name) for e in os.scandir(proc_pid / "task") if e.name.isdigit())
        except OSError:
            continue
        per_proc: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        for tid in tids:
            t = proc_pid / "task" / str(tid)
            stat = _read(t / "stat")
            parsed = parse_stat(stat) if stat else None
            if parsed is None:
                continue
            res.seen += 1
            comm, state = parsed
            wchan = (_read(t / "wchan") or "").strip()
            wchan = "" if wchan in ("0", "") else wchan
            if state in ("Z", "X"):
                continue
            stack = _read(t / "stack")
            frames = parse_stack(stack) if stack is not None else None
            if frames is None:
                res.stacks_unreadable += 1
            spinning = False
            if not wanted(comm, state, wchan, frames):
                if state != "R" or pid == os.getpid():
                    continue
                if per_proc is None:
                    per_proc = (_devices(proc_pid), _argv(proc_pid))
                if not any(_MD_DEV.match(d) for d in per_proc[0]):
                    continue
                spinning = True
            blocked = None
            if state in ("D", "S", "I") and now_s is not None:
                sched = _read(t / "sched")
                start = parse_exec_start_ms(sched) if sched else None
                if start is None:
                    res.sched_unreadable += 1
                else:
                    blocked = round(max(now_s - start / 1000.0, 0.0), 1)
            if per_proc is None:
                per_proc = (_devices(proc_pid), _argv(proc_pid))
            res.tasks.append(TaskFacts(tid=tid, pid=pid, comm=comm, state=state, wchan=wchan,
                                       frames=frames, blocked_s=blocked,
                                       devices=per_proc[0], argv=per_proc[1],
                                       timed_wait=timed_wait(frames, wchan, hung_s)
                                       if state == "D" else "", spinning=spinning))
    return res
