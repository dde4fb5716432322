"""Recovery / mddev flag tables and their decoding.

The kernel's ``enum recovery_flags`` changed order in 6.11 (commit 0476d09c36a8 "md: rearrange
recovery_flags"), gained ``MD_RECOVERY_LAZY_RECOVER`` in 6.18 (c951ccf0bf2d, backported: the
6.12.117 BTF has it, bit 13) and lost ``MD_RECOVERY_ERROR`` in 7.0 (af9c40ff5aed "md: remove
MD_RECOVERY_ERROR handling and simplify resync_offset update": every later bit moves down one,
7.2 BTF: SYNC 6 .. RESHAPE 10, RESYNCING_REMOTE 11, LAZY_RECOVER 12); ``enum mddev_flags``
changed in 6.7, 6.19 and 7.x (7.2 adds MD_DM_SUSPENDING).  A trace therefore stores the
*kernel's* raw bit values plus the table (name -> bit) that was in force, read from BTF at
record time.  On ingest every raw mask is translated once into mdtrace's own canonical
:class:`Recovery` bit set, so the engine and detectors never see kernel bit positions; a flag
the kernel lacks (ERROR on 7.x) simply never appears.
The per-version tables below are only a fallback for kernels whose BTF lacks the enums; no
kernel measured so far does (5.10, 6.1, 6.12, 7.2 all have both enums in md_mod's BTF; 5.10's
module BTF has to be made from DWARF: mdtrace.kernel.dwarf_btf).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

# MaxSector in the kernel is ~(sector_t)0: "no reshape in progress".
MAX_SECTOR = (1 << 64) - 1


class Recovery(enum.IntFlag):
    """Canonical (mdtrace-internal) recovery flags; bit values are ours, not the kernel's."""

    NONE = 0
    NEEDED = 1 << 0
    RUNNING = 1 << 1
    INTR = 1 << 2
    DONE = 1 << 3
    FROZEN = 1 << 4
    WAIT = 1 << 5
    ERROR = 1 << 6
    SYNC = 1 << 7
    REQUESTED = 1 << 8
    CHECK = 1 << 9
    RECOVER = 1 << 10
    RESHAPE = 1 << 11
    RESYNCING_REMOTE = 1 << 12
    LAZY_RECOVER = 1 << 13


class MddevFlag(enum.IntFlag):
    """Canonical ``enum mddev_flags`` names (bit values are ours)."""

    NONE = 0
    ARRAY_FIRST_USE = 1 << 0
    CLOSING = 1 << 1
    JOURNAL_CLEAN = 1 << 2
    HAS_JOURNAL = 1 << 3
    CLUSTERED = 1 << 4
    FAILFAST_SUPPORTED = 1 << 5
    HAS_PPL = 1 << 6
    HAS_MULTIPLE_PPLS = 1 << 7
    ALLOW_SB_UPDATE = 1 << 8
    UPDATING_SB = 1 << 9
    NOT_READY = 1 << 10
    BROKEN = 1 << 11
    DO_DELETE = 1 << 12
    DELETED = 1 << 13
    # names BTF gives that the fallback tables never had (5.10 .. 7.2 md_mod BTF)
    CLUSTER_RESYNC_LOCKED = 1 << 14
    HAS_SUPERBLOCK = 1 << 15
    FAILLAST_DEV = 1 << 16
    SERIALIZE_POLICY = 1 << 17
    DM_SUSPENDING = 1 << 18     # 7.x: a dm-raid table of this mddev is suspending


# Kernel enum recovery_flags (drivers/md/md.h), as the 6.1 and 6.12 BTF give it (tests/test_btf.py).
RECOVERY_PRE_6_11: dict[str, int] = {
    "RUNNING": 0, "SYNC": 1, "RECOVER": 2, "INTR": 3, "DONE": 4, "NEEDED": 5, "REQUESTED": 6,
    "CHECK": 7, "RESHAPE": 8, "FROZEN": 9, "ERROR": 10, "WAIT": 11, "RESYNCING_REMOTE": 12,
}
RECOVERY_6_11: dict[str, int] = {
    "NEEDED": 0, "RUNNING": 1, "INTR": 2, "DONE": 3, "FROZEN": 4, "WAIT": 5, "ERROR": 6,
    "SYNC": 7, "REQUESTED": 8, "CHECK": 9, "RECOVER": 10, "RESHAPE": 11, "RESYNCING_REMOTE": 12,
}
RECOVERY_6_18: dict[str, int] = {**RECOVERY_6_11, "LAZY_RECOVER": 13}
# 7.0: af9c40ff5aed removed MD_RECOVERY_ERROR (the 7.2.13 BTF: tests/test_btf_kernels.py)
RECOVERY_7_0: dict[str, int] = {
    "NEEDED": 0, "RUNNING": 1, "INTR": 2, "DONE": 3, "FROZEN": 4, "WAIT": 5, "SYNC": 6,
    "REQUESTED": 7, "CHECK": 8, "RECOVER": 9, "RESHAPE": 10, "RESYNCING_REMOTE": 11,
    "LAZY_RECOVER": 12,
}

_MDDEV_COMMON: dict[str, int] = {
    "ARRAY_FIRST_USE": 0, "CLOSING": 1, "JOURNAL_CLEAN": 2, "HAS_JOURNAL": 3, "CLUSTERED": 4,
    "FAILFAST_SUPPORTED": 5, "HAS_PPL": 6, "HAS_MULTIPLE_PPLS": 7,
}
MDDEV_6_1: dict[str, int] = {
    **_MDDEV_COMMON, "ALLOW_SB_UPDATE": 8, "UPDATING_SB": 9, "NOT_READY": 10, "BROKEN": 11,
    "DELETED": 12,
}
MDDEV_6_7: dict[str, int] = {**_MDDEV_COMMON, "NOT_READY": 8, "BROKEN": 9, "DELETED": 10}
MDDEV_6_19: dict[str, int] = {
    **_MDDEV_COMMON, "NOT_READY": 8, "BROKEN": 9, "DO_DELETE": 10, "DELETED": 11,
}


def parse_release(release: str) -> tuple[int, int]:
    """'6.12.117+deb12-amd64' -> (6, 12); unknown strings -> (0, 0)."""
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return 0, 0


def fallback_tables(release: str) -> tuple[dict[str, int], dict[str, int]]:
    """Per-version (recovery, mddev) tables for kernels whose BTF lacks the enums."""
    ver = parse_release(release)
    if ver >= (7, 0):
        rec = RECOVERY_7_0
    elif ver >= (6, 18):
        rec = RECOVERY_6_18
    elif ver >= (6, 11):
        rec = RECOVERY_6_11
    else:
        rec = RECOVERY_PRE_6_11
    if ver >= (6, 19):
        mdf = MDDEV_6_19
    elif ver >= (6, 7):
        mdf = MDDEV_6_7
    else:
        mdf = MDDEV_6_1
    return dict(rec), dict(mdf)


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


@dataclass
class FlagTable:
    """Kernel bit positions for one kernel, and cached raw -> canonical translation."""

    recovery: dict[str, int]
    mddev: dict[str, int]
    _rec_cache: dict[int, int] = field(default_factory=dict, repr=False, compare=False)
    _mdf_cache: dict[int, int] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_enums(cls, recovery: Mapping[str, int], mddev: Mapping[str, int]) -> FlagTable:
        """Build from BTF enumerator names (``MD_RECOVERY_RUNNING`` or bare ``RUNNING``)."""
        rec = {_strip(k, "MD_RECOVERY_"): int(v) for k, v in recovery.items()}
        mdf = {_strip(k, "MD_"): int(v) for k, v in mddev.items()}
        return cls(rec, mdf)

    @classmethod
    def for_release(cls, release: str) -> FlagTable:
        """The per-version fallback tables of kernel ``release`` (no BTF read here: BTF-first
        lookup is :func:`mdtrace.kernel.offsets.flag_table_for`, which knows the BTF layout)."""
        rec, mdf = fallback_tables(release)
        return cls(rec, mdf)

    def to_json(self) -> dict[str, dict[str, int]]:
        return {"recovery": dict(self.recovery), "mddev": dict(self.mddev)}

    def recovery_canon(self, raw: int) -> int:
        """Translate a raw kernel ``mddev->recovery`` word into canonical :class:`Recovery`."""
        got = self._rec_cache.get(raw)
        if got is None:
            got = _translate(raw, self.recovery, Recovery)
            if len(self._rec_cache) < 65536:
                self._rec_cache[raw] = got
        return got

    def mddev_canon(self, raw: int) -> int:
        got = self._mdf_cache.get(raw)
        if got is None:
            got = _translate(raw, self.mddev, MddevFlag)
            if len(self._mdf_cache) < 65536:
                self._mdf_cache[raw] = got
        return got

    def recovery_raw(self, canon: int) -> int:
        """Canonical -> raw kernel word (used by synthetic scenarios to look like a kernel)."""
        raw = 0
        for name, bit in self.recovery.items():
            member = Recovery.__members__.get(name)
            if member is not None and canon & member:
                raw |= 1 << bit
        return raw

    def mddev_raw(self, canon: int) -> int:
        raw = 0
        for name, bit in self.mddev.items():
            member = MddevFlag.__members__.get(name)
            if member is not None and canon & member:
                raw |= 1 << bit
        return raw


def _translate(raw: int, table: Mapping[str, int], canon: type[enum.IntFlag]) -> int:
    out = 0
    for name, bit in table.items():
        if raw >> bit & 1:
            member = canon.__members__.get(name)
            if member is not None:
                out |= int(member)
    return out


def recovery_names(canon: int) -> list[str]:
    """Canonical recovery mask -> flag names in canonical order, e.g. ['RUNNING', 'DONE']."""
    return [m.name for m in Recovery if m.value and canon & m.value and m.name]


def mddev_names(canon: int) -> list[str]:
    return [m.name for m in MddevFlag if m.value and canon & m.value and m.name]


def reshape_interrupted(recovery: int, reshape_position: int | None) -> bool:
    """Mirror of the kernel's static inline reshape_interrupted() (md.h, 6.9+), canonical flags.

    A reshape is interrupted when one is recorded (reshape_position != MaxSector) and the sync
    thread cannot be making progress: not RUNNING, or WAIT / INTR / FROZEN set.
    """
    if reshape_position is None:
        return False
    if not recovery & Recovery.RUNNING:
        return True
    return bool(recovery & (Recovery.WAIT | Recovery.INTR | Recovery.FROZEN))
