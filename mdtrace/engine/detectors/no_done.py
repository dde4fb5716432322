"""F3: md_do_sync returned without setting MD_RECOVERY_DONE on a live array; RUNNING stays,
nobody reaps (fixed by 82ec0ae59d02 "md: make sure md_do_sync() will set MD_RECOVERY_DONE",
6.8).

Before 6.8, md_do_sync returns early without DONE when MD_RECOVERY_WAIT is set or the array is
read-only ("just incase thread restarts..."): the thread stays registered and runs again when
woken (6.1 mddev_resume: md_wakeup_thread(sync_thread) "possibly kick off a reshape").  That
exit is harmless when the array is being stopped or reloaded: md_stop / __md_stop_writes /
mddev_detach and dm-raid's raid_dtr (md_stop) take the thread with md_unregister_thread ->
kthread_stop and md_reap_sync_thread, which need no DONE.  A real 6.1 lvm2 raid5 reshape
(tests/data/golden/6.1.0-56-amd64/lvm_raid5_reshape) shows it: the replaced table's
array_stop, 3.5 ms later the new table's reshape thread leaves md_do_sync (WAIT set), and the
table is reloaded again seconds later.  So the exit is not F3 when an array_stop of the same
array name (any generation: a dm table swap stops the old mddev of the same dm device) lies
within :data:`STOP_WINDOW_NS` of it, and it is held while the dm-raid array is suspended
(between raid_ctr and raid_resume, or suspended to be stopped).  Later stop evidence clears
the candidate by itself: a stop ends the generation (no tick runs on it), a sync
thread_unregister or reap clears it, and md_unregister_thread NULLs mddev->sync_thread before
kthread_stop, so an exit that answers an unregister carries sync_thread=0.  F3 waits at least
the window, so whether an exit is a stop's does not depend on ``done_grace_s``.
"""

from __future__ import annotations

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.detectors.base import Context, Verdict, fix_missing, is_dm, sync_action_cmd
from mdtrace.engine.model import Finding, Severity

CODE = "F3"
CODES = (CODE,)

# dm's table swap: the old table's raid_dtr runs right after the new one resumes (3.5 ms and
# 8.5 ms measured on 6.1); a stop this close to the exit owns it, whatever done_grace_s is.
STOP_WINDOW_NS = 1_000_000_000


def wanted(arr: ArrayRec, config: EngineConfig) -> bool:
    """Worth a tick check (else every verdict would only close an inactive finding)."""
    return arr.exit_without_done is not None


def stopping(arr: ArrayRec, since: int) -> bool:
    """The exit at ``since`` belongs to a stop or reload of the array's name."""
    return arr.stop_ns is not None and abs(since - arr.stop_ns) <= STOP_WINDOW_NS


def check(ctx: Context) -> list[Verdict]:
    arr = ctx.arr
    key = f"F3:{arr.name}:{arr.generation}"
    since = arr.exit_without_done
    if since is None or stopping(arr, since):
        return [Verdict(key, None)]
    if is_dm(arr) and (arr.suspended or arr.dm_suspended):
        return []   # raid_resume wakes the thread again, raid_dtr unregisters it
    # wait out the stop window too, so a stop just after the exit is seen at any grace
    wait = max(ctx.config.done_grace_s * 1e9, STOP_WINDOW_NS)
    if ctx.now_ns - since < wait or not arr.sync_thread:
        return []
    return [Verdict(key, Finding(
        code="F3", title="md_do_sync exited without MD_RECOVERY_DONE", array=arr.name,
        start_ns=since, severity=Severity.CRITICAL,
        explanation=(f"{arr.name}'s sync thread returned from md_do_sync without setting "
                     "MD_RECOVERY_DONE while the array stays live (no stop or reload), so "
                     "the daemon never sees step 3 end: RUNNING stays set, the thread is "
                     "never reaped and later sync actions or stops hang."),
        fix=fix_missing(ctx.kernel, (6, 8), "82ec0ae59d02 md: make sure md_do_sync() will set "
                        "MD_RECOVERY_DONE (6.8)"),
        remedy=(f"`{sync_action_cmd(arr, 'idle')}` to interrupt and reap; "
                "upgrade to a kernel with the fix."),
    ))]
