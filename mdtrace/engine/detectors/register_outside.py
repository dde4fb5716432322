"""F4: the sync thread was registered (RUNNING set) outside the md daemon's md_check_recovery
/ md_start_sync path, e.g. raid5_start_reshape registering the reshape thread directly."""

from __future__ import annotations

from mdtrace.engine.detectors.base import Context, Verdict, fix_missing
from mdtrace.engine.model import Finding, Severity

CODE = "F4"

DAEMON_CALLERS = ("md_check_recovery", "md_start_sync")


def check(ctx: Context) -> list[Verdict]:
    ev = ctx.ev
    if ev is None or ev.kind != "thread_register" or not ev.args.get("sync"):
        return []
    caller = str(ev.args.get("caller", ""))
    if not caller or caller.split(".")[0] in DAEMON_CALLERS:
        return []
    arr = ctx.arr
    caller_raw, caller = caller, caller.split(".")[0]  # drop .cold/.isra compiler suffixes
    return [Verdict(f"F4:{arr.name}:{arr.generation}:{caller}", Finding(
        code="F4", title=f"sync thread registered outside the md daemon (by {caller})",
        array=arr.name, start_ns=ev.ts, severity=Severity.WARNING,
        explanation=(f"{caller} registered {arr.name}'s sync thread and set "
                     "MD_RECOVERY_RUNNING itself, instead of setting MD_RECOVERY_NEEDED and "
                     "leaving the start to the md daemon (md_check_recovery). The daemon's "
                     "bookkeeping can then race with the thread: stopping or reaping it may "
                     "hang or run twice."),
        fix=fix_missing(ctx.kernel, (6, 8), "ad39c08186f8 md: don't register sync_thread "
                        "for reshape directly (6.8, CVE-2024-26756)"),
        remedy="avoid stopping or reconfiguring the array while this reshape starts; upgrade to "
               "a kernel with the fix.",
        evidence=[ev], details={"caller": caller_raw})), ]
