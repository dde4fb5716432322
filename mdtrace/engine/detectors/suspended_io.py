"""F15: IO parked on a suspended array, and who holds it suspended.

md: md_handle_request() sleeps on sb_wait while is_suspended() -- mddev->suspended > 0
(mddev_suspend: a dm-raid postsuspend, a level/layout change, a bitmap or serial-pool switch)
or a write inside suspend_lo..suspend_hi (set by ``mdadm --grow`` with a backup file while it
copies the critical section; left behind when that mdadm died).  dm: a suspended device
(/sys/block/dm-N/dm/suspended) queues new IO until ``resume``, and dm_suspend itself waits in
dm_wait_for_completion for in-flight IO to drain.  The holder is the task inside dm_suspend /
mddev_suspend when its stack shows it; a drain that waits for IO blocked on the reshape is
F7/F9's, not this.
"""

from __future__ import annotations

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.detectors.base import (
    Context,
    Verdict,
    blocked_with,
    is_dm,
    long_blocked,
    resume_cmd,
    task_details,
    task_list,
)
from mdtrace.engine.model import Finding, Severity

CODE = "F15"
CODES = (CODE,)


def wanted(arr: ArrayRec, config: EngineConfig) -> bool:
    return any(b.wait in ("suspended_io", "io_drain") or (arr.dm_suspended and b.state == "D")
               for b in arr.blocked.values())


def _range(arr: ArrayRec) -> tuple[int, int] | None:
    r = arr.suspend_range
    return r if r is not None and r[0] < r[1] else None


def check(ctx: Context) -> list[Verdict]:
    arr = ctx.arr
    key = f"F15:{arr.name}:{arr.generation}"
    name = arr.dm_name or arr.name
    parked = blocked_with(arr, "suspended_io")
    if arr.dm_suspended:
        parked += [b for b in arr.blocked.values()
                   if b.state == "D" and b.wait in ("", "suspended_io") and b not in parked
                   and not b.suspending]
    drains = [] if arr.io_waits else blocked_with(arr, "io_drain")
    if drains and not parked and not long_blocked(drains, ctx.config):
        drains = []
    if not parked and not drains:
        return [Verdict(key, None)]
    holders = sorted((b for b in arr.blocked.values() if b.suspending and b not in parked),
                     key=lambda b: b.tid)
    rng = _range(arr)
    why: list[str] = []
    if parked:
        how = ("the dm device is suspended (dm/suspended = 1): dm queues its IO until resume"
               if arr.dm_suspended else
               f"writes inside suspend_lo..suspend_hi = {rng[0]}..{rng[1]} are held"
               if rng else "md_handle_request holds IO while the array is suspended")
        why.append(f"{task_list(parked)}: IO parked on {name}; {how}")
    if drains:
        why.append(f"{task_list(drains)} suspends {name} and waits for in-flight IO that does "
                   "not complete (no IO of the array is seen blocked in md: it is stuck below "
                   "md, on a member disk, or in a layer above)")
    if holders:
        why.append(f"held suspended by {task_list(holders)}")
    elif rng:
        why.append("no task is inside a suspend: the range was set through sysfs (mdadm "
                   "--grow's critical section) and not cleared")
    elif arr.dm_suspended:
        why.append("no task is inside dm_suspend: the device was left suspended (a "
                   "`dmsetup suspend` without resume, or an lvm command that died)")
    else:
        why.append("no task visible holds the suspend (mddev->suspended was not read)")
    if is_dm(arr) or arr.dm_suspended:
        remedy = (f"resume it: `{resume_cmd(arr)}`" if not holders else
                  f"the suspend ends when {holders[0].comm} (pid {holders[0].tid}) returns; "
                  f"dm_suspend waits interruptibly, so killing that command cancels it; "
                  f"then `{resume_cmd(arr)}` if the device stays suspended")
    elif rng and not holders:
        remedy = ("if no `mdadm --grow` runs any more (`pgrep -a mdadm`), clear the range: "
                  f"`echo 0 > /sys/block/{arr.name}/md/suspend_hi`")
    elif holders:
        remedy = (f"the suspend ends when {holders[0].comm} (pid {holders[0].tid}) returns: "
                  "see what it waits for under 'blocked tasks'; if it never returns, reboot")
    else:
        remedy = ("check `dmesg` for the operation that suspended the array; if nothing moves, "
                  "reboot")
    if drains and not parked:
        remedy = ("find the request that does not complete (`dmesg`: member disk errors or "
                  "timeouts); " + remedy)
    return [Verdict(key, Finding(
        code="F15", title=f"IO parked on suspended {name}",
        array=arr.name, start_ns=min(b.since_ns for b in parked + drains),
        severity=Severity.CRITICAL, explanation="; ".join(why) + ".",
        remedy=remedy + ".", evidence=[b.event for b in parked + drains],
        details={"tasks": task_details(parked + drains),
                 "holders": [b.tid for b in holders],
                 "suspend_range": list(rng) if rng else None,
                 "dm_suspended": arr.dm_suspended}))]
