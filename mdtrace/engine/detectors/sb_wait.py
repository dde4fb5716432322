"""F13: writers wait in md_write_start for a superblock update that does not come.

md_write_start() marks the array dirty (MD_SB_CHANGE_PENDING) and waits on ``sb_wait`` until
the md daemon's md_check_recovery -> md_update_sb() has written the superblock and cleared
the bit (6.1 also returns when the array is suspended).  md_check_recovery writes nothing
while the array is read-only or suspended, and nothing at all once its daemon is dead, so
every write then waits for good.  sysfs shows the bit as array_state ``write-pending``
(array_state_show); writing ``active`` clears it and wakes the writers (array_state_store).
"""

from __future__ import annotations

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.detectors.base import (
    Context,
    Verdict,
    blocked_with,
    daemon_dead,
    is_dm,
    long_blocked,
    readwrite_cmd,
    resume_cmd,
    task_details,
    task_list,
)
from mdtrace.engine.model import Finding, Severity

CODE = "F13"
CODES = (CODE,)


def wanted(arr: ArrayRec, config: EngineConfig) -> bool:
    return any(b.wait == "sb_wait" for b in arr.blocked.values())


def cause(arr: ArrayRec) -> tuple[str, str]:
    """(why md_update_sb does not run, reason key); ('', '') when not visible."""
    dead = daemon_dead(arr)
    if dead:
        return dead, "daemon_dead"
    if arr.ro:
        return ("the array is read-only: md_check_recovery does not write the superblock of a "
                "read-only array"), "read_only"
    if arr.dm_suspended or arr.suspended:
        return "the array is suspended: md_check_recovery returns early", "suspended"
    if arr.array_state == "write-pending":
        return ("array_state is write-pending: MD_SB_CHANGE_PENDING is set and the superblock "
                "write has not completed (a member that does not answer keeps it pending)",
                "write_pending")
    return "", ""


def check(ctx: Context) -> list[Verdict]:
    arr = ctx.arr
    key = f"F13:{arr.name}:{arr.generation}"
    writers = blocked_with(arr, "sb_wait")
    if not writers:
        return [Verdict(key, None)]
    why, reason = cause(arr)
    if not why and not long_blocked(writers, ctx.config):
        return []
    name = arr.dm_name or arr.name
    remedy = {
        "daemon_dead": "reboot: without the md daemon no superblock is ever written again; "
                       "save the kernel log first (`dmesg > md-oops.txt`).",
        "read_only": f"make the array writable: `{readwrite_cmd(arr)}`; the daemon then "
                     "writes the superblock and the writers continue.",
        "suspended": f"resume the array: `{resume_cmd(arr)}`.",
    }.get(reason, "")
    if not remedy:
        disks = f"`dmsetup status {name}`" if is_dm(arr) else f"`mdadm --detail /dev/{name}`"
        remedy = (f"check the member disks (`dmesg`, {disks}): a superblock write that "
                  "hangs keeps the writers waiting; "
                  + ("" if is_dm(arr) else f"`{resume_cmd(arr)}` clears "
                     "MD_SB_CHANGE_PENDING and wakes them (array_state_store 'active'); ")
                  + "if they stay blocked, reboot.")
    return [Verdict(key, Finding(
        code="F13", title=f"writes to {name} wait for a superblock update (md_write_start)",
        array=arr.name, start_ns=min(b.since_ns for b in writers),
        severity=Severity.CRITICAL,
        explanation=(f"{task_list(writers)}: each write waits in md_write_start on sb_wait "
                     "until the md daemon has written the superblock and cleared "
                     "MD_SB_CHANGE_PENDING; "
                     + (why if why else "the daemon has not done it and no cause is visible "
                        "from sysfs (the kernel's sb_flags were not read)")
                     + ". Every new write to the array queues behind them."),
        remedy=remedy, evidence=[b.event for b in writers],
        details={"tasks": task_details(writers), "reason": reason or "unknown",
                 "array_state": arr.array_state}))]
