"""Prometheus collector over engine :class:`Snapshot` objects.

Why a custom collector and not prometheus_client Gauges: the engine already holds the truth;
copying it into long-lived metric objects would need bookkeeping to drop series of stopped
arrays and cleared findings.  Rendering each scrape straight from one snapshot is exact and
stateless (except the sync-speed derivation below).  Only values the snapshot really carries
are exported; nothing is invented (see docs/exporter.md for the node_exporter mapping).

Bounded series: arrays the engine retired (stopped longer than ``retention_s``, or beyond
its cap of stopped arrays: engine/retention.py) are not exported, and every label whose
values come from the traced data (event kinds, probe names, lock classes) keeps at most
:data:`MAX_LABEL_VALUES` values per metric, in order of first appearance, the rest summed
under ``other``; label values are cut to :data:`MAX_LABEL_LEN` characters.  Array and
finding labels are bounded by the engine (live arrays plus at most 64 stopped ones).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from mdtrace import __version__
from mdtrace.engine.model import ArrayView, Lifecycle, Snapshot
from mdtrace.kernel.flags import Recovery

SECTOR_BYTES = 512
FINDING_CODES: tuple[str, ...] = tuple(f"F{i}" for i in range(1, 11))
LIFECYCLE_STATES: tuple[str, ...] = tuple(s.value for s in Lifecycle)
RECOVERY_FLAGS: tuple[str, ...] = tuple(m.name for m in Recovery if m.value and m.name)
# node_exporter's node_md_state states, plus the ones md's sync_action can also say
ARRAY_STATES: tuple[str, ...] = ("active", "inactive", "readonly", "recovering", "resync",
                                 "check", "reshape")
SYNC_ACTIONS: tuple[str, ...] = ("idle", "frozen", "resync", "recover", "check", "repair",
                                 "reshape")
_SYNCING = (Lifecycle.RUNNING, Lifecycle.SYNCING)
MAX_LABEL_VALUES = 64
MAX_LABEL_LEN = 128
OTHER = "other"


def bounded(counts: dict[str, int], cap: int = MAX_LABEL_VALUES) -> dict[str, int]:
    """At most ``cap`` label values (the first seen: a new value never displaces a series
    that exists), the rest summed under ``other``; each value cut to MAX_LABEL_LEN."""
    out: dict[str, int] = {}
    for i, (name, n) in enumerate(counts.items()):
        key = name[:MAX_LABEL_LEN] if i < cap else OTHER
        out[key] = out.get(key, 0) + n
    return out


def sync_action(arr: ArrayView) -> str:
    """What /sys/block/mdX/md/sync_action would say: sysfs's own word when the source read it,
    else derived from the recovery flags exactly as md.c's action_show() does."""
    if arr.sync_action in SYNC_ACTIONS:
        return arr.sync_action
    rec = Recovery(arr.recovery_mask)
    if rec & Recovery.FROZEN:
        return "frozen"
    if rec & (Recovery.RUNNING | Recovery.NEEDED) or arr.sync_thread:
        if rec & Recovery.RESHAPE:
            return "reshape"
        if rec & Recovery.SYNC:
            if not rec & Recovery.REQUESTED:
                return "resync"
            return "check" if rec & Recovery.CHECK else "repair"
        if rec & Recovery.RECOVER:
            return "recover"
    return "idle"


def array_state(arr: ArrayView) -> str:
    """node_md_state-style state: inactive (stopped), readonly, or the running sync kind."""
    if arr.lifecycle is Lifecycle.STOPPED:
        return "inactive"
    action = sync_action(arr)
    if action in ("check", "repair"):
        return "check"
    if action == "recover":
        return "recovering"
    if action in ("resync", "reshape"):
        return action
    if arr.ro:
        return "readonly"
    return "active"


@dataclass
class _SpeedSample:
    generation: int
    t_ns: int
    done: int
    speed: float = 0.0
    ready: bool = False


@dataclass
class ExtraHealth:
    """What the exporter knows besides the snapshot: the source's own counters, replay state."""

    lost: int = 0
    bad_lines: int = 0
    replay_done: bool = False
    replay_loops: int = 0
    source: str = ""
    warnings: list[str] = field(default_factory=list)


class SnapshotCollector(Collector):
    """Turns ``snapshot_fn()`` into metric families on every collect().

    ``extra_fn`` (optional) adds source-side health the engine does not count (trace bad
    lines, replay state).  Sync speed is derived from successive snapshots in engine time
    (trace time in replay), because the engine does not compute it yet.
    """

    def __init__(self, snapshot_fn: Callable[[], Snapshot],
                 extra_fn: Callable[[], ExtraHealth] | None = None) -> None:
        self._snapshot_fn = snapshot_fn
        self._extra_fn = extra_fn
        self._speed: dict[str, _SpeedSample] = {}
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked collector: families depend on what the snapshot holds

    # -- speed -------------------------------------------------------------------------------
    def _sync_speed(self, arr: ArrayView, now_ns: int) -> float | None:
        """Bytes/s of sync progress: the engine's figure if it has one, else derived from the
        progress of two snapshots >= 1 s of engine time apart; None before two samples."""
        if arr.speed_sectors_per_s > 0:
            return arr.speed_sectors_per_s * SECTOR_BYTES
        with self._lock:
            if arr.lifecycle not in _SYNCING:
                self._speed.pop(arr.name, None)
                return 0.0
            s = self._speed.get(arr.name)
            if s is None or s.generation != arr.generation or arr.progress_done < s.done:
                self._speed[arr.name] = _SpeedSample(arr.generation, now_ns, arr.progress_done)
                return None
            if now_ns - s.t_ns >= 1_000_000_000:
                s.speed = (arr.progress_done - s.done) * SECTOR_BYTES / ((now_ns - s.t_ns) / 1e9)
                s.t_ns, s.done, s.ready = now_ns, arr.progress_done, True
            return s.speed if s.ready else None

    # -- collect -----------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot_fn()
        extra = self._extra_fn() if self._extra_fn is not None else ExtraHealth()
        yield from self._arrays(snap)
        yield from self._findings(snap)
        yield from self._locks(snap)
        yield from self._health(snap, extra)

    def _arrays(self, snap: Snapshot) -> Iterator[Metric]:
        lab = ["array", "device"]
        info = InfoMetricFamily("mdtrace_array", "Array identity: level, kind (md or dm-raid), "
                                "dm name.", labels=["array", "device", "level", "kind"])
        # state sets as 0/1 gauges with a plain label, like node_md_state{state}
        state = GaugeMetricFamily("mdtrace_array_state", "node_md_state-style array state, "
                                  "1 for the current one (inactive = stopped).",
                                  labels=lab + ["state"])
        life = GaugeMetricFamily("mdtrace_array_lifecycle", "Where the array's sync thread is in "
                                 "its designed lifetime (engine lifecycle state), 1 for the "
                                 "current one.", labels=lab + ["state"])
        action = GaugeMetricFamily("mdtrace_array_sync_action", "What md's sync_action says (or "
                                   "would say, derived from recovery flags), 1 for the current "
                                   "one.", labels=lab + ["action"])
        flags = GaugeMetricFamily("mdtrace_array_recovery_flag", "Decoded MD_RECOVERY_* bits of "
                                  "mddev->recovery, 1 if set.", labels=lab + ["flag"])
        since = GaugeMetricFamily("mdtrace_array_lifecycle_state_seconds", "Engine-time seconds "
                                  "the array has been in its current lifecycle state.",
                                  labels=lab)
        gen = GaugeMetricFamily("mdtrace_array_generation", "Bumps when an array of this name "
                                "is stopped and created again.", labels=lab)
        thread = GaugeMetricFamily("mdtrace_array_sync_thread_registered", "1 while "
                                   "mddev->sync_thread is registered.", labels=lab)
        ro = GaugeMetricFamily("mdtrace_array_read_only", "mddev->ro: 0 read-write, "
                               "1 read-only, 2 auto-read-only.", labels=lab)
        susp = GaugeMetricFamily("mdtrace_array_suspended", "mddev->suspended count (md "
                                 "suspend nesting).", labels=lab)
        dmsusp = GaugeMetricFamily("mdtrace_array_dm_suspended", "1 while the dm device is "
                                   "suspended (dm-raid).", labels=lab)
        done = GaugeMetricFamily("mdtrace_array_sync_completed_bytes", "Sync/reshape progress "
                                 "(curr_resync), bytes; node_md_blocks_synced x 1024.",
                                 labels=lab)
        total = GaugeMetricFamily("mdtrace_array_sync_total_bytes", "End of the sync range "
                                  "(resync_max), bytes; absent when unknown.", labels=lab)
        speed = GaugeMetricFamily("mdtrace_array_sync_speed_bytes_per_second", "Sync/reshape "
                                  "speed in engine time; 0 when no sync runs.", labels=lab)
        eta = GaugeMetricFamily("mdtrace_array_sync_eta_seconds", "Estimated seconds to "
                                "sync completion (when the engine has one).", labels=lab)
        rpos = GaugeMetricFamily("mdtrace_array_reshape_position_bytes", "mddev->"
                                 "reshape_position, bytes; absent when no reshape recorded.",
                                 labels=lab)
        blocked = GaugeMetricFamily("mdtrace_array_blocked_io", "IOs currently seen waiting "
                                    "(across the reshape position).", labels=lab)
        oldest = GaugeMetricFamily("mdtrace_array_blocked_io_oldest_wait_seconds", "Longest "
                                   "current IO wait.", labels=lab)
        locks = GaugeMetricFamily("mdtrace_array_locks_held", "md/dm locks currently held "
                                  "(lock tracing only).", labels=lab)
        disks = GaugeMetricFamily("mdtrace_array_disks_required", "Member devices the array "
                                  "is defined with (sysfs raid_disks; node_md_disks_required).",
                                  labels=lab)
        degr = GaugeMetricFamily("mdtrace_array_degraded_disks", "Missing member devices "
                                 "(sysfs degraded; node_md_degraded).", labels=lab)
        age = GaugeMetricFamily("mdtrace_array_last_event_age_seconds", "Engine-time seconds "
                                "since the last event on this array.", labels=lab)
        fa = GaugeMetricFamily("mdtrace_array_findings_active", "Active findings on this array "
                               "by class.", labels=lab + ["code"])
        evs = CounterMetricFamily("mdtrace_array_events", "Events seen for this array "
                                  "generation, by event kind.", labels=lab + ["event"])
        for name in sorted(snap.arrays):
            a = snap.arrays[name]
            if getattr(a, "retired", False):
                continue
            lv = [name, a.dm_name or name]
            info.add_metric(lv + [a.level or "unknown", a.kind or "md"], {})
            st = array_state(a)
            for s in ARRAY_STATES:
                state.add_metric(lv + [s], int(s == st))
            for s in LIFECYCLE_STATES:
                life.add_metric(lv + [s], int(s == a.lifecycle.value))
            act = sync_action(a)
            for s in SYNC_ACTIONS:
                action.add_metric(lv + [s], int(s == act))
            for f in RECOVERY_FLAGS:
                flags.add_metric(lv + [f], int(f in a.recovery))
            since.add_metric(lv, max(0, snap.now_ns - a.lifecycle_since_ns) / 1e9)
            gen.add_metric(lv, a.generation)
            thread.add_metric(lv, int(a.sync_thread))
            ro.add_metric(lv, a.ro)
            susp.add_metric(lv, a.suspended)
            dmsusp.add_metric(lv, int(a.dm_suspended))
            done.add_metric(lv, a.progress_done * SECTOR_BYTES)
            if a.progress_total > 0:
                total.add_metric(lv, a.progress_total * SECTOR_BYTES)
            sp = self._sync_speed(a, snap.now_ns)
            if sp is not None:
                speed.add_metric(lv, sp)
            if a.eta_s is not None:
                eta.add_metric(lv, a.eta_s)
            if a.reshape_pos is not None:
                rpos.add_metric(lv, a.reshape_pos * SECTOR_BYTES)
            blocked.add_metric(lv, len(a.blocked_io))
            oldest.add_metric(lv, a.oldest_wait_s)
            locks.add_metric(lv, len(a.locks_held))
            age.add_metric(lv, max(0, snap.now_ns - a.last_event_ns) / 1e9)
            if (n_disks := getattr(a, "raid_disks", None)) is not None:
                disks.add_metric(lv, n_disks)
            if (n_degraded := getattr(a, "degraded", None)) is not None:
                degr.add_metric(lv, n_degraded)
            active = set(a.findings_active)
            for code in FINDING_CODES:
                fa.add_metric(lv + [code], int(code in active))
            counters = bounded(a.counters)
            for kind in sorted(counters):
                evs.add_metric(lv + [kind], counters[kind])
        yield from (info, state, life, action, flags, since, gen, thread, ro, susp, dmsusp,
                    done, total, speed, eta, rpos, blocked, oldest, locks, disks, degr, age, fa,
                    evs)

    def _findings(self, snap: Snapshot) -> Iterator[Metric]:
        active_by_code = dict.fromkeys(FINDING_CODES, 0)
        raised_by_code = dict.fromkeys(FINDING_CODES, 0)
        per: dict[tuple[str, str, str, str], list[float]] = {}
        remedies: dict[tuple[str, str, str, str], set[str]] = {}
        counted = getattr(snap.health, "findings_raised", None)
        if counted:   # the engine's counter: forgetting closed findings does not lower it
            raised_by_code.update(counted)
        for f in snap.findings:
            if not counted:
                raised_by_code[f.code] = raised_by_code.get(f.code, 0) + 1
            if not f.active:
                continue
            active_by_code[f.code] = active_by_code.get(f.code, 0) + 1
            arr = snap.arrays.get(f.array)
            device = (arr.dm_name or arr.name) if arr is not None else f.array
            key = (f.code, f.array, device, str(f.severity))
            per.setdefault(key, []).append(max(0, snap.now_ns - f.start_ns) / 1e9)
            remedies.setdefault(key, set()).add(f.remedy)
        act = GaugeMetricFamily("mdtrace_findings_active", "Active findings by class "
                                "(all arrays).", labels=["code"])
        raised = CounterMetricFamily("mdtrace_findings_raised", "Findings raised since the "
                                     "engine started, by class (active or resolved).",
                                     labels=["code"])
        for code in sorted(active_by_code, key=_code_order):
            act.add_metric([code], active_by_code[code])
            raised.add_metric([code], raised_by_code.get(code, 0))
        lab = ["code", "array", "device", "severity"]
        # no title label: some titles carry a running figure (F10 'no progress for 75s') and
        # a label that changes would restart the alert's `for` clock
        info = InfoMetricFamily("mdtrace_finding", "One per active (class, array, remedy): "
                                "the engine's remedy text, for alert annotations.",
                                labels=lab + ["remedy"])
        cnt = GaugeMetricFamily("mdtrace_finding_active", "Active findings per class and "
                                "array.", labels=lab)
        dur = GaugeMetricFamily("mdtrace_finding_active_duration_seconds", "Engine-time "
                                "seconds since the oldest active finding of this class and "
                                "array started.", labels=lab)
        for key in sorted(per):
            for remedy in sorted(remedies[key]):
                info.add_metric(list(key) + [remedy], {})
            cnt.add_metric(list(key), len(per[key]))
            dur.add_metric(list(key), max(per[key]))
        yield from (act, raised, info, cnt, dur)

    def _locks(self, snap: Snapshot) -> Iterator[Metric]:
        edges = list(getattr(snap, "lock_order", []) or [])
        seen = {(e.first, e.second) for e in edges}
        inversions = {tuple(sorted(p)) for p in seen if (p[1], p[0]) in seen and p[0] != p[1]}
        n_edges = GaugeMetricFamily("mdtrace_lock_order_edges", "Distinct lock-order edges "
                                    "(A held while taking B) seen.")
        n_edges.add_metric([], len(seen))
        inv = GaugeMetricFamily("mdtrace_lock_order_inversions", "Lock pairs seen taken in "
                                "both orders (A->B and B->A): potential deadlocks.")
        inv.add_metric([], len(inversions))
        obs = CounterMetricFamily("mdtrace_lock_order_edge_observations", "Times each "
                                  "lock-order edge was seen.", labels=["first", "second"])
        pairs = bounded({f"{e.first}\0{e.second}": e.count for e in edges})
        for pair in sorted(pairs):
            first, _, second = pair.partition("\0")
            obs.add_metric([first[:MAX_LABEL_LEN], (second or OTHER)[:MAX_LABEL_LEN]],
                           pairs[pair])
        yield from (n_edges, inv, obs)

    def _health(self, snap: Snapshot, extra: ExtraHealth) -> Iterator[Metric]:
        h = snap.health
        info = InfoMetricFamily("mdtrace_tracer", "Tracer mode (bcc, sysfs, replay) and the "
                                "traced kernel.", labels=["mode", "kernel", "version"])
        info.add_metric([h.mode[:MAX_LABEL_LEN], (h.kernel or "unknown")[:MAX_LABEL_LEN],
                         __version__], {})
        evs = CounterMetricFamily("mdtrace_events", "Events fed to the engine, by event kind.",
                                  labels=["event"])
        by_kind = bounded(h.events_by_kind)
        for kind in sorted(by_kind):
            evs.add_metric([kind], by_kind[kind])
        lost = CounterMetricFamily("mdtrace_events_lost", "Events the kernel dropped "
                                   "(perf/ring buffer full), by probe.", labels=["probe"])
        by_probe = bounded(h.lost_by_probe)
        unattributed = max(0, extra.lost - sum(by_probe.values()))
        if unattributed:
            by_probe[""] = by_probe.get("", 0) + unattributed
        for probe in sorted(by_probe):
            lost.add_metric([probe or "unknown"], by_probe[probe])
        attached = GaugeMetricFamily("mdtrace_probe_attached", "1 if the probe is attached, "
                                     "0 if it could not be (see `mdtrace doctor`).",
                                     labels=["probe", "method", "group"])
        for name in sorted(list(h.probes)[:MAX_LABEL_VALUES]):
            p = h.probes[name]
            attached.add_metric([name[:MAX_LABEL_LEN], str(p.get("method", ""))[:MAX_LABEL_LEN],
                                 str(p.get("group", ""))[:MAX_LABEL_LEN]],
                                int(bool(p.get("attached"))))
        bad = CounterMetricFamily("mdtrace_trace_bad_lines", "Unreadable trace lines skipped "
                                  "(replay).")
        bad.add_metric([], max(h.bad_lines, extra.bad_lines))
        warn = GaugeMetricFamily("mdtrace_tracer_warnings", "Tracer warnings (degraded "
                                 "picture: fallbacks, missing probes).")
        warn.add_metric([], len(h.warnings) + len(extra.warnings))
        clock = GaugeMetricFamily("mdtrace_engine_clock_seconds", "Engine clock: newest event "
                                  "time (CLOCK_MONOTONIC of the traced host), seconds.")
        clock.add_metric([], snap.now_ns / 1e9)
        arrays = GaugeMetricFamily("mdtrace_arrays", "Arrays the engine knows (any state; "
                                   "not those retired after the retention window).")
        arrays.add_metric([], sum(1 for a in snap.arrays.values()
                                  if not getattr(a, "retired", False)))
        done = GaugeMetricFamily("mdtrace_replay_done", "1 once a replayed trace has been "
                                 "fully fed (0 live or while replaying).")
        done.add_metric([], int(extra.replay_done))
        loops = CounterMetricFamily("mdtrace_replay_loops", "Completed passes over the "
                                    "replayed trace (--loop).")
        loops.add_metric([], extra.replay_loops)
        yield from (info, evs, lost, attached, bad, warn, clock, arrays, done, loops)


def _code_order(code: str) -> tuple[int, str]:
    digits = code[1:]
    return (int(digits) if digits.isdigit() else 99, code)


def metric_names(families: Iterable[Any]) -> set[str]:
    """Sample names a scrape exposes for these families (counters gain _total, info _info)."""
    return {s.name for fam in families for s in fam.samples}
