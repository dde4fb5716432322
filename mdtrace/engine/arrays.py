"""Per-array registry entry: everything the engine tracks about one array generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mdtrace.engine.blocked import BlockedTask
from mdtrace.engine.kernel_log import ThreadDeath
from mdtrace.engine.model import Lifecycle
from mdtrace.events import ArrayState


@dataclass
class IoWait:
    """One request seen blocked by raid5_make_request (re-reported while it stays blocked)."""

    io_id: str
    first_ns: int
    last_ns: int
    wait_ns: int
    mode: str
    tid: int
    comm: str
    sector: int
    sectors: int
    rw: str
    # F7's finding for this IO once raised (engine/detectors/reshape_io.py): ticks re-assert
    # it without rebuilding it while it stays open
    f7: Any = None


@dataclass
class ArrayRec:
    name: str
    generation: int = 0
    mddev: str = ""
    kind: str = "md"
    dm_name: str = ""
    level: str = ""
    lifecycle: Lifecycle = Lifecycle.UNKNOWN
    lifecycle_since: int = 0
    history: list[tuple[int, Lifecycle]] = field(default_factory=list)
    recovery: int = 0
    flags: int = 0
    ro: int = 0
    suspended: int = 0
    dm_suspended: bool = False
    sync_thread: bool = False
    reshape_pos: int | None = None
    curr_resync: int = 0
    resync_max: int = 0
    sync_action: str = ""
    last_ns: int = 0
    # DONE observed (with the sync thread still registered) since this time, not yet reaped
    done_since: int | None = None
    # md_do_sync returned without DONE at this time (F3 candidate)
    exit_without_done: int | None = None
    exit_recovery: int = 0          # the recovery flags it left with (F3's details)
    # F3: the last array_stop under this *name* (any generation: a dm table reload stops the
    # old mddev of the same dm device)
    stop_ns: int | None = None
    io_waits: dict[str, IoWait] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    # tasks: the sync thread while md_do_sync runs, the md daemon (last md_check_recovery)
    sync_tid: int | None = None
    daemon_tid: int | None = None
    # tasks suspending the array right now (mddev_suspend / dm_suspend entered, not returned)
    suspenders: dict[int, str] = field(default_factory=dict)
    # F10: progress token (curr_resync, reshape position, sysfs sync_completed) and when it
    # last changed / was last observed
    prog_token: tuple[int, int, int] | None = None
    prog_changed_ns: int = 0
    prog_seen_ns: int = 0
    # F5: a reshape's md_do_sync returned with the reshape unfinished (interrupted) at this time
    reshape_interrupted_ns: int | None = None
    # F11: an md thread of this array killed by a kernel oops (never restarted)
    thread_died: ThreadDeath | None = None
    # the state words of the last event that carried them (fast path for repeats)
    last_state: ArrayState | None = None
    # sync speed (sectors/s) over >= 1 s windows, and its reference sample (ts, position)
    speed: float = 0.0
    speed_ref: tuple[int, int] | None = None
    # from the sysfs poller (node_exporter parity)
    raid_disks: int | None = None
    degraded: int | None = None
    # from a snapshot (mdtrace diagnose): md array_state, suspend_lo/hi, the md threads alive
    # in /proc (name -> tid; None: not observed) and the tasks seen blocked on the array
    array_state: str = ""
    suspend_range: tuple[int, int] | None = None
    threads: dict[str, int] | None = None
    # of those, the ones asleep in md_thread's wait for work (their stack read)
    idle_threads: frozenset[str] = frozenset()
    blocked: dict[int, BlockedTask] = field(default_factory=dict)
