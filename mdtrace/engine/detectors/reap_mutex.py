"""F6: md_reap_sync_thread entered without the caller holding reconfig_mutex."""

from __future__ import annotations

from mdtrace.engine.detectors.base import Context, Verdict, fix_missing, sync_action_cmd
from mdtrace.engine.model import Finding, Severity

CODE = "F6"


def check(ctx: Context) -> list[Verdict]:
    ev = ctx.ev
    if ev is None or ev.kind != "reap" or ev.args.get("mutex_owned", True):
        return []
    arr = ctx.arr
    caller = str(ev.args.get("caller", "?"))
    return [Verdict(f"F6:{arr.name}:{arr.generation}:{caller}", Finding(
        code="F6", title=f"md_reap_sync_thread called without reconfig_mutex (from {caller})",
        array=arr.name, start_ns=ev.ts, severity=Severity.WARNING,
        explanation=(f"{caller} reaped {arr.name}'s sync thread without holding "
                     "mddev->reconfig_mutex, racing with the daemon and with reconfiguration "
                     "(seen with dm-raid's raid_message before the fix)."),
        fix=fix_missing(ctx.kernel, (6, 9), "cd32b27a66db md/dm-raid: don't call "
                        "md_reap_sync_thread() directly (6.9)"),
        remedy=(f"avoid sync-action requests (`{sync_action_cmd(arr, 'idle')}` and the "
                "like) while the array is being reconfigured; upgrade to a kernel with the "
                "fix."),
        evidence=[ev], details={"caller": caller})), ]
