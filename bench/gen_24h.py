"""Generate a 24-hour recording of 8 arrays in the change-only shape (issue 12).

    .venv/bin/python bench/gen_24h.py OUT.jsonl.zst [--hours 24] [--seed 1]

What a day on one host looks like to ``mdtrace record`` (6.12 kernel, ``--locks-full``, the
sysfs poller on), built from the event order of the real recordings in tests/data/golden:

* md0  raid5, 4 -> 5 disks reshape over ~20 h, frozen twice by the operator with writes
  blocked across the reshape position (io_wait every second per blocked request: the first
  freeze lasts 10 minutes, F7; the second 3 s, below ``io_wait_s``);
* md1  raid6 created at 00:05, its initial resync runs ~9 h, then idle;
* md2  raid1, a member fails at 12:00 and is re-added: recovery ~3 h;
* md3  raid10, the monthly ``checkarray`` at 02:00 for ~1.5 h;
* md4  raid1 boot array, idle;  md5 raid5 and md7 raid6, idle with IO (io_stats);
* dm-6 an lvm raid1 LV, idle, suspended and resumed for a snapshot every 4 h.

md_check_recovery is reported change-only (mdtrace/bpf/common.h contract): an enter when the
state words differ from the last reported enter, an exit likewise, else one exit sample a
second per syncing array carrying the positions; ``calls`` counts the calls each stands for.
Idle arrays (recovery word 0) report no md_check_recovery at all.  Every array sees the
reconfig_mutex taken by a monitoring agent once a minute, and by the daemon where it
registers or reaps the sync thread; io_stats come every 5 s per raid4/5/6 array with IO;
the sysfs poller samples sync_completed every 10 s while a sync runs.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mdtrace.events import ArrayState, Event, canonicalise  # noqa: E402
from mdtrace.kernel.flags import RECOVERY_6_11, FlagTable  # noqa: E402
from mdtrace.trace import TraceHeader, TraceWriter  # noqa: E402

GEN_VERSION = 1
KERNEL = "6.12.117+deb12-amd64"
S = 1_000_000_000
T0 = 3 * 86_400 * S            # CLOCK_MONOTONIC at the start: three days of uptime
HAS_SUPERBLOCK = 1 << 11       # mddev flags word of a running array (6.12)
ENTER, EXIT = "check_recovery_enter", "check_recovery_exit"
ACTION_FLAGS = {"resync": ("SYNC",), "recover": ("SYNC", "RECOVER"),
                "reshape": ("SYNC", "RESHAPE"), "check": ("SYNC", "CHECK", "REQUESTED")}


def _raw(names: set[str]) -> int:
    out = 0
    for n in names:
        out |= 1 << RECOVERY_6_11[n]
    return out


class Sim:
    """One array: its state words and positions, and the events it makes."""

    def __init__(self, day: Day, name: str, level: int, sectors: int, *, dm_name: str = "",
                 io: bool = False) -> None:
        self.day, self.name, self.level, self.size = day, name, level, sectors
        self.dm_name, self.io = dm_name, io
        self.mddev = f"p:{zlib.crc32(name.encode()):012x}"
        self.daemon_comm = "mdX_raid1" if dm_name else f"{name}_raid{level}"
        self.daemon_tid = 400 + 10 * len(day.sims)
        self.sync_tid = 0
        self.rec: set[str] = set()
        self.ro = self.suspended = 0
        self.sync_thread = False
        self.reshape_pos: int | None = None
        self.curr = 0
        self.action = "idle"
        self.reported: dict[str, tuple[int, ...] | None] = {ENTER: None, EXIT: None}
        self.pending = {ENTER: 0, EXIT: 0}
        self.last_exit = 0
        self.last_io_stats = 0
        self.last_sample = 0
        self.speed = 0              # sectors per second while syncing
        self.lock_id = f"l:{zlib.crc32(name.encode()) ^ 0x5a5a:08x}"
        self.born = True            # False until its array_create (md1)

    # -- state --------------------------------------------------------------------------------
    def state(self) -> ArrayState:
        return ArrayState(recovery=_raw(self.rec), flags=HAS_SUPERBLOCK, ro=self.ro,
                          suspended=self.suspended, sync_thread=self.sync_thread,
                          reshape_pos=self.reshape_pos, curr_resync=self.curr,
                          resync_max=self.size, level=self.level)

    def words(self) -> tuple[int, ...]:
        """What the change-only BPF compares: the state words, not the positions."""
        return (_raw(self.rec), HAS_SUPERBLOCK, self.ro, self.suspended, self.sync_thread,
                self.reshape_pos is None)

    def emit(self, ts: int, kind: str, tid: int, comm: str,
             args: dict[str, Any] | None = None, state: bool = True) -> None:
        self.day.put(Event(ts=ts, kind=kind, array=self.name, cpu=tid & 1, pid=tid, tid=tid,
                           comm=comm, dm_name=self.dm_name, mddev=self.mddev,
                           state=self.state() if state else None, args=args or {}))

    # -- md_check_recovery, change-only ---------------------------------------------------------
    def daemon(self, ts: int, kind: str, calls: int = 1) -> None:
        """``calls`` md_check_recovery calls of ``kind`` up to ``ts``, the state as now."""
        if not self.rec and not self.sync_thread:
            self.reported[kind] = None       # idle: not reported (nor counted)
            self.pending[kind] = 0
            return
        self.pending[kind] += calls
        w = self.words()
        if w == self.reported[kind] and (kind == ENTER or ts - self.last_exit < S):
            return
        n = self.pending[kind]
        self.emit(ts, kind, self.daemon_tid, self.daemon_comm,
                  {"calls": n} if n > 1 else None)
        self.pending[kind] = 0
        self.reported[kind] = w
        if kind == EXIT:
            self.last_exit = ts

    def call(self, ts: int) -> None:
        """One md_check_recovery call (enter and exit see the same state)."""
        self.daemon(ts, ENTER)
        self.daemon(ts + 20_000, EXIT)

    def lock(self, ts: int, tid: int, comm: str, cls: str = "reconfig_mutex",
             lock_id: str = "") -> int:
        """An uncontended acquire / acquired / release; returns the time after it."""
        lid = lock_id or self.lock_id
        for op, dt in (("acquire", 0), ("acquired", 3_000), ("release", 80_000)):
            self.emit(ts + dt, "lock", tid, comm, {"lock": cls, "lock_id": lid, "op": op},
                      state=False)
        return ts + 90_000

    # -- a sync's life ------------------------------------------------------------------------
    def request(self, ts: int, action: str, source: str = "sysfs") -> int:
        """``echo ACTION > sync_action`` (or mdadm): NEEDED, then the daemon starts it."""
        ts = self.lock(ts, 3000 + len(self.name), "bash" if source == "sysfs" else "mdadm")
        self.emit(ts, "sync_action", 3000, "bash", {"action": action, "source": source})
        self.rec = {"NEEDED"} | ({"REQUESTED", "CHECK"} if action == "check" else set())
        self.call(ts + 500_000)
        return self.start(ts + 2_000_000, action)

    def start(self, ts: int, action: str) -> int:
        self.daemon(ts, ENTER)
        ts = self.lock(ts + 10_000, self.daemon_tid, self.daemon_comm)
        self.action = action
        self.rec = {"RUNNING", *ACTION_FLAGS[action]}
        self.emit(ts, "thread_register", 190, "kworker/0:2",
                  {"name": action, "caller": "md_start_sync", "sync": True, "run": "md_do_sync"})
        self.daemon(ts + 30_000, EXIT)
        self.sync_tid = 5000 + 100 * len(self.day.sims) + self.day.rnd.randrange(90)
        self.sync_thread = True
        self.curr = 0 if self.reshape_pos is None else self.reshape_pos
        comm = f"{self.name}_{action}" if not self.dm_name else f"mdX_{action}"
        self.emit(ts + 2_000_000, "do_sync_enter", self.sync_tid, comm,
                  {"thread": comm, "action": action})
        return ts + 3_000_000

    def finish(self, ts: int, *, interrupted: bool = False) -> int:
        """md_do_sync returns (DONE, INTR if stopped), the daemon reaps it."""
        self.rec |= {"DONE"} | ({"INTR"} if interrupted else set())
        comm = f"{self.name}_{self.action}" if not self.dm_name else f"mdX_{self.action}"
        self.emit(ts, "do_sync_exit", self.sync_tid, comm, {"thread": comm,
                                                             "action": self.action})
        ts += 1_500_000
        self.daemon(ts, ENTER)
        ts = self.lock(ts + 10_000, self.daemon_tid, self.daemon_comm)
        self.emit(ts, "reap", self.daemon_tid, self.daemon_comm,
                  {"mutex_owned": True, "mutex_locked": True, "caller": "md_check_recovery"})
        self.emit(ts + 200_000, "thread_unregister", self.daemon_tid, self.daemon_comm,
                  {"name": comm, "caller": "md_reap_sync_thread", "sync": True,
                   "run": "md_do_sync"})
        self.sync_thread = False
        self.sync_tid = 0
        if not interrupted:
            self.curr = 0
            if self.reshape_pos is not None and self.reshape_pos >= self.size:
                self.reshape_pos = None
        self.rec = {"FROZEN"} if interrupted else set()
        self.daemon(ts + 400_000, EXIT)
        self.action = "frozen" if interrupted else "idle"
        return ts + 500_000

    # -- one second of the day ------------------------------------------------------------------
    def second(self, ts: int) -> None:
        rnd = self.day.rnd
        if self.sync_thread and "DONE" not in self.rec and "FROZEN" not in self.rec:
            self.curr = min(self.size, self.curr + self.speed + rnd.randrange(-64, 64) * 8)
            if self.reshape_pos is not None:
                self.reshape_pos = self.curr
            calls = rnd.randrange(55, 76) + (rnd.randrange(200, 360) if self.io else 0)
            at = ts + rnd.randrange(S // 2)
            self.daemon(at, ENTER, calls)
            self.daemon(at + 25_000, EXIT, calls)
            if not self.dm_name and ts - self.last_sample >= 10 * S:
                self.last_sample = ts
                self.emit(ts + 7_000_000, "progress", 0, "", {
                    "done": self.curr, "total": self.size, "action": self.action,
                    "speed_kbs": self.speed // 2}, state=False)
            if self.curr >= self.size:
                self.finish(ts + S // 2 + 1_000)
        if self.io and ts - self.last_io_stats >= 5 * S:
            self.last_io_stats = ts
            blocked = sum(1 for w in self.day.blocked if w[0] is self)
            self.emit(ts + 3_000_000, "io_stats", 6100, "fio", {
                "requests": rnd.randrange(200, 20_000), "slow": blocked,
                "blocked": blocked, "max_wait_ns": rnd.randrange(10**5, 10**8)})


class Day:
    """The host: its arrays, the event heap (kept in time order), blocked writers."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.sims: list[Sim] = []
        self.heap: list[tuple[int, int, Event]] = []
        self.seq = 0
        self.blocked: list[tuple[Sim, int, int, int, int]] = []  # sim, tid, sector, since, n

    def put(self, ev: Event) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (ev.ts, self.seq, ev))

    def add(self, *args: Any, **kw: Any) -> Sim:
        sim = Sim(self, *args, **kw)
        self.sims.append(sim)
        return sim

    def drain(self, before: int) -> list[Event]:
        out = []
        heap = self.heap
        while heap and heap[0][0] < before:
            out.append(heapq.heappop(heap)[2])
        return out

    # -- the operator freezes a reshape with writes in flight -----------------------------------
    def freeze(self, sim: Sim, ts: int, writers: int) -> None:
        sim.emit(ts, "sync_action", 3001, "bash", {"action": "frozen", "source": "sysfs"})
        sim.rec |= {"FROZEN"}
        sim.finish(ts + 1_000_000, interrupted=True)
        pos = sim.reshape_pos or 0
        for k in range(writers):
            self.blocked.append((sim, 7000 + k, pos + 2048 * (k + 1), ts + 2 * S // 10, 0))

    def unfreeze(self, sim: Sim, ts: int) -> None:
        sim.emit(ts, "sync_action", 3001, "bash", {"action": "reshape", "source": "sysfs"})
        sim.rec = {"NEEDED"}
        sim.call(ts + 300_000)
        ts = sim.start(ts + 1_000_000, "reshape")
        for k, (s, tid, sector, since, n) in enumerate(self.blocked):
            if s is sim:
                sim.reshape_pos = (sim.reshape_pos or 0) + 4096
                sim.curr = sim.reshape_pos
                self._io_wait(s, ts + 40_000_000 * (k + 1), tid, sector, since, n + 1, True)
        self.blocked = [w for w in self.blocked if w[0] is not sim]

    def blocked_second(self, ts: int) -> None:
        """The BPF's io scan: each request waiting >= 1 s reported once a second."""
        for i, (sim, tid, sector, since, n) in enumerate(self.blocked):
            if ts - since >= S:
                self._io_wait(sim, ts + 4_000_000 + i * 50_000, tid, sector, since, n + 1,
                              False)
                self.blocked[i] = (sim, tid, sector, since, n + 1)

    def _io_wait(self, sim: Sim, ts: int, tid: int, sector: int, since: int, n: int,
                 done: bool) -> None:
        pos = sim.reshape_pos or 0
        sim.emit(ts, "io_wait", tid, "postgres", {
            "sector": sector, "sectors": 2048, "rw": "W", "wait_ns": ts - since,
            "done": done, "mode": "requeue", "retries": n * 150_000 + self.rnd.randrange(999),
            "io_id": f"{sim.mddev}/{sector}", "reshape_progress": pos + 3072,
            "reshape_safe": pos})


def _dm_snapshot(lv: Sim, ts: int) -> None:
    """lvcreate --snapshot of the LV: dm suspend (presuspend, md suspend, postsuspend), then
    resume (preresume, resume)."""
    dm = {"dm_name": lv.dm_name, "dm_dev": "252:6"}
    tid, comm = 8100, "lvcreate"
    lv.emit(ts, "dm_suspend_enter", tid, comm, {**dm, "flags": 1})
    ts = lv.lock(ts + 10_000, tid, comm, "dm_suspend_lock", "l:dm-6-suspend")
    lv.emit(ts, "raid_target", tid, comm, {"hook": "presuspend", "phase": "enter"})
    lv.emit(ts + 30_000, "raid_target", tid, comm, {"hook": "presuspend", "phase": "exit"})
    lv.emit(ts + 40_000, "mddev_suspend", tid, comm, {"phase": "enter"})
    lv.suspended = 1
    lv.emit(ts + 900_000, "mddev_suspend", tid, comm, {"phase": "exit", "rc": 0})
    lv.emit(ts + 950_000, "raid_target", tid, comm, {"hook": "postsuspend", "phase": "enter"})
    lv.emit(ts + 990_000, "raid_target", tid, comm, {"hook": "postsuspend", "phase": "exit"})
    lv.emit(ts + 1_000_000, "dm_suspend_exit", tid, comm, {**dm, "rc": 0})
    ts += 180_000_000                    # the snapshot's COW device is set up meanwhile
    lv.emit(ts, "dm_resume_enter", tid, comm, {**dm, "rc": 0})
    lv.emit(ts + 10_000, "raid_target", tid, comm, {"hook": "preresume", "phase": "enter"})
    lv.emit(ts + 60_000, "raid_target", tid, comm, {"hook": "preresume", "phase": "exit",
                                                    "rc": 0})
    lv.emit(ts + 70_000, "raid_target", tid, comm, {"hook": "resume", "phase": "enter"})
    lv.suspended = 0
    lv.emit(ts + 80_000, "mddev_resume", tid, comm, {"phase": "enter"})
    lv.emit(ts + 200_000, "raid_target", tid, comm, {"hook": "resume", "phase": "exit"})
    lv.emit(ts + 210_000, "dm_resume_exit", tid, comm, {**dm, "rc": 0})


def _header() -> TraceHeader:
    probes = {p: {"probe": p, "attached": True, "method": "kprobe", "reason": ""} for p in (
        "md_check_recovery", "md_do_sync", "md_reap_sync_thread", "md_register_thread",
        "md_unregister_thread", "raid5_start_reshape", "mddev_suspend", "mddev_resume",
        "raid5_make_request", "dm_suspend", "dm_resume", "raid_presuspend",
        "raid_postsuspend", "raid_preresume", "raid_resume", "mutex_lock")}
    return TraceHeader(kernel=KERNEL, source="bcc", flag_tables=FlagTable.for_release(KERNEL),
                       created="2026-12-01T00:00:00Z",
                       meta={"generator": "bench/gen_24h.py", "gen_version": GEN_VERSION,
                             "probes": probes, "locks": "full", "io_threshold_ms": 1000.0})


def generate(path: str | Path, *, hours: float = 24.0, seed: int = 1) -> int:
    """Write the day to ``path`` (compression by suffix); returns the number of events."""
    day = Day(seed)
    gb = 2 * 1024 * 1024                 # sectors per GiB
    md0 = day.add("md0", 5, 4 * 1024 * gb, io=True)     # 4 TiB array being reshaped
    md1 = day.add("md1", 6, 2 * 1024 * gb)
    md2 = day.add("md2", 1, 1024 * gb)
    md3 = day.add("md3", 10, 2 * 1024 * gb)
    day.add("md4", 1, 32 * gb)                          # idle
    day.add("md5", 5, 1024 * gb, io=True)               # idle, with IO
    day.add("md7", 6, 3 * 1024 * gb, io=True)
    lv = day.add("dm-6", 1, 256 * gb, dm_name="vg0-data")
    end = int(hours * 3600)
    table = FlagTable.for_release(KERNEL)
    count = 0
    with TraceWriter(path, _header(), flush_every=16384) as w:
        def write(evs: list[Event]) -> None:
            nonlocal count
            for ev in evs:
                canonicalise(ev, table)
                w.write(ev)
            count += len(evs)

        write([Event(ts=T0, kind="probe_status", args=dict(p))
               for p in _header().meta["probes"].values()])
        md1.born = False
        sims = day.sims
        for sec in range(end):
            ts = T0 + sec * S
            rnd = day.rnd
            if sec == 300:                                   # mdadm --create md1: resync
                md1.born = True
                md1.emit(ts, "array_create", 3100, "mdadm", {"level": "raid6", "kind": "md"})
                md1.speed = 2 * 1024 * gb // (9 * 3600)
                md1.request(ts + 5_000_000, "resync", "mdadm")
            if sec == 3600:                                  # mdadm --grow md0: reshape
                md0.emit(ts, "start_reshape", 3200, "mdadm", {"caller": "action_store",
                                                              "phase": "enter"})
                md0.reshape_pos = 0
                md0.emit(ts + 600_000, "start_reshape", 3200, "mdadm", {
                    "caller": "action_store", "phase": "exit", "rc": 0})
                md0.speed = 4 * 1024 * gb // (20 * 3600)
                md0.request(ts + 1_000_000, "reshape", "mdadm")
            if sec == 7200:                                  # checkarray cron
                md3.speed = 2 * 1024 * gb // (3600 * 3 // 2)
                md3.request(ts, "check")
            if sec == 12 * 3600 + 300:                       # a member re-added after failing
                md2.speed = 1024 * gb // (3 * 3600)
                md2.request(ts, "recover", "mdadm")
            if sec in (6 * 3600, 15 * 3600) and md0.sync_thread:
                day.freeze(md0, ts + S // 3, 3 if sec == 6 * 3600 else 1)
            if sec in (6 * 3600 + 600, 15 * 3600 + 3) and "FROZEN" in md0.rec:
                day.unfreeze(md0, ts + S // 4)
            if sec % (4 * 3600) == 1800:
                _dm_snapshot(lv, ts + 123_000_000)
            if sec % 60 == 17:                               # the monitoring agent
                for k, sim in enumerate(sims):
                    if sim.born:
                        sim.lock(ts + k * 3_000_000, 6200, "node_exporter")
            if "FROZEN" in md0.rec:                          # the daemon, woken by the IO
                md0.daemon(ts + rnd.randrange(S // 2), ENTER, rnd.randrange(300, 500))
                md0.daemon(ts + S // 2 + 10_000, EXIT, rnd.randrange(300, 500))
            for sim in sims:
                sim.second(ts)
            day.blocked_second(ts)
            write(day.drain(ts + S))
        write(day.drain(1 << 63))
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    n = generate(args.out, hours=args.hours, seed=args.seed)
    print(f"{args.out}: {n} events, {Path(args.out).stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
