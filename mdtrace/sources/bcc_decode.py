"""Raw ``struct mdt_event`` (mdtrace/bpf/common.h) -> :class:`mdtrace.events.Event`.

Pure Python, no bcc: the live source hands it the bytes of each ring-buffer record.  Kernel
pointers (``mddev``, lock addresses) go through :class:`PointerHasher`; code addresses
(callers, thread functions) become symbol names via the ``ksym`` callback; no raw pointer ends
up in an Event.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path

from mdtrace.events import ArrayState, Event, canonicalise, reshape_pos_from_kernel
from mdtrace.kernel.flags import FlagTable, Recovery
from mdtrace.pointers import PointerHasher

# struct mdt_event: 11 x u64, 4 x u32, 3 x s32, 4 x u8, comm[16], name[32], dm_name[16], str[32]
RAW = struct.Struct("<11Q4I3i4B16s32s16s32s")
RAW_SIZE = RAW.size  # 216



class Ev(IntEnum):
    """The ``EV_*`` kinds of mdtrace/bpf/common.h, by the same names (tests/test_contracts.py
    parses the header and checks both ways).  The event kind is the name in lower case."""

    CHECK_RECOVERY_ENTER = 1
    CHECK_RECOVERY_EXIT = 2
    DO_SYNC_ENTER = 3
    DO_SYNC_EXIT = 4
    REAP = 5
    THREAD_REGISTER = 6
    THREAD_UNREGISTER = 7
    START_RESHAPE = 8
    IO_WAIT = 9
    IO_STATS = 10
    DM_SUSPEND_ENTER = 11
    DM_SUSPEND_EXIT = 12
    DM_RESUME_ENTER = 13
    DM_RESUME_EXIT = 14
    RAID_TARGET = 15
    MDDEV_SUSPEND = 16
    MDDEV_RESUME = 17
    LOCK = 18
    ARRAY_CREATE = 19
    ARRAY_STOP = 20
    TEST = 99          # the bcc smoke test's tracepoint program: never a trace event


class Hook(IntEnum):
    """``HOOK_*`` of mdtrace/bpf/dm_suspend.c: a0 of EV_RAID_TARGET (the raid target hook)."""

    PRESUSPEND = 1
    PRESUSPEND_UNDO = 2
    POSTSUSPEND = 3
    PRERESUME = 4
    RESUME = 5
    MESSAGE = 6


class Lk(IntEnum):
    """``LK_*`` of common.h: a2 of EV_LOCK, the lock class."""

    RECONFIG = 1
    SUSPEND = 2
    DM_SUSPEND = 3
    OPEN = 4


class Op(IntEnum):
    """``OP_*`` of common.h: a1 of EV_LOCK, what happened to the lock."""

    ACQUIRE = 1
    ACQUIRED = 2
    RELEASE = 3
    CONTEND = 4
    TRYFAIL = 5


KIND_NAMES: dict[int, str] = {int(k): k.name.lower() for k in Ev if k is not Ev.TEST}
# kinds that carry no arguments (md_check_recovery's 60-75 calls a second per syncing array)
_NO_ARGS = frozenset({Ev.CHECK_RECOVERY_ENTER, Ev.CHECK_RECOVERY_EXIT, Ev.ARRAY_STOP})
HOOKS: dict[int, str] = {int(h): h.name.lower() for h in Hook}
INT_HOOKS = frozenset({Hook.PRERESUME, Hook.MESSAGE})  # raid_preresume, raid_message: int
LOCK_CLASSES: dict[int, str] = {Lk.RECONFIG: "reconfig_mutex", Lk.SUSPEND: "suspend_mutex",
                                Lk.DM_SUSPEND: "dm_suspend_lock", Lk.OPEN: "open_mutex"}
LOCK_OPS: dict[int, str] = {Op.ACQUIRE: "acquire", Op.ACQUIRED: "acquired",
                            Op.RELEASE: "release", Op.CONTEND: "contend",
                            Op.TRYFAIL: "trylock_fail"}
LEVELS = {-4: "multipath", -1: "linear", 0: "raid0", 1: "raid1", 4: "raid4", 5: "raid5",
          6: "raid6", 10: "raid10"}


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def sync_action(canon: int) -> str:
    """What md_do_sync is doing, from canonical recovery flags (md.c's own decision order)."""
    if canon & Recovery.RESHAPE:
        return "reshape"
    if canon & Recovery.SYNC:
        if canon & Recovery.CHECK:
            return "check"
        if canon & Recovery.REQUESTED:
            return "repair"
        return "resync"
    if canon & Recovery.RECOVER:
        return "recover"
    return "idle"


def dm_name_from_sysfs(disk: str, root: Path = Path("/sys/block")) -> str:
    """The dm (LVM) name of ``dm-N`` (``/sys/block/dm-N/dm/name``), '' when unknown."""
    try:
        return (root / disk / "dm" / "name").read_text().strip()
    except OSError:
        return ""


class RawDecoder:
    """Stateless-ish decoder; caches dm names per disk."""

    def __init__(self, table: FlagTable, hasher: PointerHasher,
                 ksym: Callable[[int], str] = lambda a: "",
                 dm_names: Callable[[str], str] = dm_name_from_sysfs) -> None:
        self.table = table
        self.hasher = hasher
        self.ksym = ksym
        self._dm_lookup = dm_names
        self._dm_cache: dict[str, tuple[float, str]] = {}
        self.unknown = 0

    def _dm_name(self, disk: str) -> str:
        """dm names change (LVM renames, dm-N reuse): cache for one second only."""
        now = time.monotonic()
        hit = self._dm_cache.get(disk)
        if hit is not None and now - hit[0] < 1.0:
            return hit[1]
        got = self._dm_lookup(disk)
        self._dm_cache[disk] = (now, got)
        return got

    def _sym(self, addr: int) -> str:
        if not addr:
            return ""
        name = self.ksym(addr)
        # never fall back to the number: a code address is a KASLR secret too
        return name or "?"

    def decode(self, data: bytes) -> Event | None:
        (ts, mddev, recovery, flags, reshape_pos, curr_resync, resync_max, a0, a1, a2, a3,
         kind, cpu, pid, tid, ro, suspended, level, sync_thread, has_state, is_dm, _pad,
         comm, name, dm_dev, sbuf) = RAW.unpack_from(data, 0)
        kname = KIND_NAMES.get(kind)
        if kname is None:
            self.unknown += 1
            return None
        state = None
        if has_state:
            state = ArrayState(recovery=recovery, flags=flags, ro=ro, suspended=suspended,
                               sync_thread=bool(sync_thread),
                               reshape_pos=reshape_pos_from_kernel(reshape_pos),
                               curr_resync=curr_resync, resync_max=resync_max, level=level)
        array = _cstr(name)
        dm_dev = _cstr(dm_dev)
        dm_name = self._dm_name(array) if is_dm and array else ""
        ev = Event(ts=ts, kind=kname, array=array, cpu=cpu, pid=pid, tid=tid,
                   comm=_cstr(comm), dm_name=dm_name, mddev=self.hasher(mddev),
                   state=state)
        canonicalise(ev, self.table)
        if kind in _NO_ARGS:        # most of any trace: done before the per-kind chain
            if a0 > 1 and kind != Ev.ARRAY_STOP:
                # change-only md_check_recovery: a0 = the calls this event stands for
                # (0 and 1: just itself; events.py ``calls``)
                ev.args = {"calls": a0}
            return ev
        args: dict[str, object] = {}
        rec = state.rec if state is not None else 0
        if kind == Ev.DO_SYNC_ENTER or kind == Ev.DO_SYNC_EXIT:
            args = {"thread": ev.comm, "action": sync_action(rec)}
        elif kind == Ev.REAP:
            args = {"mutex_owned": bool(a0), "mutex_locked": bool(a1), "caller": self._sym(a2)}
        elif kind == Ev.THREAD_REGISTER or kind == Ev.THREAD_UNREGISTER:
            run = self._sym(a0)
            args = {"name": _cstr(sbuf), "caller": self._sym(a1),
                    "sync": run.split(".")[0] == "md_do_sync", "run": run}
        elif kind == Ev.START_RESHAPE:
            args = {"caller": self._sym(a1), "phase": "exit" if a2 else "enter"}
            if a2:
                args["rc"] = _s32(a0)
        elif kind == Ev.IO_WAIT:
            prog, safe = struct.unpack_from("<QQ", sbuf, 0)
            opf = a1 >> 32
            args = {"sector": a0, "sectors": a1 & 0xFFFFFFFF,
                    "rw": "W" if opf & 1 else "R", "wait_ns": a2, "done": bool(a3 & 1),
                    "mode": "requeue" if a3 >> 1 & 1 else "sleep", "retries": a3 >> 8,
                    "io_id": f"{ev.mddev}/{a0}"}
            if prog or safe:
                args["reshape_progress"] = None if prog >= 1 << 63 else prog
                args["reshape_safe"] = None if safe >= 1 << 63 else safe
        elif kind == Ev.IO_STATS:
            args = {"requests": a0, "slow": a1, "blocked": a2, "max_wait_ns": a3}
        elif Ev.DM_SUSPEND_ENTER <= kind <= Ev.DM_RESUME_EXIT:
            args = {"dm_name": dm_name, "dm_dev": dm_dev}
            if kind == Ev.DM_SUSPEND_ENTER:
                args["flags"] = a0
            if kind == Ev.DM_SUSPEND_EXIT or kind == Ev.DM_RESUME_EXIT:
                args["rc"] = _s32(a1)
        elif kind == Ev.RAID_TARGET:
            args = {"hook": HOOKS.get(a0, str(a0)), "phase": "exit" if a1 else "enter"}
            if a1 and a0 in INT_HOOKS:  # the other hooks return void: no rc
                args["rc"] = _s32(a2)
            if a0 == Hook.MESSAGE and not a1:
                args["argv"] = _cstr(sbuf)
        elif kind == Ev.MDDEV_SUSPEND or kind == Ev.MDDEV_RESUME:
            args = {"phase": "exit" if a0 else "enter"}
            if kind == Ev.MDDEV_SUSPEND and a0:
                args["rc"] = _s32(a1)
        elif kind == Ev.LOCK:
            args = {"lock": LOCK_CLASSES.get(a2, str(a2)), "lock_id": self.hasher(a0),
                    "op": LOCK_OPS.get(a1, str(a1))}
        elif kind == Ev.ARRAY_CREATE:
            args = {"level": LEVELS.get(level, str(level)),
                    "kind": "dm-raid" if is_dm else "md"}
        if args:
            ev.args = args
        return ev
