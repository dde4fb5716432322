"""The kernel log as events: oopses, BUGs, hung-task and soft-lockup reports, md/dm-raid lines.

A dead md kernel thread leaves no probe hit behind (it just stops calling md_check_recovery);
the kernel log is the only place that says it died, and which task.  Data volume is cut here:
one ``kernel_log`` event per report (header, task, RIP and the reliable call-trace frames),
one per md/dm-raid message line; everything else in the log is dropped.

:class:`KmsgParser` is pure (records in, events out) so it is tested on real kernel text;
:func:`start_kmsg_reader` feeds it from ``/dev/kmsg`` (new records only) in a thread.
"""

from __future__ import annotations

import errno
import os
import re
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mdtrace.events import Event

MAX_FRAMES = 16
MAX_TEXT = 240
MAX_LINES = 400          # a report longer than this is cut (its header and frames are kept)

# report headers: (regex, class).  Checked in order on every record's first line.
_HEADERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^kernel BUG at \S+"), "bug"),
    (re.compile(r"^BUG: (?!soft lockup)"), "bug"),
    (re.compile(r"^(general protection fault|Oops: |Internal error: Oops)"), "oops"),
    (re.compile(r"^WARNING: CPU: \d+ PID: \d+ at "), "warning"),
    (re.compile(r"^INFO: task (?P<comm>.+):(?P<pid>\d+) blocked for more than \d+ seconds"),
     "hung_task"),
    (re.compile(r"^(watchdog: )?BUG: soft lockup - CPU#\d+ stuck for \d+s! "
                r"\[(?P<comm>.+):(?P<pid>\d+)\]"), "soft_lockup"),
    (re.compile(r"^Kernel panic - not syncing"), "panic"),
)
# single md / dm-raid message lines worth keeping (drivers/md printk prefixes)
_MD_LINE = re.compile(r"^(md: |md/raid\d*|md/raid10|raid[0-9]+: |dm-raid|device-mapper: raid"
                      r"|md[0-9]+: |mdX: )")
_TASK = re.compile(r"^CPU: \d+ (UID: \d+ )?PID: (?P<pid>\d+) Comm: (?P<comm>\S+)")
_RIP = re.compile(r"^RIP: [0-9a-f]{4}:(?P<fn>[A-Za-z_][\w.]*)\+0x")
_FRAME = re.compile(r"^\s*(?P<q>\? )?(?P<fn>[A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+"
                    r"(\s+\[(?P<mod>\w+)\])?")


@dataclass
class _Report:
    cls: str
    text: str
    us: int
    comm: str = ""
    pid: int = 0
    rip: str = ""
    frames: list[str] = field(default_factory=list)
    in_trace: bool = False
    lines: int = 0


def parse_record(raw: bytes) -> tuple[int, str] | None:
    """A /dev/kmsg record ``pri,seq,usec,flags;text\\n KEY=val...`` -> (usec, text)."""
    head, sep, rest = raw.partition(b";")
    if not sep:
        return None
    parts = head.split(b",")
    try:
        us = int(parts[2])
    except (IndexError, ValueError):
        return None
    text = rest.split(b"\n", 1)[0].decode("utf-8", "replace")
    return us, text


class KmsgParser:
    """Kernel log lines -> ``kernel_log`` events (``clock`` gives each event's time)."""

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock
        self._cur: _Report | None = None

    def feed(self, us: int, text: str) -> list[Event]:
        out: list[Event] = []
        line = text.rstrip()
        for rx, cls in _HEADERS:
            m = rx.match(line)
            if m is None:
                continue
            cur = self._cur
            if cur is not None and cur.cls == "bug" and cls == "oops" and not cur.frames:
                return out        # "kernel BUG at ..." is followed by its own "Oops: ..."
            out += self.flush()
            gd = m.groupdict()
            self._cur = _Report(cls, line[:MAX_TEXT], us, comm=gd.get("comm") or "",
                                pid=int(gd.get("pid") or 0))
            return out
        cur = self._cur
        if cur is None:
            if _MD_LINE.match(line):
                out.append(Event(ts=self._clock(), kind="kernel_log",
                                 args={"class": "md", "text": line[:MAX_TEXT], "kmsg_us": us}))
            return out
        cur.lines += 1
        if (m := _TASK.match(line)) is not None:
            if not cur.comm:
                cur.comm, cur.pid = m.group("comm"), int(m.group("pid"))
        elif (m := _RIP.match(line)) is not None:
            if not cur.rip:
                cur.rip = m.group("fn")
        elif line.startswith("Call Trace:"):
            cur.in_trace = True
        elif cur.in_trace and (m := _FRAME.match(line)) is not None:
            if not m.group("q") and len(cur.frames) < MAX_FRAMES:
                mod = m.group("mod")
                cur.frames.append(m.group("fn") + (f" [{mod}]" if mod else ""))
        elif line.startswith("---[ end trace") or cur.lines >= MAX_LINES or (
                line.strip() == "</TASK>" and cur.cls in ("hung_task", "soft_lockup")):
            out += self.flush()
        elif _MD_LINE.match(line):
            out.append(Event(ts=self._clock(), kind="kernel_log",
                             args={"class": "md", "text": line[:MAX_TEXT], "kmsg_us": us}))
        return out

    def flush(self) -> list[Event]:
        """End the report being collected (its end marker never came: call when idle)."""
        cur, self._cur = self._cur, None
        if cur is None:
            return []
        args: dict[str, object] = {"class": cur.cls, "text": cur.text, "kmsg_us": cur.us,
                                   "task": cur.comm, "task_pid": cur.pid}
        if cur.rip:
            args["rip"] = cur.rip
        if cur.frames:
            args["frames"] = list(cur.frames)
        return [Event(ts=self._clock(), kind="kernel_log", pid=cur.pid, tid=cur.pid,
                      comm=cur.comm, args=args)]

    @property
    def pending(self) -> bool:
        return self._cur is not None


def start_kmsg_reader(stop: threading.Event, sink: Callable[[Event], None], *,
                      path: str = "/dev/kmsg", idle_flush_s: float = 1.0,
                      warn: Callable[[str], None] | None = None) -> threading.Thread | None:
    """Feed new kernel log records from ``path`` to ``sink`` as events until ``stop``.

    Starts at the end of the log (what happened before the trace is not in it).  Without
    access (no /dev/kmsg, not root, dmesg_restrict) it warns once and returns None: the trace
    then lacks only the kernel-log evidence.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(fd, 0, os.SEEK_END)
    except OSError as exc:
        if warn is not None:
            warn(f"mdtrace: kernel log not traced ({path}: {exc.strerror}): oopses of md "
                 "threads will not be diagnosed")
        return None
    parser = KmsgParser()

    def run() -> None:
        last = time.monotonic()
        try:
            while not stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.25)
                if not ready:
                    if parser.pending and time.monotonic() - last > idle_flush_s:
                        for ev in parser.flush():
                            sink(ev)
                    continue
                try:
                    raw = os.read(fd, 8192)
                except OSError as exc:
                    if exc.errno == errno.EPIPE:      # records overwritten before we read them
                        continue
                    if exc.errno == errno.EAGAIN:
                        continue
                    return
                last = time.monotonic()
                rec = parse_record(raw)
                if rec is not None:
                    for ev in parser.feed(*rec):
                        sink(ev)
            for ev in parser.flush():
                sink(ev)
        finally:
            os.close(fd)

    th = threading.Thread(target=run, name="mdtrace-kmsg", daemon=True)
    th.start()
    return th

