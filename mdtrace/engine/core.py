"""Engine: feeds events into per-array records, the lock-order and wait-for graphs, runs
detectors, keeps findings.

Event detectors run on the event kinds they care about; time-based ones (grace periods, blocked
IO and stall thresholds, wait-for cycles) run at most every 100 ms of trace time and on
``advance``/``finish``, over the arrays an event touched since the last tick or that a tick
detector still has business with.

What an event does to the engine is decided here, in one place (:meth:`Engine.feed`,
:meth:`Engine._apply` and the per-kind handlers of ``_HANDLERS``); an event counts as the
number of probe hits it stands for (:func:`mdtrace.events.calls`: change-only
md_check_recovery reports carry ``calls``).
"""

from __future__ import annotations

from mdtrace.config import EngineConfig
from mdtrace.engine import blocked, dm_context, lifecycle, progress
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.detectors import (
    EVENT_DETECTORS,
    GRAPH_DETECTORS,
    TICK_DETECTORS,
    TRIGGER_KINDS,
)
from mdtrace.engine.detectors.base import Context, GraphContext, Verdict
from mdtrace.engine.detectors.reshape_io import finding_key as _f7_key
from mdtrace.engine.findings import FindingStore
from mdtrace.engine.iowait import blocked_reason, on_io_wait
from mdtrace.engine.kernel_log import superseded, thread_death
from mdtrace.engine.locks import Inversion, LockGraph
from mdtrace.engine.model import (
    ArrayView,
    Finding,
    Lifecycle,
    LockEdgeView,
    Snapshot,
    TracerHealth,
)
from mdtrace.engine.retention import MAX_CLOSED, Retention
from mdtrace.engine.views import array_view
from mdtrace.engine.waitfor import WaitForGraph
from mdtrace.events import Event, calls
from mdtrace.kernel.flags import Recovery, parse_release

TICK_NS = 100_000_000
_TICK_NS = TICK_NS
_LEVELS = {0: "raid0", 1: "raid1", 4: "raid4", 5: "raid5", 6: "raid6", 10: "raid10"}
_STOPPED = Lifecycle.STOPPED
# live mddevs kept per array name beside the current one (dm-raid table reloads: the active
# table's and the loaded one's; a third would be a record whose stop the trace lost)
MAX_TABLES = 3
_DONE = int(Recovery.DONE)
_RESHAPE = int(Recovery.RESHAPE)
_LIFECYCLE_KINDS = lifecycle.KINDS
_TICK_CODES = frozenset(c for det in TICK_DETECTORS for c in det.CODES)
_GRAPH_CODES = frozenset(det.CODE for det in GRAPH_DETECTORS)
_WAIT_RESOURCE = {"sync_thread_stop": "thread", "io_drain": "io", "reshape_progress": "reshape",
                  "dm_suspend": "suspend", "sb_wait": "suspend"}


class Engine:
    def __init__(self, config: EngineConfig | None = None, *, mode: str = "replay",
                 kernel: str = "", archive: bool | None = None) -> None:
        """``archive``: keep every array and finding for a post-mortem report (default for
        the replay and snapshot modes); a live engine forgets stopped arrays and closed
        findings after ``retention_s`` (engine/retention.py)."""
        self.config = config or EngineConfig()
        self.kernel = kernel
        self._kver = parse_release(kernel) if kernel else (0, 0)
        self._arrays: dict[str, ArrayRec] = {}
        # name -> mddev -> a live record displaced by another mddev of the same name (a
        # dm-raid table reload: see _other_mddev); ``_arrays`` holds the one seen last
        self._tables: dict[str, dict[str, ArrayRec]] = {}
        if archive is None:
            archive = mode in ("replay", "snapshot")
        self._fs = FindingStore(forgettable=not archive)
        self._ret = Retention(int(self.config.retention_s * 1e9), archive=archive)
        self._order: dict[str, None] = {}   # archive: array names in first-seen order
        self._health = TracerHealth(mode=mode, kernel=kernel)
        self._locks = LockGraph()
        self._waits = WaitForGraph()
        self._blocked: dict[int, blocked.BlockedTask] = {}   # task_blocked, by tid
        # dm devices no md event named (sub-LVs): context, not arrays (engine/dm_context.py)
        self._dm: dict[str, dm_context.DmDevice] = {}
        self._now = 0
        self._last_tick = 0
        # arrays a tick looks at: touched by an event since the last tick, or with a tick
        # detector wanting them at the last one (the others' verdicts cannot have changed:
        # ``wanted`` reads only the array's record, which only events change)
        self._touched: set[str] = set()
        self._hot: set[str] = set()

    # -- input ------------------------------------------------------------------------------
    def feed(self, ev: Event) -> list[Finding]:
        kind = ev.kind
        n = calls(ev)
        h = self._health
        h.events_total += n
        by_kind = h.events_by_kind
        by_kind[kind] = by_kind.get(kind, 0) + n
        if ev.ts > self._now:
            self._now = ev.ts
        name = ev.array
        if not name:
            if kind == "lost":
                lost = int(ev.args.get("count", 0))
                probe = str(ev.args.get("probe", ""))
                cause = str(ev.args.get("cause", "") or "ringbuf")
                if cause != "ringbuf":   # a missed probe hit (sources/bcc_misses.py)
                    probe = f"{probe}:{cause}"
                h.lost_total += lost
                h.lost_by_probe[probe] = h.lost_by_probe.get(probe, 0) + lost
            elif kind == "probe_status":
                h.probes[str(ev.args.get("probe", ""))] = dict(ev.args)
            elif kind == "lock":
                return self._lock(None, ev) + self._maybe_tick()
            elif kind in ("wait_begin", "wait_end"):
                self._explicit_wait(ev)
            elif kind == "kernel_log":
                return self._kernel_log(ev) + self._maybe_tick()
            elif kind == "task_blocked":
                self._h_task_blocked(None, ev)
            elif kind == "task_unblocked":
                self._h_task_unblocked(None, ev)
            return self._maybe_tick()
        arr = self._arrays.get(name)
        if arr is None and (old := self._ret.revive(name)) is not None:
            arr = self._arrays[name] = old          # a retired array seen again: as it was
        if arr is None and kind in dm_context.DM_CORE_KINDS:
            dev = self._dm.get(name)
            if dev is None:
                dev = self._dm[name] = dm_context.DmDevice(name)
            dm_context.apply(dev, ev)
            return self._maybe_tick()
        if arr is not None and ev.mddev and arr.mddev and ev.mddev != arr.mddev:
            arr = self._other_mddev(arr, ev)
        elif arr is None or (arr.lifecycle is _STOPPED and kind != "array_stop") or (
                kind == "array_create" and arr.counters):
            arr = self._new_array(arr, ev)
        self._touched.add(name)
        new = self._apply(arr, ev, n)
        if kind in TRIGGER_KINDS:
            for det in EVENT_DETECTORS:
                new += self._verdicts(det.check(Context(arr, ev, ev.ts, self.config,
                                                        self.kernel)), ev, arr)
        if self._now - self._last_tick >= _TICK_NS:
            new += self._tick(self._now)
        return new

    def _kernel_log(self, ev: Event) -> list[Finding]:
        """A kernel report: when it killed one of an array's md threads, mark the array
        (F11) and run the event detectors on it.  The array is the one whose daemon or sync
        thread has the task's pid, else the one the thread's name names (``md0_raid5``), else
        the only live dm-raid array for a dm-raid thread (``mdX_raid5``)."""
        death = thread_death(ev)
        if death is None:
            return []
        mdname, d = death
        live = [a for a in self._arrays.values() if a.lifecycle is not _STOPPED]
        arr = next((a for a in live if d.pid and d.pid in (a.daemon_tid, a.sync_tid)), None)
        if arr is None and mdname != "mdX":
            arr = self._arrays.get(mdname)
        if arr is None:
            dm = [a for a in live if a.kind == "dm-raid"]
            arr = dm[0] if len(dm) == 1 and mdname == "mdX" else None
        if arr is None:
            self._health.warnings.append(f"kernel {d.text!r} killed md thread {d.thread}, "
                                         "whose array the trace does not show")
            return []
        if superseded(d, arr.threads):
            self._health.warnings.append(f"kernel {d.text!r} killed {d.thread} (pid {d.pid}) "
                                         f"of an earlier {arr.name}: it runs again now")
            return []
        arr.counters["kernel_log"] = arr.counters.get("kernel_log", 0) + 1
        arr.thread_died = d
        self._touched.add(arr.name)
        new: list[Finding] = []
        for det in EVENT_DETECTORS:
            new += self._verdicts(det.check(Context(arr, ev, ev.ts, self.config,
                                                    self.kernel)), ev, arr)
        return new

    def _other_mddev(self, arr: ArrayRec, ev: Event) -> ArrayRec:
        """An event of another mddev (hashed pointer ``ev.mddev``) under ``arr``'s name.

        A dm-raid table reload: lvm2 loads the new table (raid_ctr: a new mddev under the
        same dm device) while the old one is active, resumes it, and only then does dm
        destroy the old one (raid_dtr -> md_stop); both mddevs live meanwhile and their
        events interleave (measured on 6.1 and 6.12: tests/data/golden/*/lvm_raid5_reshape,
        zoo_p3__lvm_reshape_suspend).  Each keeps its own record: the live one it displaces
        waits in ``_tables`` with its state and open findings, and comes back when its mddev
        is seen again.  A stopped record is not kept (its mddev is freed: an event with that
        pointer later is a new mddev, a new generation)."""
        name = ev.array
        tables = self._tables.setdefault(name, {})
        if arr.lifecycle is not _STOPPED:
            tables[arr.mddev] = arr
        other = tables.pop(ev.mddev, None)
        if other is not None:
            if not (ev.kind == "array_create" and other.counters):
                self._arrays[name] = other
                return other
            # array_create on a record with events: a new generation, as for the current
            # record in feed (the old one ends here)
            self._close_array_findings(name, ev.ts, other.generation)
        new = self._new_array(arr, ev, displaced=arr.lifecycle is not _STOPPED)
        while len(tables) > MAX_TABLES:
            oldest = min(tables, key=lambda m: tables[m].last_ns)
            self._close_array_findings(name, ev.ts, tables.pop(oldest).generation)
        return new

    def _new_array(self, old: ArrayRec | None, ev: Event, *,
                   displaced: bool = False) -> ArrayRec:
        """A new generation of ``ev.array``; ``displaced``: ``old`` lives on beside it (kept
        in ``_tables``, its findings open)."""
        gen = 0
        if old is not None:
            gen = 1 + max([old.generation] + [r.generation for r in
                                              self._tables.get(old.name, {}).values()])
            if not displaced:
                self._close_array_findings(old.name, ev.ts, old.generation)
        arr = ArrayRec(name=ev.array, generation=gen, mddev=ev.mddev, lifecycle_since=ev.ts)
        self._arrays[ev.array] = arr
        if self._ret.archive:
            self._order.setdefault(ev.array)
        dev = self._dm.pop(ev.array, None)
        if dev is not None:     # a raid target after all: its dm suspend state is the array's
            arr.dm_name = arr.dm_name or dev.dm_name
            arr.dm_suspended = dev.suspended
            for entry in dev.suspending.values():
                self._h_suspend_begin(arr, entry, "dm_suspend")
        return arr

    def _close_array_findings(self, name: str, ts: int, generation: int) -> None:
        self._fs.close_array(name, ts, generation)

    def _apply(self, arr: ArrayRec, ev: Event, n: int) -> list[Finding]:
        """What an array event does to its record (``n``: the probe hits it stands for)."""
        kind = ev.kind
        ts = ev.ts
        counters = arr.counters
        counters[kind] = counters.get(kind, 0) + n
        arr.last_ns = ts
        st = ev.state
        if st is not None:
            arr.last_state = st
        if ev.dm_name:
            arr.dm_name = ev.dm_name
            arr.kind = "dm-raid"
        if ev.mddev and not arr.mddev:
            arr.mddev = ev.mddev   # learn the identity (an array first seen via sysfs)
        if st is not None:
            if st.rec >= 0:
                arr.recovery = st.rec
            if st.mdf >= 0:
                arr.flags = st.mdf
            arr.ro, arr.suspended, arr.sync_thread = st.ro, st.suspended, st.sync_thread
            arr.reshape_pos, arr.curr_resync = st.reshape_pos, st.curr_resync
            if st.resync_max:
                arr.resync_max = st.resync_max
            if st.level is not None and st.level >= 0 and not arr.level:
                arr.level = _LEVELS.get(st.level, f"level{st.level}")
            progress.observe(arr, ts, st.curr_resync, st.reshape_pos)
        new: list[Finding] = []
        handler = _HANDLERS.get(kind)
        if handler is not None:
            new = handler(self, arr, ev) or []
        if kind == "check_recovery_exit" and arr.sync_thread and arr.recovery & _DONE:
            if arr.done_since is None:
                arr.done_since = ts
        elif st is not None and not arr.sync_thread:
            arr.done_since = None
            arr.exit_without_done = None
        if kind in _LIFECYCLE_KINDS:
            state = lifecycle.on_event(arr.lifecycle, kind, arr.recovery, arr.sync_thread,
                                       bool(ev.args.get("sync", True)))
            if state is not arr.lifecycle or not arr.history:
                self._set_lifecycle(arr, state, ts)
        elif not arr.history:
            arr.history.append((ts, arr.lifecycle))
        return new

    def _set_lifecycle(self, arr: ArrayRec, state: Lifecycle, ts: int) -> None:
        arr.lifecycle = state
        arr.lifecycle_since = ts
        if len(arr.history) < self.config.max_history:
            arr.history.append((ts, state))

    # -- per-kind handlers (see _HANDLERS) ------------------------------------------------------
    def _h_create(self, arr: ArrayRec, ev: Event) -> None:
        arr.kind = str(ev.args.get("kind", arr.kind))
        lvl = ev.args.get("level")
        if isinstance(lvl, str) and lvl.startswith("raid"):
            arr.level = lvl
        elif isinstance(lvl, int) and lvl in _LEVELS:
            arr.level = _LEVELS[lvl]

    def _h_stop(self, arr: ArrayRec, ev: Event) -> None:
        arr.stop_ns = ev.ts
        self._close_array_findings(arr.name, ev.ts, arr.generation)
        self._ret.array_stopped(arr, ev.ts)
        for tid in list(arr.suspenders):
            self._waits.end(tid, f"susp:{arr.name}")
        arr.suspenders.clear()
        arr.io_waits.clear()
        # their wait-for entries too (left behind, they filled the graph's cap in a long run)
        self._waits.end_resource(f"reshape:{arr.name}")
        arr.sync_tid = None

    def _h_check_recovery(self, arr: ArrayRec, ev: Event) -> None:
        arr.daemon_tid = ev.tid

    def _h_do_sync_enter(self, arr: ArrayRec, ev: Event) -> None:
        arr.sync_tid = ev.tid
        arr.prog_changed_ns = ev.ts   # a new pass: stall time counts from here

    def _h_do_sync_exit(self, arr: ArrayRec, ev: Event) -> None:
        if arr.sync_tid == ev.tid:
            arr.sync_tid = None
        arr.exit_without_done = None if arr.recovery & _DONE else ev.ts
        arr.exit_recovery = arr.recovery
        if arr.recovery & _RESHAPE and arr.reshape_pos is not None:
            arr.reshape_interrupted_ns = ev.ts   # reshape left unfinished (F5 evidence)
        elif arr.reshape_pos is None:
            arr.reshape_interrupted_ns = None
        self._waits.end_resource(f"thread:{arr.name}", "unreg:")

    def _h_reap(self, arr: ArrayRec, ev: Event) -> None:
        arr.done_since = None
        arr.exit_without_done = None

    def _h_unregister(self, arr: ArrayRec, ev: Event) -> None:
        if not ev.args.get("sync"):
            return
        arr.done_since = None
        arr.exit_without_done = None
        if arr.sync_tid is not None and arr.sync_tid != ev.tid:
            # kthread_stop: the caller waits until md_do_sync returns
            self._waits.begin(f"unreg:{arr.name}", f"thread:{arr.name}", ev)

    def _h_io_wait(self, arr: ArrayRec, ev: Event) -> None:
        io_id, done = on_io_wait(arr, ev)
        key = f"io:{io_id}"
        if done:
            self._waits.end(ev.tid, key)
            f = self._fs.get(_f7_key(arr.name, arr.generation, io_id))
            if f is not None:
                self._fs.close(f, ev.ts)
            return
        w = arr.io_waits.get(io_id)
        if w is not None:
            self._waits.begin(key, f"reshape:{arr.name}", ev, w.first_ns)

    def _h_suspend_begin(self, arr: ArrayRec, ev: Event, what: str) -> None:
        arr.suspenders[ev.tid] = what
        # mddev_suspend / dm_suspend wait for in-flight IO to drain
        self._waits.begin(f"susp:{arr.name}", f"io:{arr.name}", ev)

    def _h_suspend_end(self, arr: ArrayRec, ev: Event) -> None:
        arr.suspenders.pop(ev.tid, None)
        self._waits.end(ev.tid, f"susp:{arr.name}")

    def _h_mddev_suspend(self, arr: ArrayRec, ev: Event) -> None:
        if ev.args.get("phase") == "exit":
            self._h_suspend_end(arr, ev)
        else:
            self._h_suspend_begin(arr, ev, "mddev_suspend")

    def _h_dm_suspend_enter(self, arr: ArrayRec, ev: Event) -> None:
        self._h_suspend_begin(arr, ev, "dm_suspend")

    def _h_dm_suspend_exit(self, arr: ArrayRec, ev: Event) -> None:
        self._h_suspend_end(arr, ev)
        if not ev.args.get("rc"):
            arr.dm_suspended = True

    def _h_dm_resume_exit(self, arr: ArrayRec, ev: Event) -> None:
        arr.dm_suspended = False

    def _h_raid_target(self, arr: ArrayRec, ev: Event) -> None:
        hook, phase = ev.args.get("hook"), ev.args.get("phase")
        key = f"hook:{arr.name}:{hook}"
        if hook in ("presuspend", "postsuspend"):
            # md_frozen_sync_thread / md_stop_writes: wait for the sync thread to stop
            if phase == "enter":
                self._waits.begin(key, f"thread:{arr.name}", ev)
            else:
                self._waits.end(ev.tid, key)
        if hook == "postsuspend" and phase == "exit":
            arr.dm_suspended = True
        elif hook == "resume":
            arr.dm_suspended = False

    def _h_sync_action(self, arr: ArrayRec, ev: Event) -> None:
        a = ev.args
        arr.sync_action = str(a.get("action", a.get("sync_action", "")))
        if ev.kind == "sysfs_state":
            if isinstance(a.get("raid_disks"), int):
                arr.raid_disks = a["raid_disks"]
            if isinstance(a.get("degraded"), int):
                arr.degraded = a["degraded"]
            if ev.state is None and "reshape_position" in a:
                # the sysfs poller's reshape_position (sectors; absent: 'none'), where no
                # probe state word carries it
                rp = a["reshape_position"]
                arr.reshape_pos = rp if isinstance(rp, int) and rp >= 0 else None
            if isinstance(a.get("level"), str) and a["level"].startswith("raid"):
                arr.level = a["level"]
            if a.get("source") == "snapshot":
                self._snapshot_state(arr, a)

    @staticmethod
    def _snapshot_state(arr: ArrayRec, a: dict) -> None:
        """A snapshot's extras: md array_state, suspend_lo/hi, dm suspended, md threads."""
        arr.array_state = str(a.get("array_state", ""))
        lo, hi = a.get("suspend_lo"), a.get("suspend_hi")
        arr.suspend_range = (lo, hi) if isinstance(lo, int) and isinstance(hi, int) else None
        if isinstance(a.get("dm_suspended"), bool):
            arr.dm_suspended = a["dm_suspended"]
        arr.idle_threads = frozenset(str(n) for n in a.get("idle_threads") or ())
        threads = a.get("threads")
        if isinstance(threads, dict):
            arr.threads = {str(k): int(v) for k, v in threads.items()}
            for name, tid in arr.threads.items():
                role = name.partition("_")[2]
                if role.startswith("raid") or role == "multipath":
                    arr.daemon_tid = tid
                elif arr.sync_thread:
                    arr.sync_tid = tid

    def _h_task_blocked(self, arr: ArrayRec | None, ev: Event) -> None:
        """A task seen blocked (snapshot): keep it, and enter the waits its stack shows into
        the IO-wait table and the wait-for graph (engine/blocked.py), so F7 and F9 judge it
        by their own rules."""
        bt = blocked.from_event(ev)
        self._blocked[bt.tid] = bt
        if arr is None:
            return
        arr.blocked[bt.tid] = bt
        name, since = arr.name, bt.since_ns
        if bt.suspending:
            arr.suspenders[bt.tid] = bt.suspending
        if bt.wait == "reshape_io":
            # the BPF in-flight table's own report of this task's request says more (sector)
            if not any(w.tid == bt.tid and w.mode != "stack" for w in arr.io_waits.values()):
                self._h_io_wait(arr, blocked.io_wait_event(bt))
        elif bt.wait == "io_drain":
            self._waits.begin(f"susp:{name}", f"io:{name}", ev, since)
        elif bt.wait == "sync_stop":
            self._waits.begin(f"unreg:{name}", f"thread:{name}", ev, since)
        elif bt.wait == "suspended_io":
            self._waits.begin(f"w:suspended:{name}", f"suspend:{name}", ev, since)

    def _h_task_unblocked(self, arr: ArrayRec | None, ev: Event) -> None:
        """A task seen blocked before is not any more (a live re-scan,
        sources/snapshot/watch.py): its waits end, and with them what rested on them."""
        self._blocked.pop(ev.tid, None)
        if arr is None:
            return
        bt = arr.blocked.pop(ev.tid, None)
        if bt is not None and bt.suspending and arr.suspenders.get(ev.tid) == bt.suspending:
            arr.suspenders.pop(ev.tid, None)
        w = arr.io_waits.get(blocked.task_io_id(ev.tid))
        if w is not None:
            self._h_io_wait(arr, Event(ts=ev.ts, kind="io_wait", array=arr.name, pid=ev.pid,
                                       tid=ev.tid, comm=ev.comm, args={
                                           "io_id": w.io_id, "done": True, "mode": "stack",
                                           "wait_ns": max(ev.ts - w.first_ns, 0)}))
        name = arr.name
        for key in (f"susp:{name}", f"unreg:{name}", f"w:suspended:{name}"):
            self._waits.end(ev.tid, key)

    def _h_progress(self, arr: ArrayRec, ev: Event) -> None:
        a = ev.args
        if a.get("action"):
            arr.sync_action = str(a["action"])
        if a.get("total"):
            arr.resync_max = int(a["total"])
        progress.observe(arr, ev.ts, arr.curr_resync, arr.reshape_pos, int(a.get("done", 0)))

    def _h_lock(self, arr: ArrayRec, ev: Event) -> list[Finding]:
        return self._lock(arr, ev)

    def _h_wait(self, arr: ArrayRec, ev: Event) -> None:
        self._explicit_wait(ev)

    def _lock(self, arr: ArrayRec | None, ev: Event) -> list[Finding]:
        op = ev.args.get("op")
        lock_id = str(ev.args.get("lock_id", ""))
        key = "lock"
        if op in ("acquire", "contend"):
            self._waits.begin(key, f"lock:{lock_id}", ev)
        elif op in ("acquired", "trylock_fail", "release"):
            self._waits.end(ev.tid, key)
        inversions = self._locks.on_lock(ev)
        if not inversions:
            return []
        return self._graph(inversions=inversions)

    def _explicit_wait(self, ev: Event) -> None:
        what = str(ev.args.get("what", ""))
        target = str(ev.args.get("target", "") or ev.array)
        kind = _WAIT_RESOURCE.get(what, what)
        resource = target if ":" in target else f"{kind}:{target}"
        key = f"w:{what}:{target}"
        if ev.kind == "wait_begin":
            self._waits.begin(key, resource, ev)
        else:
            self._waits.end(ev.tid, key)

    # -- wait-for providers -----------------------------------------------------------------
    def _providers(self, resource: str) -> list[int]:
        kind, _, name = resource.partition(":")
        if kind == "lock":
            owner = self._locks.owner.get(name)
            return [] if owner is None else [owner]
        arr = self._arrays.get(name)
        if arr is None:
            return []
        if kind == "reshape":
            if not blocked_reason(arr):
                # the reshape can move: the sync thread provides progress (a real trace on
                # 6.1 shows IO blocked across a dm_suspend completing as the reshape moved)
                return [] if arr.sync_tid is None else [arr.sync_tid]
            # It cannot move until someone resumes/unfreezes it.  A task suspending the
            # array right now is the one that will resume it: dm-raid always (lvm/dmsetup
            # suspend then resume); md before 6.7, whose mddev_suspend holds reconfig_mutex
            # so nobody else can unfreeze it meanwhile.  Otherwise it is the operator's move
            # (F7), not a cycle.
            if arr.suspenders and (arr.kind == "dm-raid" or self._kver < (6, 7)):
                return sorted(arr.suspenders)
            return []
        if kind == "io":
            return sorted({w.tid for w in arr.io_waits.values()})
        if kind == "thread":
            if arr.sync_tid is not None:
                return [arr.sync_tid]
            if arr.sync_thread and arr.daemon_tid is not None:
                return [arr.daemon_tid]
            return []
        if kind == "suspend":
            return sorted(arr.suspenders)
        return []

    # -- time -------------------------------------------------------------------------------
    def _maybe_tick(self) -> list[Finding]:
        if self._now - self._last_tick < _TICK_NS:
            return []
        return self._tick(self._now)

    def _tick(self, now: int) -> list[Finding]:
        self._last_tick = now
        new: list[Finding] = []
        open_ = self._fs.open               # array -> its open findings
        look = self._touched
        if self._hot:
            look |= self._hot
        if look or open_:
            self._touched = set()
            hot = self._hot = set()
            config = self.config
            arrays = self._arrays
            cands = look.union(open_) if open_ else look
            tables = self._tables
            for name in cands if len(cands) == 1 else [n for n in arrays if n in cands]:
                cur = arrays.get(name)
                if cur is None:
                    continue
                per = open_.get(name)
                codes = {f.code for f in per.values()} if per else None
                if name not in look and not (codes and not codes.isdisjoint(_TICK_CODES)):
                    continue
                # the current record and the live ones a table reload displaced (their
                # grace periods run on while the other table's events come in)
                recs = [cur, *tables[name].values()] if name in tables else [cur]
                for arr in recs:
                    if arr.lifecycle is _STOPPED:
                        continue
                    ctx = None
                    for det in TICK_DETECTORS:
                        # with nothing pending for this array a detector would only close
                        # findings that are not open: skip it
                        if det.wanted(arr, config) or codes and not codes.isdisjoint(
                                det.CODES):
                            if ctx is None:
                                ctx = Context(arr, None, now, config, self.kernel)
                                hot.add(name)
                            new += self._verdicts(det.check(ctx), None, arr)
        if self._waits.waits:
            new += self._graph(cycles=self._waits.cycles(self._providers))
        elif not self._fs.open_by_code.keys().isdisjoint(_GRAPH_CODES):
            # a graph detector has business on a tick only with a cycle or a finding of its
            # own open (to clear it): without waits there is no cycle
            new += self._graph(cycles=[])
        self._forget(now)
        return new

    def _forget(self, now: int) -> None:
        """Retention (engine/retention.py): stopped arrays and closed findings past it."""
        h, ret = self._health, self._ret
        h.arrays_retired += ret.expire(now, self._arrays)
        if self._fs.forgettable:
            h.findings_forgotten += self._fs.forget_closed(now - ret.retention_ns, MAX_CLOSED)

    def _graph(self, *, inversions: list[Inversion] | None = None,
               cycles: list | None = None) -> list[Finding]:
        new: list[Finding] = []
        for det in GRAPH_DETECTORS:
            active = self._fs.open_keys(det.CODE)
            if not det.wanted(inversions, cycles, active):
                continue
            ctx = GraphContext(self._now, self.config, self.kernel, self._arrays,
                               inversions or [], cycles, active)
            new += self._verdicts(det.check(ctx), None)
        return new

    def set_mode(self, mode: str) -> None:
        """Name the live source once it is known (a live engine is primed by the start-up
        snapshot before its probes are compiled: mdtrace.live.prime)."""
        self._health.mode = mode

    def advance(self, now_ns: int) -> list[Finding]:
        self._now = max(self._now, now_ns)
        return self._tick(self._now)

    def finish(self) -> list[Finding]:
        return self._tick(self._now)

    def _verdicts(self, verdicts: list[Verdict], ev: Event | None,
                  arr: ArrayRec | None = None) -> list[Finding]:
        """Apply detector verdicts; ``arr``: the record a per-array detector judged."""
        new: list[Finding] = []
        for v in verdicts:
            cur = self._fs.get(v.key)
            if v.finding is None:
                if cur is not None and cur.end_ns is None:
                    self._fs.close(cur, self._now)
                continue
            if cur is not None and cur.end_ns is None:
                cur.last_ns = self._now
                if ev is not None and len(cur.evidence) < self.config.max_evidence:
                    cur.evidence.append(ev)
                continue
            f = v.finding
            f.key, f.last_ns = v.key, self._now
            if len(f.evidence) > self.config.max_evidence:
                del f.evidence[self.config.max_evidence:]
            self._fs.add(v.key, f, None if arr is None else arr.generation)
            new.append(f)
        return new

    # -- output -----------------------------------------------------------------------------
    def lifecycle_of(self, name: str) -> Lifecycle | None:
        """The current lifecycle state of array ``name`` (None if never seen); cheap enough
        to call after every event (the report's timeline recorder does)."""
        arr = self._arrays.get(name) or self._ret.retired.get(name)
        return None if arr is None else arr.lifecycle

    @property
    def findings(self) -> list[Finding]:
        return self._fs.sorted()

    @property
    def _findings(self) -> dict[str, Finding]:
        """Findings kept, by key (tests compare engine states through it)."""
        return self._fs.by_key

    def _records(self) -> list[tuple[str, ArrayRec, bool]]:
        """(name, record, retired) of every array a snapshot shows: the working set, and in
        an archiving engine the retired ones too, in the order names first appeared."""
        if not self._ret.archive:
            return [(name, arr, False) for name, arr in self._arrays.items()]
        live, retired = self._arrays, self._ret.retired
        return [(name, live[name], False) if name in live else (name, retired[name], True)
                for name in self._order if name in live or name in retired]

    def snapshot(self) -> Snapshot:
        findings = self.findings
        arrays: dict[str, ArrayView] = {}
        locks = self._locks
        recs = self._records()
        lvs = [a.dm_name for _, a, _ in recs if a.dm_name]
        dm_devices = dm_context.views(self._dm, lvs)
        # per array, once (not once per array over everything): active codes, locks held
        active: dict[str, set[str]] = {}
        for f in self._fs.open_findings():
            active.setdefault(f.array, set()).add(f.code)
        held_by: dict[str, set[str]] = {}
        for tid, stack in locks.held.items():
            for h in stack:
                held_by.setdefault(h.array, set()).add(f"{h.cls} ({h.lock_id[:8]}) by {tid}")
        health = self._health
        health.findings_raised = dict(self._fs.raised_by_code)
        for name, arr, retired in recs:
            arrays[name] = array_view(name, arr, retired=retired, now_ns=self._now,
                                      held=sorted(held_by.get(name, ())),
                                      active=sorted(active.get(name, ())),
                                      dm_devices=dm_devices)
        order = [LockEdgeView(e.first, e.second, e.count, e.tid)
                 for e in locks.edges.values()]
        return Snapshot(now_ns=self._now, arrays=arrays, findings=findings,
                        health=self._health, lock_order=order,
                        blocked_tasks=list(self._blocked.values()), dm_devices=dm_devices)


_HANDLERS = {
    "array_create": Engine._h_create,
    "array_stop": Engine._h_stop,
    "check_recovery_enter": Engine._h_check_recovery,
    "check_recovery_exit": Engine._h_check_recovery,
    "do_sync_enter": Engine._h_do_sync_enter,
    "do_sync_exit": Engine._h_do_sync_exit,
    "reap": Engine._h_reap,
    "thread_unregister": Engine._h_unregister,
    "io_wait": Engine._h_io_wait,
    "mddev_suspend": Engine._h_mddev_suspend,
    "dm_suspend_enter": Engine._h_dm_suspend_enter,
    "dm_suspend_exit": Engine._h_dm_suspend_exit,
    "dm_resume_exit": Engine._h_dm_resume_exit,
    "raid_target": Engine._h_raid_target,
    "sync_action": Engine._h_sync_action,
    "sysfs_state": Engine._h_sync_action,
    "progress": Engine._h_progress,
    "lock": Engine._h_lock,
    "wait_begin": Engine._h_wait,
    "wait_end": Engine._h_wait,
    "task_blocked": Engine._h_task_blocked,
    "task_unblocked": Engine._h_task_unblocked,
}
