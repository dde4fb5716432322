"""F10: a resync/recovery/reshape is running, nothing stops it, and its position does not move.

Evidence is observation, not silence: the position (curr_resync, reshape_position, or sysfs
sync_completed from the poller) must be *seen* unchanged for ``stall_s`` while md_do_sync runs,
RUNNING is set and no reason to stop holds (frozen, read-only, MD_RECOVERY_WAIT, suspended,
interrupted: those are F7's or the operator's business).  curr_resync 1/2 (YIELDED/DELAYED: waiting
for another array sharing a disk) is not a stall.
"""

from __future__ import annotations

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.detectors.base import Context, Verdict, is_dm, sync_action_cmd
from mdtrace.engine.iowait import blocked_reason
from mdtrace.engine.model import Finding, Lifecycle, Severity
from mdtrace.kernel.flags import Recovery

CODE = "F10"
CODES = (CODE,)


def wanted(arr: ArrayRec, config: EngineConfig) -> bool:
    """Worth a tick check: syncing with the position already unchanged for ``stall_s`` (else
    every verdict would only close an inactive finding or wait for more evidence)."""
    return arr.lifecycle is Lifecycle.SYNCING and \
        arr.prog_seen_ns - max(arr.prog_changed_ns, arr.lifecycle_since) >= config.stall_s * 1e9


_RUNNING, _DONE, _RESHAPE = int(Recovery.RUNNING), int(Recovery.DONE), int(Recovery.RESHAPE)


def check(ctx: Context) -> list[Verdict]:
    arr = ctx.arr
    key = f"F10:{arr.name}:{arr.generation}"
    running = (arr.lifecycle is Lifecycle.SYNCING and arr.sync_thread
               and arr.recovery & _RUNNING and not arr.recovery & _DONE)
    if not running or arr.prog_token is None or 0 < arr.curr_resync < 3:
        return [Verdict(key, None)]
    if blocked_reason(arr):
        # stopping it is someone's decision, not a stall; unblocking starts a new md_do_sync
        # pass, which restarts the clock
        return [Verdict(key, None)]
    still = arr.prog_seen_ns - max(arr.prog_changed_ns, arr.lifecycle_since)
    if still < ctx.config.stall_s * 1e9:
        # progress seen moving (or too little evidence yet): clear only on real movement
        return [Verdict(key, None)] if arr.prog_changed_ns > arr.lifecycle_since else []
    action = arr.sync_action or ("reshape" if arr.recovery & _RESHAPE else "sync")
    pos = arr.reshape_pos if arr.recovery & _RESHAPE and arr.reshape_pos is not None \
        else arr.curr_resync
    return [Verdict(key, Finding(
        code="F10", title=f"{action} stalled: no progress for {still / 1e9:.0f}s",
        array=arr.name, start_ns=max(arr.prog_changed_ns, arr.lifecycle_since),
        severity=Severity.WARNING,
        explanation=(
            f"{arr.name}'s sync thread is running md_do_sync ({action}) with RUNNING set and "
            f"nothing frozen, read-only or suspended, but its position stayed at {pos} "
            f"for {still / 1e9:.0f}s of observations. Usual causes: a member disk that stopped "
            "answering (IO stuck below md), speed_limit_max throttled to nothing, or the sync "
            "thread blocked on a lock or on IO that needs it to move (see F9)."),
        remedy=_remedy(arr),
        details={"position": pos, "still_s": round(still / 1e9, 1), "action": action})), ]


def _remedy(arr: ArrayRec) -> str:
    # dm-raid: no md sysfs directory, member health in the target status; its md threads
    # are named mdX_* (dm-raid's mddev has no md unit number)
    disks = f"`dmsetup status {arr.dm_name or '/dev/' + arr.name}`" if is_dm(arr) else \
        f"`cat /sys/block/{arr.name}/md/dev-*/state`"
    thread = "mdX" if is_dm(arr) else arr.name
    return (f"check member disks (`dmesg`, {disks}), `cat /proc/sys/dev/raid/speed_limit_min`"
            " and `_max`, the sync thread's kernel stack (`cat /proc/$(pgrep -f '"
            f"{thread}_(resync|reshape)')/stack`); `{sync_action_cmd(arr, 'idle')}` "
            "interrupts it.")
