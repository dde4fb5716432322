"""Build synthetic event streams that follow the kernel's md/dm-raid code paths.

A :class:`Sim` is a clock plus arrays; an :class:`Arr` holds the kernel state words that the
BPF programs read (recovery flags by canonical name, ro, suspended, sync thread, reshape
position, curr_resync) and emits :class:`mdtrace.events.Event` s carrying that state encoded
with the *kernel's* flag table of the scenario's release (6.1 bit order vs 6.11+), exactly as a
recording would, so decoding is exercised too.  Tasks are (tid, comm) pairs like in a trace.
The macros (``daemon``, ``start_sync``, ``run_sync`` ...) reproduce the event order seen in the
real recordings under tests/data/golden.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdtrace.events import ArrayState, Event, canonicalise
from mdtrace.kernel.flags import FlagTable, Recovery
from mdtrace.trace import TraceHeader, TraceWriter

S = 1_000_000_000
ACTION_FLAGS = {"resync": ("SYNC",), "recover": ("RECOVER",), "check": ("SYNC", "REQUESTED",
                "CHECK"), "repair": ("SYNC", "REQUESTED"), "reshape": ("RESHAPE",)}


@dataclass(frozen=True)
class Task:
    tid: int
    comm: str


@dataclass
class Arr:
    sim: Sim
    name: str
    level: int = 5
    kind: str = "md"
    dm_name: str = ""
    flags: set[str] = field(default_factory=set)
    ro: int = 0
    suspended: int = 0
    sync_thread: bool = False
    reshape_pos: int | None = None
    curr_resync: int = 0
    resync_max: int = 1 << 20
    daemon: Task = Task(0, "")
    sync_task: Task | None = None
    # the mddev's identity (hashed pointer): two tables of one dm device are two mddevs
    ident: str = ""

    def __post_init__(self) -> None:
        mdname = "mdX" if self.kind == "dm-raid" else self.name
        self.daemon = self.sim.task(f"{mdname}_raid{self.level}")

    # -- state --------------------------------------------------------------------------
    def set(self, *names: str) -> Arr:
        self.flags.update(names)
        return self

    def clear(self, *names: str) -> Arr:
        self.flags.difference_update(names)
        return self

    def state(self) -> ArrayState:
        canon = 0
        for n in self.flags:
            canon |= Recovery[n]
        return ArrayState(recovery=self.sim.table.recovery_raw(canon), ro=self.ro,
                          suspended=self.suspended, sync_thread=self.sync_thread,
                          reshape_pos=self.reshape_pos, curr_resync=self.curr_resync,
                          resync_max=self.resync_max, level=self.level)

    def emit(self, ev_kind: str, task: Task, /, **args: Any) -> Event:
        """Append one event of ``ev_kind`` by ``task`` with the current state and ``args``."""
        ev = Event(ts=self.sim.now, kind=ev_kind, array=self.name, cpu=task.tid % 2,
                   pid=task.tid, tid=task.tid, comm=task.comm, dm_name=self.dm_name,
                   mddev=self.sim.mddev(self.ident or self.name), state=self.state(),
                   args=args)
        self.sim.events.append(ev)
        self.sim.tick()
        return ev

    # -- macros following md.c ----------------------------------------------------------
    def create(self, by: Task) -> None:
        """md_run (mdadm --create / dm-raid ctr): the personality registers its daemon."""
        self.emit("thread_register", by, name=f"raid{self.level}", caller="setup_conf",
                  sync=False, run=f"raid{self.level}d")
        self.emit("array_create", by, level=f"raid{self.level}", kind=self.kind)

    def daemon_pass(self) -> None:
        """One md_check_recovery run in the array's daemon thread with nothing to do."""
        self.emit("check_recovery_enter", self.daemon)
        self.emit("check_recovery_exit", self.daemon)

    def start_sync(self, action: str, *, registered_by: str = "md_start_sync") -> None:
        """Steps 1-2: NEEDED seen by the daemon, RUNNING set, the sync thread registered
        (6.7+: by md_start_sync on a workqueue; raid5_start_reshape before ad39c08186f8)."""
        self.set("NEEDED")
        self.emit("check_recovery_enter", self.daemon)
        self.clear("NEEDED").set("RUNNING", *ACTION_FLAGS[action])
        self.emit("check_recovery_exit", self.daemon)
        self.sim.sleep(0.001)
        self.register_sync(action, self.sim.task("kworker/0:2"), registered_by)

    def register_sync(self, action: str, by: Task, caller: str) -> None:
        name = "reshape" if action == "reshape" else "resync"
        self.sync_thread = True
        mdname = "mdX" if self.kind == "dm-raid" else self.name
        self.sync_task = self.sim.task(f"{mdname}_{name}")
        self.emit("thread_register", by, name=name, caller=caller, sync=True, run="md_do_sync")

    def run_sync(self, action: str, seconds: float, *, start: int = 0, end: int | None = None,
                 step_s: float = 0.5, enter: bool = True, reshape: bool = False) -> None:
        """Step 3: md_do_sync runs; the daemon wakes every ``step_s`` and reads progress."""
        assert self.sync_task is not None
        if enter:
            self.emit("do_sync_enter", self.sync_task, thread=self.sync_task.comm,
                      action=action)
        end = self.resync_max if end is None else end
        steps = max(1, int(seconds / step_s))
        for i in range(1, steps + 1):
            self.sim.sleep(step_s)
            pos = start + (end - start) * i // steps
            self.curr_resync = pos
            if reshape:
                self.reshape_pos = pos
            self.daemon_pass()

    def end_sync(self, action: str, *, done: bool = True, intr: bool = False) -> None:
        """md_do_sync returns (with DONE since 82ec0ae59d02, or when it completed)."""
        assert self.sync_task is not None
        if intr:
            self.set("INTR")
        if done:
            self.set("DONE")
        self.emit("do_sync_exit", self.sync_task, thread=self.sync_task.comm, action=action)

    def reap(self, by: Task | None = None, caller: str = "md_check_recovery",
             owned: bool = True) -> None:
        """Step 4: md_reap_sync_thread (normally from the daemon's md_check_recovery)."""
        task = by or self.daemon
        if task is self.daemon:
            self.emit("check_recovery_enter", task)
        self.emit("reap", task, mutex_owned=owned, mutex_locked=True, caller=caller)
        name = self.sync_task.comm if self.sync_task else ""
        self.emit("thread_unregister", task, name=name, caller="md_reap_sync_thread",
                  sync=True, run="md_do_sync")
        self.sync_thread = False
        self.sync_task = None
        self.clear("RUNNING", "DONE", "INTR", "SYNC", "RECOVER", "RESHAPE", "REQUESTED",
                   "CHECK")
        self.curr_resync = 0
        if task is self.daemon:
            self.emit("check_recovery_exit", task)

    def stop(self, by: Task) -> None:
        self.set("FROZEN")
        self.emit("thread_unregister", by, name=self.daemon.comm, caller="mddev_detach",
                  sync=False, run=f"raid{self.level}d")
        self.clear("FROZEN")
        self.emit("array_stop", by)

    def io_blocked(self, task: Task, sector: int, waited_s: float, *, done: bool = False,
                   mode: str = "sleep") -> None:
        """The reshape_io scan (or the request's return) reporting a request waiting in
        raid5_make_request across the reshape position."""
        self.emit("io_wait", task, sector=sector, sectors=8, rw="W",
                  wait_ns=int(waited_s * S), done=done, mode=mode, retries=0,
                  io_id=f"{self.sim.mddev(self.name)}/{sector}",
                  reshape_progress=self.reshape_pos or 0, reshape_safe=self.reshape_pos or 0)

    def reshape_past_io(self, task: Task, sector: int, *, upto: int, past: int,
                        waited_s: float) -> None:
        """Reshape to ``upto`` while a write at ``sector`` waits across the position, then
        move ``past`` it: the write completes after ``waited_s`` (raid5 wait_for_overlap)."""
        self.run_sync("reshape", upto // 40_000 or 1, end=upto, reshape=True)
        self.io_blocked(task, sector, waited_s - 0.3)
        self.run_sync("reshape", 1, start=upto, end=past, enter=False, reshape=True)
        self.io_blocked(task, sector, waited_s, done=True)

    def lock(self, task: Task, lock: str, op: str) -> None:
        self.emit("lock", task, lock=lock, lock_id=f"{self.name}:{lock}", op=op)


@dataclass
class Sim:
    kernel: str
    now: int = 5 * S
    events: list[Event] = field(default_factory=list)
    arrays: dict[str, Arr] = field(default_factory=dict)
    _tids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.table = FlagTable.for_release(self.kernel)

    def tick(self) -> None:
        self.now += 20_000  # 20 us between consecutive events

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * S)

    def task(self, comm: str) -> Task:
        tid = self._tids.setdefault(comm, 1000 + 7 * len(self._tids))
        return Task(tid, comm)

    def mddev(self, name: str) -> str:
        return "p:" + hashlib.sha256(f"mddev:{name}".encode()).hexdigest()[:12]

    def array(self, name: str, level: int = 5, kind: str = "md", dm_name: str = "",
              ident: str = "") -> Arr:
        arr = Arr(self, name, level, kind, dm_name, ident=ident)
        self.arrays[name] = arr
        return arr

    def idle(self, arr: Arr, seconds: float, every_s: float = 1.0) -> None:
        """Time passes; the array's daemon keeps running md_check_recovery."""
        for _ in range(max(1, int(seconds / every_s))):
            self.sleep(every_s)
            arr.daemon_pass()

    def progress(self, arr: Arr, task: Task) -> None:
        """The sysfs poller's sample of sync_completed (mdtrace run polls it live)."""
        self.events.append(Event(ts=self.now, kind="progress", array=arr.name, tid=task.tid,
                                 pid=task.tid, comm=task.comm,
                                 args={"done": arr.curr_resync, "total": arr.resync_max,
                                       "action": "resync"}))
        self.tick()


@dataclass
class Scenario:
    """One synthetic run.  ``expected``: the finding codes the engine must raise, no more."""

    name: str
    kernel: str
    description: str
    expected: frozenset[str]
    build: Callable[[Sim], None]

    def events(self) -> list[Event]:
        """Canonicalised events (what a trace reader yields)."""
        sim = Sim(self.kernel)
        self.build(sim)
        for ev in sim.events:
            canonicalise(ev, sim.table)
        return sim.events

    def write_trace(self, path: str | Path) -> Path:
        """Write the scenario as a trace file (raw kernel flag words plus the flag table)."""
        sim = Sim(self.kernel)
        self.build(sim)
        header = TraceHeader(kernel=self.kernel, source="synthetic", hash_key_id="scenario",
                             flag_tables=sim.table, meta={"scenario": self.name})
        with TraceWriter(path, header) as w:
            for ev in sim.events:
                w.write(ev)
        return Path(path)
