"""Engine: feeds events into per-array records, runs detectors, keeps findings.

Event detectors run on the events they care about; time-based ones (grace periods, blocked
IO thresholds) run at most every 100 ms of trace time and on ``advance``/``finish``.
"""

from __future__ import annotations

from mdtrace.config import EngineConfig
from mdtrace.detectors import EVENT_DETECTORS, TICK_DETECTORS
from mdtrace.detectors.base import Context, Verdict
from mdtrace.engine import lifecycle
from mdtrace.engine.arrays import ArrayRec, IoWait
from mdtrace.engine.model import (
    ArrayView,
    Finding,
    IoWaitView,
    Lifecycle,
    Snapshot,
    TracerHealth,
)
from mdtrace.events import Event
from mdtrace.kernel.flags import Recovery, mddev_names, recovery_names

_TICK_NS = 100_000_000
_EVENT_KINDS = frozenset({"thread_register", "reap", "io_wait"})
_LEVELS = {0: "raid0", 1: "raid1", 4: "raid4", 5: "raid5", 6: "raid6", 10: "raid10"}


class Engine:
    def __init__(self, config: EngineConfig | None = None, *, mode: str = "replay",
                 kernel: str = "") -> None:
        self.config = config or EngineConfig()
        self.kernel = kernel
        self._arrays: dict[str, ArrayRec] = {}
        self._findings: dict[str, Finding] = {}
        self._health = TracerHealth(mode=mode, kernel=kernel)
        self._now = 0
        self._last_tick = 0

    # -- input ------------------------------------------------------------------------------
    def feed(self, ev: Event) -> list[Finding]:
        h = self._health
        h.events_total += 1
        h.events_by_kind[ev.kind] = h.events_by_kind.get(ev.kind, 0) + 1
        if ev.ts > self._now:
            self._now = ev.ts
        if ev.kind == "lost":
            n = int(ev.args.get("count", 0))
            probe = str(ev.args.get("probe", ""))
            h.lost_total += n
            h.lost_by_probe[probe] = h.lost_by_probe.get(probe, 0) + n
            return []
        if ev.kind == "probe_status":
            h.probes[str(ev.args.get("probe", ""))] = dict(ev.args)
            return []
        if not ev.array:
            return self._maybe_tick()
        arr = self._array(ev)
        self._apply(arr, ev)
        new: list[Finding] = []
        if ev.kind in _EVENT_KINDS:
            for det in EVENT_DETECTORS:
                new += self._verdicts(det.check(Context(arr, ev, ev.ts, self.config,
                                                        self.kernel)), ev)
        return new + self._maybe_tick()

    def _array(self, ev: Event) -> ArrayRec:
        arr = self._arrays.get(ev.array)
        if arr is None or arr.lifecycle is Lifecycle.STOPPED and ev.kind != "array_stop" or (
                ev.kind == "array_create" and arr.counters) or (
                ev.mddev and arr.mddev and ev.mddev != arr.mddev):
            gen = arr.generation + 1 if arr is not None else 0
            arr = ArrayRec(name=ev.array, generation=gen, mddev=ev.mddev, lifecycle_since=ev.ts)
            self._arrays[ev.array] = arr
        return arr

    def _apply(self, arr: ArrayRec, ev: Event) -> None:
        arr.counters[ev.kind] = arr.counters.get(ev.kind, 0) + 1
        arr.last_ns = ev.ts
        if ev.dm_name:
            arr.dm_name = ev.dm_name
            arr.kind = "dm-raid"
        st = ev.state
        if st is not None:
            arr.recovery = st.rec if st.rec >= 0 else arr.recovery
            arr.flags = st.mdf if st.mdf >= 0 else arr.flags
            arr.ro, arr.suspended, arr.sync_thread = st.ro, st.suspended, st.sync_thread
            arr.reshape_pos, arr.curr_resync = st.reshape_pos, st.curr_resync
            arr.resync_max = st.resync_max or arr.resync_max
            if st.level is not None and st.level >= 0:
                arr.level = _LEVELS.get(st.level, f"level{st.level}")
        kind = ev.kind
        if kind == "array_create":
            arr.kind = str(ev.args.get("kind", arr.kind))
            lvl = ev.args.get("level")
            if isinstance(lvl, str) and lvl.startswith("raid"):
                arr.level = lvl
            elif isinstance(lvl, int) and lvl in _LEVELS:
                arr.level = _LEVELS[lvl]
        elif kind == "array_stop":
            for f in self._findings.values():
                if f.array == arr.name and f.end_ns is None:
                    f.end_ns = ev.ts
        elif kind == "dm_suspend_exit":
            arr.dm_suspended = True
        elif kind == "dm_resume_exit":
            arr.dm_suspended = False
        elif kind == "raid_target":
            hook, phase = ev.args.get("hook"), ev.args.get("phase")
            if hook == "postsuspend" and phase == "exit":
                arr.dm_suspended = True
            elif hook == "resume":
                arr.dm_suspended = False
        elif kind in ("sync_action", "sysfs_state"):
            arr.sync_action = str(ev.args.get("action", ev.args.get("sync_action", "")))
        elif kind == "io_wait":
            self._io_wait(arr, ev)
        elif kind == "do_sync_exit":
            arr.exit_without_done = None if arr.recovery & Recovery.DONE else ev.ts
        elif kind == "reap" or kind == "thread_unregister" and ev.args.get("sync"):
            arr.done_since = None
            arr.exit_without_done = None
        if kind == "check_recovery_exit" and arr.sync_thread and arr.recovery & Recovery.DONE:
            if arr.done_since is None:
                arr.done_since = ev.ts
        elif st is not None and not arr.sync_thread:
            arr.done_since = None
            arr.exit_without_done = None
        new = lifecycle.on_event(arr.lifecycle, kind, arr.recovery, arr.sync_thread,
                                 bool(ev.args.get("sync", True)))
        if new is not arr.lifecycle or not arr.history:
            arr.lifecycle = new
            arr.lifecycle_since = ev.ts
            if len(arr.history) < self.config.max_history:
                arr.history.append((ev.ts, new))

    def _io_wait(self, arr: ArrayRec, ev: Event) -> None:
        a = ev.args
        io_id = str(a.get("io_id") or f"{ev.tid}/{a.get('sector')}")
        wait_ns = int(a.get("wait_ns", 0))
        if wait_ns >= 1 << 63:  # kernel-side unsigned underflow: treat as unknown
            wait_ns = 0
        if a.get("done"):
            arr.io_waits.pop(io_id, None)
            for key in [k for k in self._findings if k.endswith(":" + io_id)]:
                f = self._findings[key]
                if f.end_ns is None:
                    f.end_ns = ev.ts
            return
        w = arr.io_waits.get(io_id)
        if w is None:
            if len(arr.io_waits) >= 4096:
                return
            arr.io_waits[io_id] = IoWait(io_id, ev.ts - wait_ns, ev.ts, wait_ns,
                                          str(a.get("mode", "")), ev.tid, ev.comm,
                                          int(a.get("sector", 0)), int(a.get("sectors", 0)),
                                          str(a.get("rw", "")))
        else:
            w.last_ns, w.wait_ns = ev.ts, max(w.wait_ns, wait_ns)

    # -- time -------------------------------------------------------------------------------
    def _maybe_tick(self) -> list[Finding]:
        if self._now - self._last_tick < _TICK_NS:
            return []
        return self._tick(self._now)

    def _tick(self, now: int) -> list[Finding]:
        self._last_tick = now
        new: list[Finding] = []
        for arr in self._arrays.values():
            if arr.lifecycle is Lifecycle.STOPPED:
                continue
            for det in TICK_DETECTORS:
                new += self._verdicts(det.check(Context(arr, None, now, self.config,
                                                        self.kernel)), None)
        return new

    def advance(self, now_ns: int) -> list[Finding]:
        self._now = max(self._now, now_ns)
        return self._tick(self._now)

    def finish(self) -> list[Finding]:
        return self._tick(self._now)

    def _verdicts(self, verdicts: list[Verdict], ev: Event | None) -> list[Finding]:
        new: list[Finding] = []
        for v in verdicts:
            cur = self._findings.get(v.key)
            if v.finding is None:
                if cur is not None and cur.end_ns is None:
                    cur.end_ns = self._now
                continue
            if cur is not None and cur.end_ns is None:
                cur.last_ns = self._now
                if ev is not None and len(cur.evidence) < self.config.max_evidence:
                    cur.evidence.append(ev)
                continue
            f = v.finding
            f.key, f.last_ns = v.key, self._now
            self._findings[v.key] = f
            new.append(f)
        return new

    # -- output -----------------------------------------------------------------------------
    @property
    def findings(self) -> list[Finding]:
        return sorted(self._findings.values(), key=lambda f: (not f.active, f.start_ns))

    def snapshot(self) -> Snapshot:
        findings = self.findings
        arrays: dict[str, ArrayView] = {}
        for name, arr in self._arrays.items():
            waits = [IoWaitView(w.io_id, w.tid, w.comm, w.sector, w.sectors, w.rw, w.first_ns,
                                max(w.wait_ns, self._now - w.first_ns), w.mode, True)
                     for w in arr.io_waits.values()]
            total = arr.resync_max
            arrays[name] = ArrayView(
                name=name, kind=arr.kind, dm_name=arr.dm_name, level=arr.level,
                generation=arr.generation, lifecycle=arr.lifecycle,
                lifecycle_since_ns=arr.lifecycle_since, recovery=recovery_names(arr.recovery),
                recovery_mask=arr.recovery, flags=mddev_names(arr.flags), ro=arr.ro,
                suspended=arr.suspended, dm_suspended=arr.dm_suspended,
                sync_thread=arr.sync_thread, sync_action=arr.sync_action,
                reshape_pos=arr.reshape_pos,
                progress_done=arr.curr_resync if arr.curr_resync > 3 else 0,
                progress_total=total, blocked_io=waits,
                oldest_wait_s=max((w.wait_ns for w in waits), default=0) / 1e9,
                last_event_ns=arr.last_ns,
                findings_active=sorted({f.code for f in findings
                                        if f.active and f.array == name}),
                history=[(ts, str(state)) for ts, state in arr.history],
                counters=dict(arr.counters))
        return Snapshot(now_ns=self._now, arrays=arrays, findings=findings,
                        health=self._health)
