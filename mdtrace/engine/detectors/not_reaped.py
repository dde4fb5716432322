"""F1/F2: MD_RECOVERY_DONE set, the daemon keeps running, but never reaps the sync thread,
because the array is suspended (F1, CVE-2024-26758) or read-only (F2, CVE-2024-26757)."""

from __future__ import annotations

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.detectors.base import (
    Context,
    Verdict,
    fix_seen,
    readwrite_cmd,
    resume_cmd,
)
from mdtrace.engine.model import Finding, Severity
from mdtrace.kernel.flags import Recovery

CODE = "F1"  # and F2 (same mechanism, read-only array)
CODES = ("F1", "F2")


def read_done(arr: ArrayRec) -> bool:
    """A snapshot's kernel read (``mdtrace diagnose``, /proc/kcore) shows DONE with the sync
    thread still registered, and no md_check_recovery was ever seen on the array.

    md_do_sync sets DONE and wakes the daemon, which reaps within milliseconds unless it
    skips the array: so DONE + sync thread on a suspended or read-only array *at the instant
    of the read* is the stuck state itself, and a snapshot (no duration) waits no grace.  The
    trace rule (DONE seen by md_check_recovery for ``reap_grace_s``) is the one used as soon
    as md_check_recovery is seen (``threads`` is set only by a snapshot)."""
    return (arr.done_since is None and arr.threads is not None and arr.sync_thread
            and bool(arr.recovery & Recovery.DONE)
            and not arr.counters.get("check_recovery_exit"))


def wanted(arr: ArrayRec, config: EngineConfig) -> bool:
    """Worth a tick check (else every verdict would only close an inactive finding)."""
    return arr.done_since is not None or read_done(arr)


def check(ctx: Context) -> list[Verdict]:
    arr = ctx.arr
    out: list[Verdict] = []
    snap = read_done(arr)
    since = arr.last_ns if snap else arr.done_since
    for code in ("F1", "F2"):
        key = f"{code}:{arr.name}:{arr.generation}"
        if since is None:
            out.append(Verdict(key, None))
            continue
        if not snap and ctx.now_ns - since < ctx.config.reap_grace_s * 1e9:
            continue
        if code == "F1" and (arr.suspended or arr.dm_suspended):
            # with the fix md_check_recovery reaps a suspended array's finished thread
            fix1 = fix_seen(ctx.kernel, (6, 8), "1baae052cccd md: don't ignore suspended "
                            "array in md_check_recovery()",
                            "DONE not reaped on a suspended array")
            out.append(Verdict(key, Finding(
                code="F1", title="sync thread finished (DONE) but never reaped: array suspended",
                array=arr.name, start_ns=since, severity=Severity.CRITICAL,
                explanation=(
                    f"{arr.name}'s sync thread set MD_RECOVERY_DONE, but md_check_recovery "
                    "returns early while the array is suspended, so step 4 (clear RUNNING, "
                    "reap the thread) never happens. Anything that waits for the sync thread "
                    "to stop (dm suspend/stop, mdadm --stop, a new sync) hangs."),
                fix=fix1.line,
                remedy=(f"resume the array (`{resume_cmd(arr)}`), then check the thread is "
                        f"reaped; {fix1.upgrade}."),
                details={"suspended": arr.suspended, "dm_suspended": arr.dm_suspended})))
        elif code == "F2" and arr.ro:
            fix2 = fix_seen(ctx.kernel, (6, 8), "55a48ad2db64 md: don't ignore read-only "
                            "array in md_check_recovery()",
                            "DONE not reaped on a read-only array")
            out.append(Verdict(key, Finding(
                code="F2", title="sync thread finished (DONE) but never reaped: array read-only",
                array=arr.name, start_ns=since, severity=Severity.CRITICAL,
                explanation=(
                    f"{arr.name} is read-only (ro={arr.ro}); md_check_recovery skips "
                    "read-only arrays, so the finished sync thread is never reaped and "
                    "MD_RECOVERY_RUNNING stays set."),
                fix=fix2.line,
                remedy=f"`{readwrite_cmd(arr)}` lets the daemon reap; {fix2.upgrade}.",
                details={"ro": arr.ro})))
    return out
