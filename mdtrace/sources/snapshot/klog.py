"""The kernel log since boot as ``kernel_log`` events (through the recorder's KmsgParser).

Two inputs: ``/dev/kmsg`` read from its first record without blocking (a fresh open starts at
the oldest record still in the ring buffer; EPIPE means records were overwritten meanwhile), or
text as ``dmesg``, ``journalctl -k`` or a saved kmsg dump print it.  Every event's time is the
log's own (``kmsg_us``, the same boot clock as /proc/uptime up to suspend time), so a finding
from an oops starts when the oops happened.
"""

from __future__ import annotations

import errno
import os
import re

import msgspec

from mdtrace.events import Event
from mdtrace.sources.kmsg import KmsgParser, parse_record

Records = list[tuple[int, str]]
_DMESG = re.compile(r"^\[\s*(?P<s>\d+)\.(?P<us>\d{1,9})\]\s?(?P<text>.*)$")
_KMSG = re.compile(r"^\d+,\d+,\d+,[^;]*;")
_JOURNAL = re.compile(r"^.*? kernel: ")
_DICT_LINE = re.compile(r"^ [A-Z_]+=")
MAX_RECORDS = 200_000


def read_kmsg(path: str = "/dev/kmsg") -> tuple[Records, str]:
    """All records of ``path`` from the oldest, and '' or why it could not be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return [], f"{path}: {exc.strerror}"
    out: Records = []
    try:
        while len(out) < MAX_RECORDS:
            try:
                raw = os.read(fd, 8192)
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue            # overwritten while we read: the next one follows
                if exc.errno == errno.EAGAIN:
                    break
                return out, f"{path}: {exc.strerror}"
            if not raw:
                break
            rec = parse_record(raw)
            if rec is not None:
                out.append(rec)
    finally:
        os.close(fd)
    return out, ""


def parse_text(text: str) -> Records:
    """``dmesg`` (``[  12.345678] msg``), ``journalctl -k`` (``... kernel: msg``), kmsg dump
    (``6,339,5140900,-;msg``) or bare lines (time 0) -> records."""
    out: Records = []
    for line in text.splitlines():
        if _DICT_LINE.match(line):
            continue                     # a kmsg record's KEY=value continuation
        if _KMSG.match(line):
            rec = parse_record(line.encode())
            if rec is not None:
                out.append(rec)
                continue
        line = _JOURNAL.sub("", line, count=1)
        m = _DMESG.match(line)
        if m:
            us = int(m.group("s")) * 1_000_000 + int(m.group("us").ljust(6, "0")[:6])
            out.append((us, m.group("text")))
        else:
            out.append((0, line))
    return out


def events(records: Records) -> list[Event]:
    """``kernel_log`` events of ``records``, each stamped with its own log time."""
    parser = KmsgParser(clock=lambda: 0)
    out: list[Event] = []
    for us, text in records:
        out += parser.feed(us, text)
    out += parser.flush()
    return [msgspec.structs.replace(e, ts=int(e.args.get("kmsg_us", 0)) * 1000) for e in out]
