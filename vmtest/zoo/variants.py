"""The zoo's variants: the guest's own 6.12.117 md_mod/raid456/dm_raid with exactly one fix of
the seed series (Yu Kuai's dm-raid regression series, merged for 6.8/6.9) reverted.

Each revert is a patch file in ``vmtest/zoo/patches/`` against Debian's linux-source-6.12
6.12.117-1~deb12u1 (the guest kernel's exact source).  ``make vm-zoo-list`` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PATCH_DIR = Path(__file__).with_name("patches")


@dataclass(frozen=True)
class Variant:
    name: str
    seed_patch: int          # its number in the seed series
    commit: str              # the upstream fix this variant reverts
    title: str
    patch: str               # file in PATCH_DIR
    expect: str              # the class the seed says a kernel without the fix shows
    reproduces_on_612: str   # "yes", or why a faithful revert does not hang on 6.12

    @property
    def patch_path(self) -> Path:
        return PATCH_DIR / self.patch

    def diff(self) -> str:
        return self.patch_path.read_text()


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("p1", 1, "1baae052cccd", "md: don't ignore suspended array in md_check_recovery()",
            "p1-1baae052cccd.patch", "F1",
            "no: 6.12's raid_postsuspend stops the sync thread (md_stop_writes -> "
            "stop_sync_thread) before mddev_suspend (16c4770c75b1) and md_stop no longer waits "
            "for it, so nothing waits for a reap while the array is suspended "
            "(docs/kernels.md, zoo; measured: the reproducer completes, no finding)"),
    Variant("p2", 2, "55a48ad2db64", "md: don't ignore read-only array in md_check_recovery()",
            "p2-55a48ad2db64.patch", "F2",
            "not run: by the 6.12 code no sync thread can finish while dm-raid is read-only "
            "(docs/kernels.md, zoo); unverified"),
    Variant("p3", 3, "82ec0ae59d02", "md: make sure md_do_sync() will set MD_RECOVERY_DONE",
            "p3-82ec0ae59d02.patch", "F3", "yes"),
)}


def variant(name: str) -> Variant:
    """The named variant; a one-line error for an unknown name."""
    from mdtrace.errors import MdtraceError

    if name not in VARIANTS:
        raise MdtraceError(f"unknown zoo variant {name!r}: choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name]
