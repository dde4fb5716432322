"""F12: a task waits for the array's sync thread to stop, and it does not.

Stopping a sync thread (writing idle or frozen to sync_action, mdadm --stop, a dm-raid
suspend or table reload) sets MD_RECOVERY_INTR and waits: 6.1-6.6 in md_reap_sync_thread ->
md_unregister_thread -> kthread_stop, holding reconfig_mutex (action_store, __md_stop_writes);
6.7+ in stop_sync_thread (reached from idle/frozen_sync_thread, md_frozen_sync_thread for
dm-raid's presuspend) until MD_RECOVERY_RUNNING is cleared by the daemon's reap.  The stop
hangs when md_do_sync never reaches its next INTR check (blocked on IO, on a lock the stopper
holds, on the reshape) or when no daemon runs to reap it.  Evidence: a ``task_blocked`` whose
innermost md frame is one of those (mdtrace.engine.blocked).
"""

from __future__ import annotations

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.blocked import BlockedTask
from mdtrace.engine.detectors.base import (
    Context,
    Verdict,
    blocked_with,
    daemon_dead,
    display_name,
    is_dm,
    long_blocked,
    sync_action_cmd,
    sync_thread_of,
    task_details,
    task_list,
)
from mdtrace.engine.model import Finding, Severity
from mdtrace.kernel.flags import parse_release

CODE = "F12"
CODES = (CODE,)


def wanted(arr: ArrayRec, config: EngineConfig) -> bool:
    return any(b.wait == "sync_stop" for b in arr.blocked.values())


def returned_unreaped(arr: ArrayRec, waiters: list[BlockedTask]) -> str:
    """The sync thread's name when it idles in md_thread while a 6.7+ stop waits in
    stop_sync_thread: md_do_sync has returned, yet the daemon does not reap it.

    Since f52f5c71f3d4 (6.7) the stop waits for MD_RECOVERY_RUNNING to clear, and the
    daemon's md_check_recovery clears it only in md_reap_sync_thread, which it reaches only
    with MD_RECOVERY_DONE set ("resync/recovery still happening" otherwise).  md_do_sync
    returning without DONE (82ec0ae59d02 "md: make sure md_do_sync() will set
    MD_RECOVERY_DONE", 6.8, fixed its early returns) leaves the stop waiting for good: the
    kernel zoo's p3 (docs/kernels.md).  Before 6.7 the stop's kthread_stop ends an idle
    md_thread, so this state cannot hang there."""
    st = sync_thread_of(arr)
    if st is None or st[0] not in arr.idle_threads or daemon_dead(arr):
        return ""
    if not any(b.wait_frame == "stop_sync_thread" for b in waiters):
        return ""
    return st[0]


def _sync_state(arr: ArrayRec, unreaped: str) -> tuple[str, bool]:
    """What the sync thread is doing, and whether that alone proves the stop hangs
    (``unreaped``: returned_unreaped's answer)."""
    dead = daemon_dead(arr)
    st = sync_thread_of(arr)
    if st is not None and unreaped:
        return (f"{st[0]} (pid {st[1]}) is alive but idle in md_thread: md_do_sync has "
                "returned and the stop waits for the md daemon to reap it, which the daemon "
                "does only once MD_RECOVERY_DONE is set; md_do_sync returned without setting "
                "it", True)
    if st is None:
        if arr.threads is None:
            return "the sync thread's state is unknown", bool(dead)
        return ("no sync thread is alive any more: md_do_sync returned and the stop waits for "
                "the md daemon to reap it (clear MD_RECOVERY_RUNNING)"
                + (f", but {dead}" if dead else ""), bool(dead))
    name, tid = st
    b = arr.blocked.get(tid)
    if b is None:
        return f"{name} (pid {tid}) is alive and not blocked in md code", False
    if b.wait:
        return f"{name} (pid {tid}) is itself blocked: {b.what} ({b.stack(3)})", True
    return f"{name} (pid {tid}) is in state {b.state} in {b.stack(3)}", b.state == "D"


def _suspended_members(arr: ArrayRec) -> list[str]:
    """The array's member disks that are suspended dm devices, as the snapshot saw them
    (``suspended_members`` on its task_blocked events: sources/snapshot/arrays.py)."""
    out: list[str] = []
    for b in arr.blocked.values():
        for m in b.event.args.get("suspended_members") or ():
            if str(m) not in out:
                out.append(str(m))
    return out


def check(ctx: Context) -> list[Verdict]:
    arr = ctx.arr
    key = f"F12:{arr.name}:{arr.generation}"
    waiters = blocked_with(arr, "sync_stop")
    if not waiters:
        return [Verdict(key, None)]
    unreaped = returned_unreaped(arr, waiters)
    state, proven = _sync_state(arr, unreaped)
    if not proven and not long_blocked(waiters, ctx.config):
        return []
    # the LV as lvm2 names it (VG/LV); commands take the dm name
    name, dev = display_name(arr), arr.dm_name or arr.name
    # f52f5c71f3d4 "md: fix stopping sync thread" went into 6.7
    old = parse_release(ctx.kernel) < (6, 7) if ctx.kernel else False
    pre_68 = parse_release(ctx.kernel) < (6, 8) if ctx.kernel else True
    dead = daemon_dead(arr)
    members = _suspended_members(arr)
    if members and not dead:
        # dm queues IO sent to a suspended device until resume (dm_submit_bio -> queue_io
        # while DMF_BLOCK_IO_FOR_SUSPEND): md_do_sync waits for recovery_active to drain
        # (its wait_event on recovery_wait after the loop), so it never returns
        state += (f"; member {', '.join(members)} is a suspended dm device: the sync IO "
                  "queued on it never completes, so md_do_sync cannot return")
        proven = True
    if dead:
        remedy = (f"reboot: {dead}, so nothing reaps the sync thread and the stop never "
                  "returns; save the kernel log first (`dmesg > md-oops.txt`).")
    elif unreaped:
        remedy = (f"reboot: {unreaped} has already returned from md_do_sync without setting "
                  "MD_RECOVERY_DONE, so nothing will clear MD_RECOVERY_RUNNING and the stop "
                  "never returns; no command unblocks it (another sync_action write, suspend "
                  "or stop waits the same way). Save `dmesg` and the report first; "
                  + ("a kernel with 82ec0ae59d02 (6.8) sets DONE on every md_do_sync exit."
                     if pre_68 else "this kernel should carry 82ec0ae59d02 (6.8), which sets "
                     "DONE on every md_do_sync exit: check that the md modules loaded are the "
                     "kernel's own (`modinfo -F filename md_mod`), else report the trace to "
                     "linux-raid@vger.kernel.org."))
    elif members:
        remedy = ("resume the suspended member: "
                  + "; ".join(f"`dmsetup resume {m}`" for m in members)
                  + "; its queued IO completes, md_do_sync returns and the stop finishes "
                  "(check first that whoever suspended it, e.g. an lvm or multipath command, "
                  "is not still at work: `ps -eo pid,stat,args | grep -E 'lvm|dmsetup'`)")
    else:
        disks = f"`dmsetup status {dev}`" if is_dm(arr) else f"`mdadm --detail /dev/{dev}`"
        remedy = (f"see what the sync thread waits for (its stack is under 'blocked tasks'): "
                  f"a member disk that stopped answering shows in `dmesg` and {disks}; "
                  "failing that member lets md_do_sync reach its stop check. Do not write "
                  f"sync_action again (`{sync_action_cmd(arr, 'idle')}` would block the same "
                  "way) or stop the array; if nothing moves, only a reboot ends the stop.")
    return [Verdict(key, Finding(
        code="F12", title=f"stopping {name}'s sync thread hangs ({waiters[0].wait_frame})",
        array=arr.name, start_ns=min(b.since_ns for b in waiters), severity=Severity.CRITICAL,
        explanation=(f"{task_list(waiters)} waits for {name}'s sync thread to stop; "
                     f"{state}. Until md_do_sync returns and the daemon reaps it, the "
                     "command that asked for the stop (sync_action write, mdadm --stop, "
                     "lvchange/dmsetup suspend) does not return, and on 6.1-6.6 it holds "
                     "reconfig_mutex meanwhile, so other mdadm/sysfs commands on the array "
                     "block too."),
        fix=("f52f5c71f3d4 md: fix stopping sync thread (6.7) reworked how sync threads are "
             "stopped (older kernels stop them under reconfig_mutex)" if old else
             "82ec0ae59d02 md: make sure md_do_sync() will set MD_RECOVERY_DONE (6.8)"
             if unreaped and pre_68 else ""),
        remedy=remedy,
        evidence=[b.event for b in waiters],
        details={"tasks": task_details(waiters), "sync_thread": state,
                 "suspended_members": members, "name": name}))]
