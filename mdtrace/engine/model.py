"""Data the engine hands to front ends: findings, per-array views, tracer health, snapshot.

Front ends (TUI, exporter, report) read only these types; they never see BPF or raw events
beyond the evidence attached to findings.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field
from typing import Any

from mdtrace.engine.blocked import BlockedTask
from mdtrace.engine.dm_context import DmMemberView
from mdtrace.events import Event

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:
    class StrEnum(str, enum.Enum):
        """3.11's enum.StrEnum as far as mdtrace uses it: members are their values for str(),
        format() and f-strings (a plain ``(str, Enum)`` prints ``Severity.INFO``)."""

        def __str__(self) -> str:
            return str(self.value)


class Lifecycle(StrEnum):
    """Where an array's sync thread is in its lifetime: registered (md_start_sync ->
    md_register_thread), md_do_sync running, MD_RECOVERY_DONE set, reaped
    (md_check_recovery -> md_reap_sync_thread)."""

    IDLE = "idle"            # no sync thread, nothing requested
    NEEDED = "needed"        # step 1: MD_RECOVERY_NEEDED set, daemon not yet acted
    RUNNING = "running"      # step 2: RUNNING set / sync thread registered, md_do_sync not seen
    SYNCING = "syncing"      # step 3: md_do_sync executing
    DONE = "done"            # step 3 ended: DONE set, waiting for the daemon to reap
    REAPED = "reaped"        # step 4 done (transient; becomes IDLE on the next event)
    STOPPED = "stopped"      # array stopped
    UNKNOWN = "unknown"      # joined mid-stream, not enough evidence yet


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass
class Finding:
    """One diagnosed problem.  ``code`` is F1..F15 (README "What it finds", docs/engine.md)."""

    code: str
    title: str
    array: str
    start_ns: int
    severity: Severity
    explanation: str
    remedy: str
    fix: str = ""                    # fixing kernel change(s), e.g. "1baae052cccd (6.8)"
    evidence: list[Event] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    end_ns: int | None = None        # None while still active
    last_ns: int = 0                 # last time the condition was confirmed
    key: str = ""                    # dedup key (code + array + discriminator)

    @property
    def active(self) -> bool:
        return self.end_ns is None


@dataclass
class IoWaitView:
    io_id: str
    tid: int
    comm: str
    sector: int
    sectors: int
    rw: str
    since_ns: int
    wait_ns: int
    mode: str
    across_reshape: bool


@dataclass
class ArrayView:
    """What the engine knows about one array right now."""

    name: str                         # md0 / dm-3
    kind: str = "md"                  # md | dm-raid
    dm_name: str = ""                 # vg-lv for dm-raid
    level: str = ""
    generation: int = 0               # bumps when an array of this name is stopped & recreated
    lifecycle: Lifecycle = Lifecycle.UNKNOWN
    lifecycle_since_ns: int = 0
    recovery: list[str] = field(default_factory=list)  # decoded canonical names
    recovery_mask: int = 0
    flags: list[str] = field(default_factory=list)
    ro: int = 0
    suspended: int = 0
    dm_suspended: bool = False
    sync_thread: bool = False
    sync_action: str = ""
    reshape_pos: int | None = None
    progress_done: int = 0
    progress_total: int = 0
    speed_sectors_per_s: float = 0.0
    eta_s: float | None = None
    raid_disks: int | None = None    # sysfs raid_disks (poller)
    degraded: int | None = None      # sysfs degraded: missing members
    blocked_io: list[IoWaitView] = field(default_factory=list)
    oldest_wait_s: float = 0.0
    locks_held: list[str] = field(default_factory=list)
    last_event_ns: int = 0
    findings_active: list[str] = field(default_factory=list)  # codes
    history: list[tuple[int, str]] = field(default_factory=list)  # (ts, lifecycle) bounded
    counters: dict[str, int] = field(default_factory=dict)       # events by kind
    # dm-raid: the LV's hidden sub-LVs (rimage/rmeta...) lvm suspended with it; context only
    dm_members: list[DmMemberView] = field(default_factory=list)
    # stopped longer than the retention window: kept only for a post-mortem report (live
    # front ends such as the exporter leave it out; engine/retention.py)
    retired: bool = False


@dataclass
class TracerHealth:
    mode: str = "replay"              # bcc | sysfs | replay | synthetic
    kernel: str = ""
    events_total: int = 0
    events_by_kind: dict[str, int] = field(default_factory=dict)
    lost_total: int = 0
    lost_by_probe: dict[str, int] = field(default_factory=dict)
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {attached, reason}
    bad_lines: int = 0
    warnings: list[str] = field(default_factory=list)
    # findings raised since the engine started, by class (a counter: forgetting closed
    # findings does not lower it), and what retention forgot (engine/retention.py)
    findings_raised: dict[str, int] = field(default_factory=dict)
    arrays_retired: int = 0
    findings_forgotten: int = 0

    def lost_summary(self) -> str:
        """'' or how many events were lost and why: ring-buffer overrun, missed probe hits
        (lost_by_probe keys ``probe:cause``, sources/bcc_misses.py)."""
        if not self.lost_total:
            return ""
        causes: dict[str, int] = {}
        for key, n in self.lost_by_probe.items():
            cause = key.partition(":")[2] or "ringbuf"
            causes[cause] = causes.get(cause, 0) + n
        words = {"ringbuf": "ring buffer overrun", "kretprobe_missed": "kretprobe misses",
                 "io_untracked": "IOs not tracked (slot in use)",
                 "stale_slot": "stale in-flight slots dropped"}
        rest = self.lost_total - sum(causes.values())
        if rest > 0:
            causes["ringbuf"] = causes.get("ringbuf", 0) + rest
        parts = [f"{words.get(c, c)} {n}" for c, n in sorted(causes.items()) if n]
        return f"{self.lost_total} events lost ({', '.join(parts)})"


@dataclass
class LockEdgeView:
    first: str
    second: str
    count: int
    example_tid: int


@dataclass
class Snapshot:
    now_ns: int
    arrays: dict[str, ArrayView]
    findings: list[Finding]           # all, active first
    health: TracerHealth
    lock_order: list[LockEdgeView] = field(default_factory=list)
    blocked_tasks: list[BlockedTask] = field(default_factory=list)   # task_blocked events
    # every dm device seen that is not a raid target (owner '' when no raid LV matches)
    dm_devices: list[DmMemberView] = field(default_factory=list)

    def active_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.active]
