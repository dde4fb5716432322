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
from pathlib import Path

from mdtrace.events import ArrayState, Event, canonicalise, reshape_pos_from_kernel
from mdtrace.kernel.flags import FlagTable, Recovery
from mdtrace.pointers import PointerHasher

# struct mdt_event: 11 x u64, 4 x u32, 3 x s32, 4 x u8, comm[16], name[32], dm_name[16], str[32]
RAW = struct.Struct("<11Q4I3i4B16s32s16s32s")
RAW_SIZE = RAW.size  # 216

KIND_NAMES: dict[int, str] = {
    1: "check_recovery_enter", 2: "check_recovery_exit", 3: "do_sync_enter",
    4: "do_sync_exit", 5: "reap", 6: "thread_register", 7: "thread_unregister",
    8: "start_reshape", 9: "io_wait", 10: "io_stats", 11: "dm_suspend_enter",
    12: "dm_suspend_exit", 13: "dm_resume_enter", 14: "dm_resume_exit", 15: "raid_target",
    16: "mddev_suspend", 17: "mddev_resume", 18: "lock", 19: "array_create", 20: "array_stop",
}
HOOKS = {1: "presuspend", 2: "presuspend_undo", 3: "postsuspend", 4: "preresume",
         5: "resume", 6: "message"}
INT_HOOKS = frozenset({4, 6})  # raid_preresume, raid_message return int
LOCK_CLASSES = {1: "reconfig_mutex", 2: "suspend_mutex", 3: "dm_suspend_lock", 4: "open_mutex"}
LOCK_OPS = {1: "acquire", 2: "acquired", 3: "release", 4: "contend", 5: "trylock_fail"}
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
        args: dict[str, object] = {}
        rec = state.rec if state is not None else 0
        if kind in (3, 4):
            args = {"thread": ev.comm, "action": sync_action(rec)}
        elif kind == 5:
            args = {"mutex_owned": bool(a0), "mutex_locked": bool(a1), "caller": self._sym(a2)}
        elif kind in (6, 7):
            run = self._sym(a0)
            args = {"name": _cstr(sbuf), "caller": self._sym(a1),
                    "sync": run.split(".")[0] == "md_do_sync", "run": run}
        elif kind == 8:
            args = {"caller": self._sym(a1), "phase": "exit" if a2 else "enter"}
            if a2:
                args["rc"] = _s32(a0)
        elif kind == 9:
            prog, safe = struct.unpack_from("<QQ", sbuf, 0)
            opf = a1 >> 32
            args = {"sector": a0, "sectors": a1 & 0xFFFFFFFF,
                    "rw": "W" if opf & 1 else "R", "wait_ns": a2, "done": bool(a3 & 1),
                    "mode": "requeue" if a3 >> 1 & 1 else "sleep", "retries": a3 >> 8,
                    "io_id": f"{ev.mddev}/{a0}"}
            if prog or safe:
                args["reshape_progress"] = None if prog >= 1 << 63 else prog
                args["reshape_safe"] = None if safe >= 1 << 63 else safe
        elif kind == 10:
            args = {"requests": a0, "slow": a1, "blocked": a2, "max_wait_ns": a3}
        elif kind in (11, 12, 13, 14):
            args = {"dm_name": dm_name, "dm_dev": dm_dev}
            if kind == 11:
                args["flags"] = a0
            if kind in (12, 14):
                args["rc"] = _s32(a1)
        elif kind == 15:
            args = {"hook": HOOKS.get(a0, str(a0)), "phase": "exit" if a1 else "enter"}
            if a1 and a0 in INT_HOOKS:  # the other hooks return void: no rc
                args["rc"] = _s32(a2)
            if a0 == 6 and not a1:
                args["argv"] = _cstr(sbuf)
        elif kind in (16, 17):
            args = {"phase": "exit" if a0 else "enter"}
            if kind == 16 and a0:
                args["rc"] = _s32(a1)
        elif kind == 18:
            args = {"lock": LOCK_CLASSES.get(a2, str(a2)), "lock_id": self.hasher(a0),
                    "op": LOCK_OPS.get(a1, str(a1))}
        elif kind == 19:
            args = {"level": LEVELS.get(level, str(level)),
                    "kind": "dm-raid" if is_dm else "md"}
        if args:
            ev.args = args
        return ev
