"""What sysfs and ``dmsetup status`` show of every md array and dm-raid target right now.

md: ``/sys/block/mdX/md/*`` (array_state, sync_action, sync_completed incl. ``delayed`` /
``none``, reshape_position, degraded, raid_disks, level, suspend_lo/hi) and
``/sys/block/mdX/ro``.  dm-raid: ``dmsetup status --target raid`` (only targets of type raid:
lvm's hidden ``_rimage_N``/``_rmeta_N`` sub-LVs are linear targets and are never listed), the
dm disk name from ``/sys/block/dm-N/dm/name`` and whether it is suspended from
``/sys/block/dm-N/dm/suspended``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mdtrace.kernel.flags import Recovery
from mdtrace.sources.sysfs import (
    dm_disks,
    parse_dmsetup_status,
    parse_int,
    read_array,
    read_attr,
)

_HIDDEN = re.compile(r"_r(image|meta)_\d+$")


@dataclass(frozen=True)
class ArrayFacts:
    """One array as the machine shows it now (md or dm-raid)."""

    name: str                    # md0 / dm-6 (the dm name when no dm-N is known)
    kind: str                    # md | dm-raid
    dm_name: str = ""
    level: str = ""
    array_state: str = ""        # md only: clean, active, readonly, write-pending, ...
    sync_action: str = ""
    sync_completed: str = ""     # 'N / M', 'none', 'delayed' (md); 'N/M' (dm-raid)
    done: int | None = None
    total: int | None = None
    reshape_position: int | None = None
    degraded: int | None = None
    raid_disks: int | None = None
    suspend_lo: int | None = None
    suspend_hi: int | None = None
    ro: int = 0                  # 0 rw, 1 read-only, 2 auto-read-only
    dm_suspended: bool | None = None
    # member disks that are dm devices suspended now (their dm names): IO md sends them is
    # queued by dm until `dmsetup resume` (dm_submit_bio -> queue_io while
    # DMF_BLOCK_IO_FOR_SUSPEND), so a sync thread waiting for it never returns
    suspended_members: tuple[str, ...] = ()


def recovery_of(sync_action: str, reshape: bool) -> int:
    """The canonical MD_RECOVERY_* bits md's action_show() derived ``sync_action`` from:
    ``frozen`` is FROZEN (tested first); the others imply RUNNING (or NEEDED) plus the kind
    (RESHAPE; SYNC; SYNC|REQUESTED|CHECK; SYNC|REQUESTED; RECOVER).  ``idle`` is none.  A
    recorded reshape position keeps RESHAPE with ``frozen`` (the reshape is interrupted)."""
    r = Recovery
    bits = {
        "frozen": r.FROZEN, "reshape": r.RUNNING | r.RESHAPE, "resync": r.RUNNING | r.SYNC,
        "check": r.RUNNING | r.SYNC | r.REQUESTED | r.CHECK,
        "repair": r.RUNNING | r.SYNC | r.REQUESTED, "recover": r.RUNNING | r.RECOVER,
    }.get(sync_action, r(0))
    if reshape and sync_action == "frozen":
        bits |= r.RESHAPE
    return int(bits)


def ro_of(array_state: str, disk_ro: str) -> int:
    """mddev->ro as array_state_show() prints it (readonly / read-auto), or the gendisk's
    read-only flag (/sys/block/mdX/ro, set by md_set_readonly)."""
    if array_state == "readonly" or disk_ro == "1":
        return 1
    return 2 if array_state == "read-auto" else 0


def suspended_members(sys_root: Path, disk: str) -> tuple[str, ...]:
    """dm names of ``disk``'s member devices (``/sys/block/DISK/slaves/dm-N``) that are
    suspended (``dm/suspended`` = 1)."""
    out: list[str] = []
    slaves = sys_root / "block" / disk / "slaves"
    for m in sorted(slaves.glob("dm-*")) if slaves.is_dir() else []:
        dm = sys_root / "block" / m.name / "dm"
        if read_attr(dm / "suspended") == "1":
            out.append(read_attr(dm / "name") or m.name)
    return tuple(out)


def md_arrays(sys_root: Path) -> list[ArrayFacts]:
    out = []
    block = sys_root / "block"
    for d in sorted(block.glob("md*")) if block.is_dir() else []:
        md = d / "md"
        if not md.is_dir():
            continue
        snap = read_array(md, d.name)
        sc = read_attr(md / "sync_completed")
        out.append(ArrayFacts(
            name=d.name, kind="md", level=snap.level, array_state=snap.array_state,
            sync_action=snap.sync_action, sync_completed=sc, done=snap.done, total=snap.total,
            reshape_position=snap.reshape_position, degraded=snap.degraded,
            raid_disks=snap.raid_disks, suspend_lo=parse_int(read_attr(md / "suspend_lo")),
            suspend_hi=parse_int(read_attr(md / "suspend_hi")),
            ro=ro_of(snap.array_state, read_attr(d / "ro")),
            suspended_members=suspended_members(sys_root, d.name)))
    return out


def dm_raid_arrays(sys_root: Path, dmsetup_status: str) -> list[ArrayFacts]:
    """dm-raid targets of ``dmsetup status`` output (all targets or ``--target raid``)."""
    disks = dm_disks(sys_root)
    out = []
    for dm_name, snap in sorted(parse_dmsetup_status(dmsetup_status).items()):
        if _HIDDEN.search(dm_name):
            continue
        disk = disks.get(dm_name, "")
        susp = read_attr(sys_root / "block" / disk / "dm" / "suspended") if disk else ""
        out.append(ArrayFacts(
            name=disk or dm_name, kind="dm-raid", dm_name=dm_name, level=snap.level,
            sync_action=snap.sync_action,
            sync_completed="" if snap.done is None else f"{snap.done}/{snap.total}",
            done=snap.done, total=snap.total, degraded=snap.degraded,
            raid_disks=snap.raid_disks, dm_suspended=None if susp == "" else susp == "1",
            suspended_members=suspended_members(sys_root, disk) if disk else ()))
    return out
