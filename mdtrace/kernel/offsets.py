"""The ``-D`` constants the BPF C needs, computed from the running kernel's BTF.

The BPF programs never include md.h (it is not in linux-headers): every struct offset and enum
value they use arrives here as a preprocessor constant, so one C source works on 6.1 .. 6.19
even though ``struct mddev`` and ``enum recovery_flags`` changed between them.

BTF comes from ``/sys/kernel/btf/{vmlinux,md_mod,raid456,dm_mod,dm_raid}`` (or, in tests, a
directory of captured blobs).  vmlinux and md_mod are required; the others only switch their
probes off (``HAVE_DM``, ``HAVE_DM_RAID``, ``HAVE_RAID456`` = 0) when absent.  Kernels without
module BTF (5.10: CONFIG_DEBUG_INFO_BTF_MODULES came in 5.11) use module BTF made from the -dbg
package's DWARF (:mod:`mdtrace.kernel.dwarf_btf`), looked up in its cache directory.

Everything that differs between kernels is read from BTF, never from the release number:
``enum recovery_flags`` (5.10/6.1: RUNNING 0 .. ERROR 10, WAIT 11; 6.11+ reordered; 7.0 dropped
ERROR; LAZY_RECOVER from 6.18, backported into 6.12.y), the ``md_unregister_thread`` and
``mddev_suspend`` prototypes, and the struct offsets (tests/test_btf_kernels.py checks 5.10,
6.1, 6.12 and 7.2).
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mdtrace.errors import EnvironmentProblem
from mdtrace.kernel.btf import Btf, BtfError, load_blob
from mdtrace.kernel.flags import FlagTable, fallback_tables

SYS_BTF = Path("/sys/kernel/btf")
MODULES = ("md_mod", "raid456", "dm_mod", "dm_raid")

# (define, module, struct, member path, required).  Required = a BPF program reads it and
# no probe can go without it; every define is read by mdtrace/bpf/ or the kcore stage
# (tests/test_contracts.py checks both).
FIELDS: tuple[tuple[str, str, str, str, bool], ...] = (
    ("MDDEV_RECOVERY", "md_mod", "mddev", "recovery", True),
    ("MDDEV_FLAGS", "md_mod", "mddev", "flags", True),
    ("MDDEV_RO", "md_mod", "mddev", "ro", True),
    ("MDDEV_SUSPENDED", "md_mod", "mddev", "suspended", True),
    ("MDDEV_SYNC_THREAD", "md_mod", "mddev", "sync_thread", True),
    ("MDDEV_RESHAPE_POS", "md_mod", "mddev", "reshape_position", True),
    ("MDDEV_CURR_RESYNC", "md_mod", "mddev", "curr_resync", True),
    ("MDDEV_RESYNC_MAX", "md_mod", "mddev", "resync_max_sectors", True),
    ("MDDEV_GENDISK", "md_mod", "mddev", "gendisk", True),
    ("MDDEV_LEVEL", "md_mod", "mddev", "level", True),
    ("MDDEV_PRIVATE", "md_mod", "mddev", "private", True),
    ("MDDEV_RECONFIG_MUTEX", "md_mod", "mddev", "reconfig_mutex", True),
    ("MDDEV_SUSPEND_MUTEX", "md_mod", "mddev", "suspend_mutex", False),  # 6.7+
    ("MD_THREAD_MDDEV", "md_mod", "md_thread", "mddev", True),
    ("MD_THREAD_TSK", "md_mod", "md_thread", "tsk", True),
    ("MD_THREAD_RUN", "md_mod", "md_thread", "run", True),
    ("MUTEX_OWNER", "vmlinux", "mutex", "owner", True),
    ("GENDISK_DISK_NAME", "vmlinux", "gendisk", "disk_name", True),
    ("TASK_COMM", "vmlinux", "task_struct", "comm", True),
    ("BIO_SECTOR", "vmlinux", "bio", "bi_iter.bi_sector", True),
    ("BIO_SIZE", "vmlinux", "bio", "bi_iter.bi_size", True),
    ("BIO_OPF", "vmlinux", "bio", "bi_opf", True),
    ("R5CONF_RESHAPE_PROGRESS", "raid456", "r5conf", "reshape_progress", False),
    ("R5CONF_RESHAPE_SAFE", "raid456", "r5conf", "reshape_safe", False),
    ("DM_TARGET_TABLE", "dm_mod", "dm_target", "table", False),
    ("DM_TARGET_PRIVATE", "dm_mod", "dm_target", "private", False),
    ("DM_TABLE_MD", "dm_mod", "dm_table", "md", False),
    ("MAPPED_DEVICE_DISK", "dm_mod", "mapped_device", "disk", False),
    ("MAPPED_DEVICE_NAME", "dm_mod", "mapped_device", "name", False),
    ("MAPPED_DEVICE_SUSPEND_LOCK", "dm_mod", "mapped_device", "suspend_lock", False),
    ("RAID_SET_TI", "dm_raid", "raid_set", "ti", False),
    ("RAID_SET_MD", "dm_raid", "raid_set", "md", False),
    # read from /proc/kcore by `mdtrace diagnose` (sources/snapshot/kcore.py), not by BPF
    ("MDDEV_ALL_MDDEVS", "md_mod", "mddev", "all_mddevs", False),
    ("MDDEV_SB_FLAGS", "md_mod", "mddev", "sb_flags", False),
    ("MDDEV_ACTIVE_IO", "md_mod", "mddev", "active_io", False),
    ("MDDEV_RECOVERY_ACTIVE", "md_mod", "mddev", "recovery_active", False),
    ("MDDEV_PENDING_WRITES", "md_mod", "mddev", "pending_writes", False),
    ("MDDEV_WRITES_PENDING", "md_mod", "mddev", "writes_pending", False),
    ("LIST_HEAD_NEXT", "vmlinux", "list_head", "next", False),
    ("LIST_HEAD_PREV", "vmlinux", "list_head", "prev", False),
    ("PERCPU_REF_COUNT_PTR", "vmlinux", "percpu_ref", "percpu_count_ptr", False),
    ("PERCPU_REF_DATA", "vmlinux", "percpu_ref", "data", False),
    ("PERCPU_REF_DATA_COUNT", "vmlinux", "percpu_ref_data", "count", False),
)

# the recovery bits the BPF side tests itself (reshape_interrupted() in the kernel)
KERNEL_REC_BITS = ("RUNNING", "INTR", "DONE", "NEEDED", "FROZEN", "WAIT", "RESHAPE")


@dataclass
class BtfSet:
    """vmlinux BTF plus whichever module BTF blobs exist (split on top of vmlinux)."""

    vmlinux: Btf
    modules: dict[str, Btf] = field(default_factory=dict)
    where: str = ""
    # modules whose BTF came from a fallback directory (DWARF-made: mdtrace.kernel.dwarf_btf)
    from_dwarf: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dir(cls, root: str | Path = SYS_BTF,
                 fallback: Sequence[str | Path] | None = None) -> BtfSet:
        """Blobs named ``vmlinux``/``md_mod`` (sysfs) or ``*.btf`` / ``*.btf.zst`` (captured).

        A module missing from ``root`` is looked up in the ``fallback`` directories (split BTF
        on the same vmlinux); by default, for /sys/kernel/btf, the DWARF-made cache of the
        running release (:func:`mdtrace.kernel.dwarf_btf.cache_dir`).
        """
        root = Path(root)
        vm = find_blob(root, "vmlinux")
        if vm is None:
            raise EnvironmentProblem(
                f"{root}/vmlinux: no kernel BTF (needs CONFIG_DEBUG_INFO_BTF=y; mdtrace reads "
                "struct offsets from it; use a kernel built with BTF)")
        if fallback is None:
            from mdtrace.kernel.dwarf_btf import cache_dir

            fallback = [cache_dir()] if root == SYS_BTF else []
        base = load_blob(vm)
        mods: dict[str, Btf] = {}
        dwarf: dict[str, str] = {}
        for name in MODULES:
            for d in (root, *map(Path, fallback)):
                p = find_blob(d, name)
                if p is None:
                    continue
                try:
                    mods[name] = load_blob(p, base=base)
                except BtfError:
                    continue
                if d != root:
                    dwarf[name] = str(p)
                break
        return cls(base, mods, str(root), dwarf)

    def get(self, module: str) -> Btf | None:
        return self.vmlinux if module == "vmlinux" else self.modules.get(module)


def find_blob(root: Path, name: str) -> Path | None:
    """The BTF blob of ``name`` under ``root``: as /sys/kernel/btf names it, or captured /
    DWARF-made (``.btf``, ``.btf.zst``); the one rule doctor and the loader share."""
    for cand in (root / name, root / f"{name}.btf", root / f"{name}.btf.zst"):
        if cand.is_file():
            return cand
    return None


@dataclass
class KernelOffsets:
    """Everything the BPF C and the decoder need to know about one kernel's layout."""

    defines: dict[str, int]
    flag_table: FlagTable
    missing: list[str]          # optional fields/modules not found (probes switched off)
    modules: list[str]          # module BTF found
    from_dwarf: list[str] = field(default_factory=list)  # of those, made from -dbg DWARF

    def cflags(self) -> list[str]:
        return [f"-D{k}={v}" for k, v in sorted(self.defines.items())]


def compute_offsets(btfs: BtfSet) -> KernelOffsets:
    """Offsets and enum values for the BPF C; EnvironmentProblem when md_mod BTF is missing."""
    if "md_mod" not in btfs.modules:
        raise EnvironmentProblem(
            f"{btfs.where}/md_mod: no BTF for the md module (load it: 'modprobe md_mod "
            "raid456'; kernel needs CONFIG_DEBUG_INFO_BTF_MODULES=y, 5.11+; without it, make "
            "the module BTF from the kernel's -dbg package: 'python3 -m "
            "mdtrace.kernel.dwarf_btf', see 'mdtrace doctor')")
    defines: dict[str, int] = {}
    missing: list[str] = []
    for define, module, struct_name, path, required in FIELDS:
        btf = btfs.get(module)
        got = btf.member(struct_name, path) if btf is not None else None
        if got is None:
            if required:
                raise EnvironmentProblem(
                    f"BTF of {module}: struct {struct_name} has no member {path!r} (kernel "
                    "layout mdtrace does not know; please report with 'uname -r')")
            missing.append(f"{module}:{struct_name}.{path}")
            defines[define] = -1
            continue
        defines[define] = got[0]
    md = btfs.modules["md_mod"]
    # md_unregister_thread: 6.1 (threadp), 6.7+ (mddev, threadp); mddev_suspend: 6.1 void,
    # 6.7+ int.  Static functions may lack BTF when inlined: assume the 6.7+ forms then only
    # if the layout says 6.7+ (suspend_mutex exists).
    new_api = md.member("mddev", "suspend_mutex") is not None
    unreg = md.func_signature("md_unregister_thread")
    defines["UNREGISTER_NARGS"] = unreg[0] if unreg else (2 if new_api else 1)
    susp = md.func_signature("mddev_suspend")
    defines["MDDEV_SUSPEND_RETURNS_INT"] = int(susp[1] > 0) if susp else int(new_api)
    rec = md.enum("recovery_flags") or md.enum_containing("MD_RECOVERY_RUNNING")
    mdf = md.enum("mddev_flags") or md.enum_containing("MD_ARRAY_FIRST_USE")
    fb_rec, fb_mdf = fallback_tables(_release_guess(btfs))
    # enumerators are MD_RECOVERY_x, plus MD_RESYNCING_REMOTE: canonical names drop the prefix
    rec = {k.removeprefix("MD_RECOVERY_").removeprefix("MD_"): v for k, v in (rec or {}).items()}
    table = FlagTable.from_enums(rec, mdf or {})
    if not rec:
        table.recovery = fb_rec
        missing.append("md_mod:enum recovery_flags (using per-version table)")
    if not mdf:
        table.mddev = fb_mdf
        missing.append("md_mod:enum mddev_flags (using per-version table)")
    for name in KERNEL_REC_BITS:
        defines[f"REC_{name}"] = table.recovery.get(name, 63)
    for mod in ("raid456", "dm_mod", "dm_raid"):
        have = int(mod in btfs.modules)
        defines[f"HAVE_{mod.upper()}"] = have
        if not have:
            missing.append(f"{mod}: no BTF (module not loaded?)")
    defines["HAVE_SUSPEND_MUTEX"] = int(defines["MDDEV_SUSPEND_MUTEX"] >= 0)
    dm_ok = all(defines[k] >= 0 for k in ("DM_TARGET_TABLE", "DM_TABLE_MD", "MAPPED_DEVICE_DISK",
                                            "MAPPED_DEVICE_NAME", "RAID_SET_TI", "RAID_SET_MD"))
    defines["HAVE_DM_NAMES"] = int(dm_ok)
    defines["HAVE_R5CONF"] = int(defines["R5CONF_RESHAPE_PROGRESS"] >= 0
                                 and defines["R5CONF_RESHAPE_SAFE"] >= 0)
    return KernelOffsets(defines, table, missing, sorted(btfs.modules), sorted(btfs.from_dwarf))


def _release_guess(btfs: BtfSet) -> str:
    """Fallback tables need a release; BTF does not carry one, so guess from layout."""
    md = btfs.modules.get("md_mod")
    if md is not None and md.member("mddev", "suspend_mutex") is not None:
        return "6.7"
    return "6.1"


def offsets_for_running_kernel(root: str | Path = SYS_BTF) -> KernelOffsets:
    return compute_offsets(BtfSet.from_dir(root))


def flag_table_for(release: str, btf_root: str | None = None) -> FlagTable:
    """The flag tables of kernel ``release``: from BTF when it is the running kernel (or
    ``btf_root`` is given) and its md_mod BTF holds the enums, else the per-version fallback.

    BTF first because a release number does not tell the layout: 6.12.117 carries 6.18's
    LAZY_RECOVER through stable, which the 6.11 fallback table lacks.
    """
    got = _btf_flag_bits(release, btf_root)
    if got is not None:
        return FlagTable(dict(got[0]), dict(got[1]))
    return FlagTable.for_release(release)


@functools.lru_cache(maxsize=16)
def _btf_flag_bits(release: str, btf_root: str | None
                   ) -> tuple[dict[str, int], dict[str, int]] | None:
    """(recovery, mddev) bit positions read from BTF, or None; cached per (release, root)
    because every sysfs/snapshot source asks and parsing md_mod BTF takes ~50 ms."""
    if btf_root is None:
        if not release or release != platform.release():
            return None
        btf_root = str(SYS_BTF)
    try:
        off = compute_offsets(BtfSet.from_dir(btf_root))
    except Exception:  # noqa: BLE001 - EnvironmentProblem, BtfError, a damaged blob: this is
        return None    # a fallback path, the per-version table answers then
    if any("per-version table" in m for m in off.missing):
        return None
    return off.flag_table.recovery, off.flag_table.mddev
