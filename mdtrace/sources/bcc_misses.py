"""What the probes missed, counted: kretprobe misses, in-flight slot collisions, stale slots.

Three ways an IO can escape the in-kernel in-flight table (bpf/reshape_io.c), each reported as a
``lost`` event with a ``cause`` so the trace, the engine's health, the TUI banner, the metrics
and every report count it like a dropped ring-buffer record:

- ``kretprobe_missed``: a kretprobe has ``maxactive`` instances; a function entered while all are
  in use (many tasks asleep in raid5_make_request) gets no return probe.  The kernel counts
  these per event in tracefs ``kprobe_profile`` (third column), which lists our kretprobes
  because bcc makes them tracefs events (``r_<fn>_bcc_<pid>``).  Entry kprobes are perf-fd
  events the file does not list; they miss only on recursion.
- ``io_untracked``: two tasks whose tids share a slot (tid % IO_SLOTS); the second is not
  tracked (BPF array ``io_untracked``).
- ``stale_slot``: a missed return leaves the slot of a task that has long left
  raid5_make_request; the periodic scan would report it as blocked forever (a false F7).  A
  scan report is believed only if the task's kernel stack (``/proc/TID/stack``, root) still
  shows raid5_make_request; otherwise the slot is cleared and counted, never reported.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mdtrace.events import Event

_PROFILE = re.compile(r"^\s*(\S+)\s+(\d+)\s+(\d+)\s*$", re.M)
IO_FUNC = "raid5_make_request"


def kretprobe_event(symbol: str, pid: int) -> str:
    """bcc's tracefs event name for a kretprobe on ``symbol`` (``.``/``+`` become ``_``)."""
    return "r_" + re.sub(r"[.+]", "_", symbol) + f"_bcc_{pid}"


def parse_kprobe_profile(text: str) -> dict[str, int]:
    """``kprobe_profile`` -> {event name: missed count}."""
    return {m.group(1): int(m.group(3)) for m in _PROFILE.finditer(text)}


def read_profile(sys_root: Path = Path("/sys")) -> str:
    for d in (sys_root / "kernel" / "tracing", sys_root / "kernel" / "debug" / "tracing"):
        try:
            return (d / "kprobe_profile").read_text()
        except OSError:
            continue
    return ""


class MissCounter:
    """New misses since the last call, as (probe, cause, count)."""

    def __init__(self, exit_symbols: dict[str, str], pid: int,
                 profile: Callable[[], str] = read_profile) -> None:
        # tracefs event name -> probed function
        self._events = {kretprobe_event(sym, pid): func for func, sym in exit_symbols.items()}
        self._profile = profile
        self._seen: dict[str, int] = {}

    def _delta(self, key: str, value: int) -> int:
        d = value - self._seen.get(key, 0)
        if d > 0:
            self._seen[key] = value
        return max(d, 0)

    def poll(self, untracked: int | None) -> list[tuple[str, str, int]]:
        out: list[tuple[str, str, int]] = []
        missed = parse_kprobe_profile(self._profile()) if self._events else {}
        for ev, func in self._events.items():
            d = self._delta("kretprobe:" + func, missed.get(ev, 0))
            if d:
                out.append((func, "kretprobe_missed", d))
        if untracked is not None:
            d = self._delta("io_untracked", untracked)
            if d:
                out.append((IO_FUNC, "io_untracked", d))
        return out


def read_stack(tid: int, proc: Path = Path("/proc")) -> str | None:
    """The task's kernel stack; '' when the task is gone; None when it cannot be read."""
    try:
        return (proc / str(tid) / "stack").read_text()
    except FileNotFoundError:
        return ""
    except OSError:
        return None


def read_comm(tid: int, proc: Path = Path("/proc")) -> str:
    try:
        return (proc / str(tid) / "comm").read_text().strip()[:15]
    except OSError:
        return ""


class SlotVerifier:
    """Believe a scan's "still blocked" report only while the task is still in the function."""

    def __init__(self, stack: Callable[[int], str | None] = read_stack,
                 clear: Callable[[int], None] = lambda tid: None,
                 comm: Callable[[int], str] = lambda tid: read_comm(tid)) -> None:
        self._stack, self._clear, self._comm = stack, clear, comm
        self.stale = 0
        self._believed: dict[tuple[int, str], str] = {}

    def keep(self, ev: Event) -> bool:
        """Whether to deliver ``ev``; a believed scan report also gets the task's comm (the
        scan runs in another task's context, so the kernel side cannot fill it in)."""
        a = ev.args
        # only the periodic scan's reports (pid 0) of a sleeping request still in flight
        if ev.kind != "io_wait" or ev.pid or a.get("done") or a.get("mode") != "sleep":
            return True
        key = (ev.tid, str(a.get("io_id", "")))
        if key in self._believed:
            ev.comm = ev.comm or self._believed[key]
            return True
        text = self._stack(ev.tid)
        if text is None:          # cannot tell (not root): believe the kernel table
            return True
        if IO_FUNC in text:
            if len(self._believed) >= 4096:
                self._believed.clear()
            self._believed[key] = self._comm(ev.tid)
            ev.comm = ev.comm or self._believed[key]
            return True
        self.stale += 1
        self._clear(ev.tid)
        return False


def untracked_count(bpf: Any) -> int | None:
    """The in-kernel ``io_untracked`` counter, None where reshape_io is not loaded."""
    try:
        table = bpf[b"io_untracked"]
    except KeyError:
        return None
    try:
        return int(table[ctypes.c_int(0)].value)
    except (KeyError, IndexError):
        return 0


def clear_slot(bpf: Any, tid: int, slots: int = 128) -> None:
    """Zero the in-flight slot of ``tid`` (IO_SLOTS in bpf/reshape_io.c) if it still holds it."""
    try:
        table = bpf[b"io_inflight"]
        key = ctypes.c_int(tid % slots)
        cur = table[key]
        if int(cur.tid) == tid:
            table[key] = table.Leaf()
    except Exception:  # noqa: BLE001 - best effort: the slot may have been refilled meanwhile
        pass
