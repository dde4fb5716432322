"""The diagnose snapshot for live modes: what already hangs at start, and tasks re-scanned after.

A live front end attached after "the array hangs" sees nothing of the hang in its probes: the
write entered raid5_make_request before the in-flight table existed, the DONE-never-reaped
array may never run md_check_recovery again, the oops that killed raid5d is already in the
log.  So `run`, `top` and `exporter` first feed the engine the same snapshot `mdtrace diagnose`
reads (:func:`mdtrace.sources.snapshot.collect`: sysfs, dmsetup, blocked tasks' stacks, the
kernel log since boot), before the BPF compile, and then re-scan the blocked tasks every few
seconds: a task still blocked is re-reported (the engine's thresholds judge its growing wait,
as they do the BPF scan's re-reports), one no longer blocked is reported gone
(``task_unblocked``), so a finding that rests on it ends after the remedy.

Events are stamped on the live clock (CLOCK_MONOTONIC, what bpf_ktime_get_ns uses); a blocked
task's start is ``now - blocked_s`` (engine/blocked.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from mdtrace.events import Event
from mdtrace.sources.snapshot import Collected, DmsetupStatus, KernelLog, collect, klog
from mdtrace.sources.snapshot import run_dmsetup_status as _dmsetup

RESCAN_S = 2.0


class BlockedTaskWatch:
    def __init__(self, sys_root: str | Path = "/sys", proc_root: str | Path = "/proc", *,
                 dmsetup: DmsetupStatus | None = _dmsetup,
                 kernel_log: KernelLog | None = klog.read_kmsg,
                 clock: Callable[[], int] = time.monotonic_ns,
                 collect_fn: Callable[..., Collected] = collect) -> None:
        self.sys_root, self.proc_root = Path(sys_root), Path(proc_root)
        self._dmsetup, self._kernel_log = dmsetup, kernel_log
        self._clock, self._collect = clock, collect_fn
        self._blocked: dict[int, Event] = {}     # tid -> its last task_blocked
        self.notes: list[str] = []
        self.scans = 0

    def _stamp(self, ev: Event, now: int) -> Event:
        ts = min(ev.ts, now) if ev.kind == "kernel_log" else now
        return ev if ts == ev.ts else msgspec.structs.replace(ev, ts=ts)

    def startup(self) -> list[Event]:
        """The whole snapshot (arrays, kernel log since boot, blocked tasks), as events."""
        got = self._collect(self.sys_root, self.proc_root, dmsetup=self._dmsetup,
                            kernel_log=self._kernel_log)
        self.notes = [n for n in got.notes if not n.startswith("kernel-internal state")]
        now = self._clock()
        out = [self._stamp(ev, now) for ev in got.events]
        self._blocked = {ev.tid: ev for ev in out if ev.kind == "task_blocked"}
        self.scans += 1
        return out

    def rescan(self) -> list[Event]:
        """Tasks blocked now (re-reported) and those blocked before but not now (gone)."""
        got = self._collect(self.sys_root, self.proc_root, dmsetup=self._dmsetup,
                            kernel_log=None)
        now = self._clock()
        self.scans += 1
        current = {ev.tid: self._stamp(ev, now) for ev in got.events
                   if ev.kind == "task_blocked"}
        out = list(current.values())
        for tid, old in self._blocked.items():
            if tid not in current:
                out.append(Event(ts=now, kind="task_unblocked", array=old.array,
                                 dm_name=old.dm_name, pid=old.pid, tid=tid, comm=old.comm))
        self._blocked = current
        return out
