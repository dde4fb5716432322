"""Offsets, recovery flags and prototypes from the BTF of every kernel in tests/data/btf.

5.10.0-32 and 7.2.13+deb14 were made offline from the Debian packages
(tests/data/btf/extract_from_debs.py); 5.10's modules build no BTF, so its md/dm module BTF is
the pahole-from-DWARF kind mdtrace.kernel.dwarf_btf makes (``dwarf/``).  Every value below was
read from the blobs (``bpftool -B vmlinux.btf btf dump file md_mod.btf format c``) and the
7.2.13 source (``linux-source-7.2``), not from release numbers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mdtrace.errors import EnvironmentProblem
from mdtrace.kernel.btf import load_blob
from mdtrace.kernel.environment import Paths, check_btf
from mdtrace.kernel.flags import Recovery
from mdtrace.kernel.offsets import FIELDS, BtfSet, compute_offsets

DATA = Path(__file__).parent / "data" / "btf"
K510 = DATA / "5.10.0-32-amd64"
K61 = DATA / "6.1.0-56-amd64"
K612 = DATA / "6.12.117+deb12-amd64"
K72 = DATA / "7.2.13+deb14-amd64"
ALL = [K510, K61, K612, K72]


def btfset(kdir: Path) -> BtfSet:
    """The kernel's BtfSet; 5.10 takes its module BTF from dwarf/ as /sys would from the cache."""
    return BtfSet.from_dir(kdir, fallback=[kdir / "dwarf"])


@pytest.mark.parametrize("kdir", ALL, ids=lambda p: p.name)
def test_every_required_field_resolves(kdir: Path) -> None:
    off = compute_offsets(btfset(kdir))
    for define, _mod, _struct, _path, required in FIELDS:
        if required:
            assert off.defines[define] >= 0, define
    assert off.modules == ["dm_mod", "dm_raid", "md_mod", "raid456"]
    assert off.defines["HAVE_DM_NAMES"] == 1 and off.defines["HAVE_R5CONF"] == 1
    assert not [m for m in off.missing if "recovery_flags" in m or "mddev_flags" in m]


# (kernel, enum recovery_flags as BTF gives it, without the MD_RECOVERY_ / MD_ prefix)
RECOVERY = {
    K510: {"RUNNING": 0, "SYNC": 1, "RECOVER": 2, "INTR": 3, "DONE": 4, "NEEDED": 5,
           "REQUESTED": 6, "CHECK": 7, "RESHAPE": 8, "FROZEN": 9, "ERROR": 10, "WAIT": 11,
           "RESYNCING_REMOTE": 12},
    K61: {"RUNNING": 0, "SYNC": 1, "RECOVER": 2, "INTR": 3, "DONE": 4, "NEEDED": 5,
          "REQUESTED": 6, "CHECK": 7, "RESHAPE": 8, "FROZEN": 9, "ERROR": 10, "WAIT": 11,
          "RESYNCING_REMOTE": 12},
    # 0476d09c36a8 (6.11) reordered; c951ccf0bf2d's LAZY_RECOVER (6.18) is in 6.12.117 too
    K612: {"NEEDED": 0, "RUNNING": 1, "INTR": 2, "DONE": 3, "FROZEN": 4, "WAIT": 5, "ERROR": 6,
           "SYNC": 7, "REQUESTED": 8, "CHECK": 9, "RECOVER": 10, "RESHAPE": 11,
           "RESYNCING_REMOTE": 12, "LAZY_RECOVER": 13},
    # af9c40ff5aed (7.0) removed ERROR: everything after WAIT moved down one
    K72: {"NEEDED": 0, "RUNNING": 1, "INTR": 2, "DONE": 3, "FROZEN": 4, "WAIT": 5, "SYNC": 6,
          "REQUESTED": 7, "CHECK": 8, "RECOVER": 9, "RESHAPE": 10, "RESYNCING_REMOTE": 11,
          "LAZY_RECOVER": 12},
}


@pytest.mark.parametrize("kdir", ALL, ids=lambda p: p.name)
def test_recovery_flags_come_from_btf(kdir: Path) -> None:
    off = compute_offsets(btfset(kdir))
    assert off.flag_table.recovery == RECOVERY[kdir]
    rec = RECOVERY[kdir]
    for name in ("RUNNING", "INTR", "DONE", "NEEDED", "FROZEN", "WAIT", "RESHAPE"):
        assert off.defines[f"REC_{name}"] == rec[name], name
    # the same kernel word decodes to the same canonical flags whatever the bit layout
    raw = (1 << rec["RUNNING"]) | (1 << rec["RESHAPE"]) | (1 << rec["DONE"])
    assert off.flag_table.recovery_canon(raw) == Recovery.RUNNING | Recovery.RESHAPE | Recovery.DONE


def test_72_has_no_error_flag_and_decodes_its_bit_6_as_sync() -> None:
    t72 = compute_offsets(btfset(K72)).flag_table
    t612 = compute_offsets(btfset(K612)).flag_table
    assert "ERROR" not in t72.recovery
    assert t72.recovery_canon(1 << 6) == Recovery.SYNC          # 6.12: bit 6 is ERROR
    assert t612.recovery_canon(1 << 6) == Recovery.ERROR
    assert t72.recovery_canon(1 << 12) == Recovery.LAZY_RECOVER
    # canonical ERROR cannot be expressed on 7.2 (a synthetic scenario asking for it gets 0)
    assert t72.recovery_raw(Recovery.ERROR) == 0


def test_mddev_flags_from_btf_include_the_new_names() -> None:
    t72 = compute_offsets(btfset(K72)).flag_table
    t510 = compute_offsets(btfset(K510)).flag_table
    assert t72.mddev["DM_SUSPENDING"] == 15 and t72.mddev["DO_DELETE"] == 10
    assert t510.mddev["ALLOW_SB_UPDATE"] == 8 and "DELETED" not in t510.mddev
    from mdtrace.kernel.flags import MddevFlag, mddev_names

    assert mddev_names(t72.mddev_canon(1 << 15)) == ["DM_SUSPENDING"]
    assert t72.mddev_canon(1 << 4) == MddevFlag.CLUSTER_RESYNC_LOCKED


# (UNREGISTER_NARGS, MDDEV_SUSPEND_RETURNS_INT, HAVE_SUSPEND_MUTEX): read from the prototypes
PROTOS = {K510: (1, 0, 0), K61: (1, 0, 0), K612: (2, 1, 1), K72: (2, 1, 1)}


@pytest.mark.parametrize("kdir", ALL, ids=lambda p: p.name)
def test_prototypes_come_from_btf(kdir: Path) -> None:
    d = compute_offsets(btfset(kdir)).defines
    assert (d["UNREGISTER_NARGS"], d["MDDEV_SUSPEND_RETURNS_INT"],
            d["HAVE_SUSPEND_MUTEX"]) == PROTOS[kdir]


def test_72_source_changes_visible_in_btf() -> None:
    """The 7.x changes docs/kernels.md describes, as the blobs show them."""
    md = {k: btfset(k).modules["md_mod"] for k in ALL}
    # md_done_sync(mddev, blocks[, ok]): 7.0 dropped ok (2a5d4549a28d)
    assert md[K612].func_signature("md_done_sync") == (3, 0)
    assert md[K72].func_signature("md_done_sync") == (2, 0)
    # md_wakeup_thread became a macro over __md_wakeup_thread (0dc76205549b), 6.12.117 too
    assert md[K61].has_func("md_wakeup_thread") and not md[K61].has_func("__md_wakeup_thread")
    for k in (K612, K72):
        assert md[k].has_func("__md_wakeup_thread") and not md[k].has_func("md_wakeup_thread")
    # md_finish_sync (8ff59a72478d, 7.0) is static and inlined into md_do_sync: nothing to probe
    assert not md[K72].has_func("md_finish_sync")
    # (the guest's capture does not list it; kallsyms has no md_finish_sync of any module)
    assert not any(ln.split()[2].split(".")[0] == "md_finish_sync"
                   for ln in (K72 / "kallsyms.txt").read_text().splitlines())
    # recovery_cp -> resync_offset (907a99c314a5, 6.17; in 6.12.117 through stable)
    for k, new in ((K510, False), (K61, False), (K612, True), (K72, True)):
        assert (md[k].member("mddev", "resync_offset") is not None) == new, k.name
        assert (md[k].member("mddev", "recovery_cp") is None) == new, k.name
    # personality name moved into md_submodule_head (6.15)
    assert md[K72].member("md_personality", "head.name") is not None
    assert md[K72].member("md_personality", "name") is None
    assert md[K612].member("md_personality", "name") is not None


def test_510_modules_have_no_btf_of_their_own() -> None:
    assert sorted((K510 / "missing_btf").read_text().split()) == [
        "dm_mod", "dm_raid", "md_mod", "raid1", "raid456"]
    assert not list(K510.glob("md_mod.btf*"))
    cfg = (K510 / "config.txt").read_text()
    assert "CONFIG_DEBUG_INFO_BTF=y" in cfg and "DEBUG_INFO_BTF_MODULES" not in cfg
    # without the DWARF-made blobs: the clear error that names the way out
    with pytest.raises(EnvironmentProblem, match="mdtrace.kernel.dwarf_btf"):
        compute_offsets(BtfSet.from_dir(K510, fallback=[]))
    s = btfset(K510)
    assert sorted(s.from_dwarf) == ["dm_mod", "dm_raid", "md_mod", "raid456"]
    assert compute_offsets(s).from_dwarf == ["dm_mod", "dm_raid", "md_mod", "raid456"]


def _fake_tree(tmp_path: Path, config: str, cached: bool) -> Paths:
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / "config-5.10.0-32-amd64").write_text(config)
    (tmp_path / "sys" / "kernel" / "btf").mkdir(parents=True)
    (tmp_path / "sys" / "kernel" / "btf" / "vmlinux").write_bytes(b"x")
    pkgs = tmp_path / "packages"
    pkgs.write_text("linux-image-5.10.0-32-amd64-dbg\ndwarves\n")
    cache = tmp_path / "cache"
    if cached:
        (cache / "5.10.0-32-amd64").mkdir(parents=True)
        (cache / "5.10.0-32-amd64" / "md_mod.btf").write_bytes(b"x")
    return Paths(proc=tmp_path / "proc", sys=tmp_path / "sys", boot=tmp_path / "boot",
                 release="5.10.0-32-amd64", lib_modules=tmp_path / "lib", package_list=pkgs,
                 btf_cache=cache)


def test_doctor_says_why_510_has_no_md_btf_and_what_to_install(tmp_path: Path) -> None:
    c = check_btf(_fake_tree(tmp_path, (K510 / "config.txt").read_text(), False), "md_mod")
    assert not c.ok
    assert "5.11" in c.detail and "CONFIG_DEBUG_INFO_BTF_MODULES" in c.detail
    assert c.fix.startswith("apt-get install linux-image-5.10.0-32-amd64-dbg dwarves")
    assert "python3 -m mdtrace.kernel.dwarf_btf" in c.fix
    assert "modprobe" not in c.fix           # loading the module cannot help here


def test_doctor_accepts_the_dwarf_made_btf(tmp_path: Path) -> None:
    paths = _fake_tree(tmp_path, (K510 / "config.txt").read_text(), True)
    c = check_btf(paths, "md_mod")
    assert c.ok and "DWARF" in c.detail
    # compressed, as the loader (offsets.find_blob) also accepts: doctor agrees with it
    made = paths.btf_cache / paths.release
    (made / "md_mod.btf").rename(made / "md_mod.btf.zst")
    c = check_btf(paths, "md_mod")
    assert c.ok and "md_mod.btf.zst" in c.detail


def test_doctor_on_a_module_btf_kernel_still_says_modprobe(tmp_path: Path) -> None:
    c = check_btf(_fake_tree(tmp_path, (K72 / "config.txt").read_text(), False), "md_mod")
    assert not c.ok and "dwarf_btf" not in c.fix


needs_tools = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("objcopy", "readelf", "zstd")),
    reason="binutils/zstd not installed")
HOST612 = Path("/usr/src/linux-headers-6.12.117+deb12-amd64/vmlinux")
MODS612 = Path("/lib/modules/6.12.117+deb12-amd64/kernel/drivers/md")


@needs_tools
@pytest.mark.skipif(not (HOST612.is_file() and MODS612.is_dir()),
                    reason="linux-headers/linux-image 6.12.117+deb12 not installed on this host")
def test_offline_extraction_equals_the_guest_capture(tmp_path: Path) -> None:
    """extract_from_debs.py on the installed 6.12.117 packages gives the guest's blobs."""
    out = tmp_path / "k"
    subprocess.run([sys.executable, str(DATA / "extract_from_debs.py"), "--release",
                    "6.12.117+deb12-amd64", "--vmlinux", str(HOST612), "--config",
                    str(K612 / "config.txt"), "--modules", str(MODS612), str(out)], check=True)
    import zstandard

    dec = zstandard.ZstdDecompressor()
    for blob in sorted(K612.glob("*.btf.zst")):
        got = dec.decompress((out / blob.name).read_bytes(), max_output_size=1 << 28)
        want = dec.decompress(blob.read_bytes(), max_output_size=1 << 28)
        assert got == want, blob.name

    def names(p: Path) -> set[str]:
        return {" ".join(ln.split()[2:]) for ln in p.read_text().splitlines() if "[" in ln}

    extra = {"md_finish_sync", "__md_wakeup_thread", "md_done_sync"}
    got = {n for n in names(out / "kallsyms.txt") if n.split()[0].split(".")[0] not in extra}
    assert got == names(K612 / "kallsyms.txt")
    tr = {ln for ln in (out / "traceable.txt").read_text().splitlines()
          if ln.split()[0].split(".")[0] not in extra}
    assert tr == {ln for ln in (K612 / "traceable.txt").read_text().splitlines() if "[" in ln}


def test_split_btf_of_the_dwarf_blobs_needs_the_510_base() -> None:
    """dwarf/ blobs are split BTF on 5.10's vmlinux (pointer members resolve through it)."""
    vm510 = load_blob(K510 / "vmlinux.btf.zst")
    md = load_blob(K510 / "dwarf" / "md_mod.btf.zst", base=vm510)
    got = md.member("mddev", "gendisk")
    assert got is not None and got[1] == 8
    assert md.member("mddev", "recovery") == (compute_offsets(btfset(K510))
                                              .defines["MDDEV_RECOVERY"], 8)
