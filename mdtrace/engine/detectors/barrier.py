"""F14: IO waits at a raid1/raid10 barrier that is not lowered.

raid1/raid10 serialise resync against normal IO with a barrier: the resync thread's
raise_barrier() waits for in-flight normal IO to drain, normal IO waits in wait_barrier()
(_wait_barrier, wait_read_barrier) while a barrier is raised, and freeze_array() (raid1d /
raid10d error handling, quiesce for a suspend or level change) waits until every in-flight
request is queued back.  One request that never returns from a member disk therefore holds
all of them.  Evidence: tasks whose innermost md frame is one of those functions; the holder
is the task in raise_barrier / freeze_array when its stack is seen.
"""

from __future__ import annotations

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.blocked import BARRIER_HOLDERS
from mdtrace.engine.detectors.base import (
    Context,
    Verdict,
    blocked_with,
    is_dm,
    long_blocked,
    sync_action_cmd,
    task_details,
    task_list,
)
from mdtrace.engine.model import Finding, Severity

CODE = "F14"
CODES = (CODE,)


def wanted(arr: ArrayRec, config: EngineConfig) -> bool:
    return any(b.wait == "barrier" for b in arr.blocked.values())


def check(ctx: Context) -> list[Verdict]:
    arr = ctx.arr
    key = f"F14:{arr.name}:{arr.generation}"
    tasks = blocked_with(arr, "barrier")
    if not tasks:
        return [Verdict(key, None)]
    holders = [b for b in tasks if b.wait_frame in BARRIER_HOLDERS]
    waiters = [b for b in tasks if b.wait_frame not in BARRIER_HOLDERS]
    if not long_blocked(tasks, ctx.config) and not (holders and waiters):
        return []
    name = arr.dm_name or arr.name
    parts = []
    resync = [b for b in holders if b.wait_frame == "raise_barrier"]
    frozen = [b for b in holders if b.wait_frame == "freeze_array"]
    if resync:
        parts.append(f"{task_list(resync)} raises the resync barrier and waits for in-flight "
                     "normal IO to finish")
    if frozen:
        parts.append(f"{task_list(frozen)} freezes the array (error handling or a suspend) "
                     "and waits for every in-flight request to come back")
    if waiters:
        parts.append(f"{task_list(waiters)} wait{'s' if len(waiters) == 1 else ''} for the "
                     "barrier to drop")
    if not holders:
        parts.append("the holder is not visible in any stack (a resync window or a request "
                     "still in flight below md)")
    disks = f"`dmsetup status {name}`" if is_dm(arr) else f"`mdadm --detail /dev/{name}`"
    remedy = (f"find the request that does not come back: `dmesg` for IO errors or timeouts "
              f"of a member disk, {disks}; a member that hangs is the cause (fail or "
              "remove it so its IO errors out)")
    if resync:
        remedy += (f"; `{sync_action_cmd(arr, 'frozen')}` stops the resync that holds the "
                   "barrier (if that write blocks too, see F12)")
    remedy += "; if nothing moves, reboot."
    level = arr.level or "raid1/raid10"
    return [Verdict(key, Finding(
        code="F14", title=f"IO on {name} stuck at the {level} barrier",
        array=arr.name, start_ns=min(b.since_ns for b in tasks), severity=Severity.CRITICAL,
        explanation=("; ".join(parts) + ". The barrier only drops when every request "
                     "counted in nr_pending returns, so one stuck request stops all IO and "
                     "the resync."),
        remedy=remedy, evidence=[b.event for b in tasks],
        details={"tasks": task_details(tasks),
                 "holders": [b.tid for b in holders]}))]
