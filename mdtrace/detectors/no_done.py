"""F3: md_do_sync returned without setting MD_RECOVERY_DONE; RUNNING stays, nobody reaps."""

from __future__ import annotations

from mdtrace.config import EngineConfig
from mdtrace.detectors.base import Context, Verdict
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.model import Finding, Severity

CODE = "F3"
CODES = (CODE,)


def wanted(arr: ArrayRec, config: EngineConfig) -> bool:
    """Worth a tick check (else every verdict would only close an inactive finding)."""
    return arr.exit_without_done is not None


def check(ctx: Context) -> list[Verdict]:
    arr = ctx.arr
    key = f"F3:{arr.name}:{arr.generation}"
    since = arr.exit_without_done
    if since is None:
        return [Verdict(key, None)]
    if ctx.now_ns - since < ctx.config.done_grace_s * 1e9 or not arr.sync_thread:
        return []
    return [Verdict(key, Finding(
        code="F3", title="md_do_sync exited without MD_RECOVERY_DONE", array=arr.name,
        start_ns=since, severity=Severity.CRITICAL,
        explanation=(f"{arr.name}'s sync thread returned from md_do_sync without setting "
                     "MD_RECOVERY_DONE, so the daemon never sees step 3 end: RUNNING stays "
                     "set, the thread is never reaped and later sync actions or stops hang."),
        fix="82ec0ae59d02 md: make sure md_do_sync() will set MD_RECOVERY_DONE (6.8)",
        remedy=(f"`echo idle > /sys/block/{arr.name}/md/sync_action` to interrupt and reap; "
                "upgrade to a kernel with the fix."),
    ))]
