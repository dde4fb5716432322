"""What a snapshot shows of one array: a pure function of its record, so the engine's
``snapshot()`` only gathers the cross-array parts (open findings, locks held, dm devices)."""

from __future__ import annotations

from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.dm_context import DmMemberView
from mdtrace.engine.iowait import waited_ns
from mdtrace.engine.model import ArrayView, IoWaitView, Lifecycle
from mdtrace.kernel.flags import mddev_names, recovery_names


def array_view(name: str, arr: ArrayRec, *, retired: bool, now_ns: int, held: list[str],
               active: list[str], dm_devices: list[DmMemberView]) -> ArrayView:
    """``arr`` as the front ends see it at ``now_ns``: IO waits with their age, progress
    and ETA (only while syncing and moving), the dm devices this LV owns."""
    waits = [IoWaitView(w.io_id, w.tid, w.comm, w.sector, w.sectors, w.rw, w.first_ns,
                        max(waited_ns(w), now_ns - w.first_ns), w.mode, True)
             for w in arr.io_waits.values()]
    syncing = arr.lifecycle is Lifecycle.SYNCING and arr.speed > 0
    speed = arr.speed if syncing else 0.0
    done = arr.curr_resync if arr.curr_resync > 3 else (
        arr.prog_token[2] if arr.prog_token else 0)
    eta = (arr.resync_max - done) / speed if speed and arr.resync_max > done else None
    return ArrayView(
        name=name, kind=arr.kind, dm_name=arr.dm_name, level=arr.level,
        generation=arr.generation, lifecycle=arr.lifecycle,
        lifecycle_since_ns=arr.lifecycle_since, recovery=recovery_names(arr.recovery),
        recovery_mask=arr.recovery, flags=mddev_names(arr.flags), ro=arr.ro,
        suspended=arr.suspended, dm_suspended=arr.dm_suspended,
        sync_thread=arr.sync_thread, sync_action=arr.sync_action,
        reshape_pos=arr.reshape_pos,
        progress_done=done, progress_total=arr.resync_max,
        speed_sectors_per_s=speed, eta_s=eta, raid_disks=arr.raid_disks,
        degraded=arr.degraded, blocked_io=waits,
        oldest_wait_s=max((w.wait_ns for w in waits), default=0) / 1e9,
        locks_held=held, last_event_ns=arr.last_ns,
        findings_active=active,
        history=[(ts, str(state)) for ts, state in arr.history],
        counters=dict(arr.counters),
        dm_members=[d for d in dm_devices if arr.dm_name and d.owner == arr.dm_name],
        retired=retired)
