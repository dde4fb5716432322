"""F3: md_do_sync returned without setting MD_RECOVERY_DONE on a live array; RUNNING stays,
nobody reaps (fixed by 82ec0ae59d02 "md: make sure md_do_sync() will set MD_RECOVERY_DONE",
6.8).

The hang needs f52f5c71f3d4 "md: fix stopping sync thread" (6.7): from it on, stopping a sync
thread (stop_sync_thread: idle/frozen, dm-raid's presuspend/postsuspend, md_stop_writes)
sets INTR and waits for the daemon to clear MD_RECOVERY_RUNNING, which it does only after
md_do_sync set DONE (the seed's step 3 -> step 4).  md_do_sync returns early without DONE
when MD_RECOVERY_WAIT is set or the array is read-only ("just incase thread restarts...");
before 6.7 that is by design: the thread stays registered, runs again when woken (6.1
mddev_resume: md_wakeup_thread(sync_thread)), and every stop path takes it itself with
md_unregister_thread -> kthread_stop and md_reap_sync_thread, which need no DONE.  The real
6.1 lvm2 reshape (tests/data/golden/6.1.0-56-amd64/lvm_raid5_reshape) shows it around each
table reload: the new table's reshape thread leaves md_do_sync with WAIT set, and 2.2 s later
the next postsuspend's __md_stop_writes unregisters and reaps it.  So on a kernel that
predates 6.7 the exit is not F3.  On the 6.12 zoo variant p3 (82ec0ae59d02 reverted,
tests/data/golden/zoo_p3__lvm_reshape_suspend) the same exit is followed by a postsuspend
that never returns (stop_sync_thread).

The exit is not F3 either when its own mddev is stopped within :data:`STOP_WINDOW_NS` of it
(raid_dtr / md_stop take the thread), and it is held while the dm-raid array is suspended
(between raid_ctr and raid_resume, or suspended to be stopped).  The stop must be of the
same mddev: a dm-raid reload stops the *replaced* table's mddev (another hashed pointer under
the same dm-N) milliseconds around the new table's exit, and that stop says nothing about the
new table's thread (the engine keeps one record per mddev: engine/core.py _other_mddev).
Later stop evidence clears the candidate by itself: a stop ends the generation (no tick runs
on it), a sync thread_unregister or reap clears it, and md_unregister_thread NULLs
mddev->sync_thread before kthread_stop, so an exit that answers an unregister carries
sync_thread=0.  F3 waits at least the window, so whether an exit is a stop's does not depend
on ``done_grace_s``.
"""

from __future__ import annotations

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.detectors.base import (
    Context,
    Verdict,
    display_name,
    fix_seen,
    is_dm,
    sync_action_cmd,
)
from mdtrace.engine.model import Finding, Severity
from mdtrace.kernel.flags import parse_release, recovery_names

CODE = "F3"
CODES = (CODE,)

# a stop of the array's own mddev this close to the exit owns it, whatever done_grace_s is
STOP_WINDOW_NS = 1_000_000_000
# f52f5c71f3d4 "md: fix stopping sync thread": stops wait for the reap, i.e. for DONE
STOP_WAITS_FOR_DONE = (6, 7)
FIX = "82ec0ae59d02 md: make sure md_do_sync() will set MD_RECOVERY_DONE"
FIXED_IN = (6, 8)


def wanted(arr: ArrayRec, config: EngineConfig) -> bool:
    """Worth a tick check (else every verdict would only close an inactive finding)."""
    return arr.exit_without_done is not None


def stopping(arr: ArrayRec, since: int) -> bool:
    """The exit at ``since`` belongs to a stop of this record's own mddev (``stop_ns`` is
    never carried from another generation)."""
    return arr.stop_ns is not None and abs(since - arr.stop_ns) <= STOP_WINDOW_NS


def exit_by_design(kernel: str) -> bool:
    """The kernel predates f52f5c71f3d4 (6.7): its stops kthread_stop the sync thread and
    never wait for DONE, so an exit without it hangs nothing.  Unknown kernel: judged as
    one that waits."""
    ver = parse_release(kernel) if kernel else (0, 0)
    return ver != (0, 0) and ver < STOP_WAITS_FOR_DONE


def _remedy(arr: ArrayRec, upgrade: str) -> str:
    """Not ``idle``: from f52f5c71f3d4 on (the only kernels F3 is raised on) writing idle or
    frozen is stop_sync_thread too, which waits for the reap that needs DONE (the zoo's p3:
    lvm2's postsuspend blocked there for good; F12 says the same of a blocked stop)."""
    stops = (f"`{sync_action_cmd(arr, 'idle')}` or `frozen`, a suspend or reload of the LV "
             "(lvconvert, lvchange, dmsetup suspend)" if is_dm(arr) else
             f"`{sync_action_cmd(arr, 'idle')}` or `frozen`, `mdadm --stop /dev/{arr.name}`")
    return (f"do not ask the sync thread to stop: {stops} each wait for a reap that needs "
            "DONE and hang (F12); nothing that stops the thread returns, so plan a reboot; "
            f"{upgrade}.")


def check(ctx: Context) -> list[Verdict]:
    arr = ctx.arr
    key = f"F3:{arr.name}:{arr.generation}"
    since = arr.exit_without_done
    if since is None or stopping(arr, since) or exit_by_design(ctx.kernel):
        return [Verdict(key, None)]
    if is_dm(arr) and (arr.suspended or arr.dm_suspended):
        return []   # raid_resume wakes the thread again, raid_dtr unregisters it
    # wait out the stop window too, so a stop just after the exit is seen at any grace
    wait = max(ctx.config.done_grace_s * 1e9, STOP_WINDOW_NS)
    if ctx.now_ns - since < wait or not arr.sync_thread:
        return []
    # with the fix md_do_sync never returns without DONE: this exit is the kernel's own
    # evidence that it lacks it, whatever its version says
    fix = fix_seen(ctx.kernel, FIXED_IN, FIX, "md_do_sync returned without DONE")
    return [Verdict(key, Finding(
        code="F3", title="md_do_sync exited without MD_RECOVERY_DONE", array=arr.name,
        start_ns=since, severity=Severity.CRITICAL,
        explanation=(f"{display_name(arr)}'s sync thread returned from md_do_sync without setting "
                     "MD_RECOVERY_DONE while the array stays live (its own mddev not stopped), so "
                     "the daemon never sees step 3 end: RUNNING stays set, the thread is "
                     "never reaped and later sync actions or stops hang."),
        fix=fix.line,
        remedy=_remedy(arr, fix.upgrade),
        details={"recovery": recovery_names(arr.exit_recovery)},   # at the exit
    ))]
