"""F5: raid456 ``start_reshape`` called while an earlier reshape is unfinished.

For raid456, calling ``pers->start_reshape`` after a reshape was interrupted sets up a *new*
reshape over a half-reshaped array: stripes already moved are reshaped again (data corruption).
md's own ``sync_action=reshape`` continues an unfinished reshape instead of restarting it;
dm-raid relied on md_do_sync *not* setting DONE to avoid a new sync thread after a suspend,
which 82ec0ae59d02 (6.8, "md: Make sure md_do_sync() will set MD_RECOVERY_DONE") broke
and 16c4770c75b1 (6.9, "dm-raid: really frozen sync_thread during suspend") repaired.

Evidence: a ``start_reshape`` entry whose state shows ``reshape_position`` != MaxSector (a
fresh reshape enters with MaxSector; it is set inside start_reshape), sharpened when the
engine saw the earlier reshape's md_do_sync return unfinished.
"""

from __future__ import annotations

from mdtrace.engine.detectors.base import Context, Verdict, fix_missing
from mdtrace.engine.model import Finding, Severity

CODE = "F5"


def check(ctx: Context) -> list[Verdict]:
    ev = ctx.ev
    if ev is None or ev.kind != "start_reshape" or ev.args.get("phase", "enter") != "enter":
        return []
    st = ev.state
    pos = st.reshape_pos if st is not None else ctx.arr.reshape_pos
    if pos is None:
        return []
    arr = ctx.arr
    caller = str(ev.args.get("caller", "?"))
    seen = arr.reshape_interrupted_ns
    how = (f"the previous reshape's md_do_sync returned unfinished {(ev.ts - seen) / 1e9:.1f}s "
           "earlier" if seen is not None else "the array records an unfinished reshape")
    return [Verdict(f"F5:{arr.name}:{arr.generation}:{ev.ts}", Finding(
        code="F5", title=f"reshape started again over an interrupted reshape (by {caller})",
        array=arr.name, start_ns=ev.ts, severity=Severity.CRITICAL,
        explanation=(
            f"{caller} called raid456 start_reshape on {arr.name} while reshape_position is "
            f"{pos} ({how}). Restarting instead of continuing a reshape re-lays-out stripes "
            "that were already moved: data on the array can be corrupted. Seen with dm-raid "
            "on kernels that set MD_RECOVERY_DONE on interruption but do not keep the sync "
            "thread frozen across suspend/resume."),
        fix=fix_missing(ctx.kernel, (6, 9), "16c4770c75b1 dm-raid: really frozen sync_thread "
                        "during suspend (6.9); with 82ec0ae59d02 md: make sure md_do_sync() "
                        "will set MD_RECOVERY_DONE (6.8)"),
        remedy=(f"stop writing to {arr.dm_name or arr.name} now; once the reshape has ended, "
                "check the filesystem read-only (`fsck -n`) and restore from backup if it is "
                "damaged; do not suspend/resume dm-raid LVs during a reshape on this kernel; "
                "upgrade to a kernel with the fixes."),
        evidence=[ev], details={"caller": caller, "reshape_pos": pos,
                                "interrupted_ns": seen})), ]
