"""BTF parser on real blobs: this host's vmlinux and the guest kernels' captured module BTF."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdtrace.errors import EnvironmentProblem
from mdtrace.kernel.btf import Btf, BtfError, load_blob
from mdtrace.kernel.flags import RECOVERY_6_11, RECOVERY_7_0, RECOVERY_PRE_6_11
from mdtrace.kernel.offsets import BtfSet, compute_offsets

DATA = Path(__file__).parent / "data" / "btf"
K61 = DATA / "6.1.0-56-amd64"
K612 = DATA / "6.12.117+deb12-amd64"
K510 = DATA / "5.10.0-32-amd64"   # module BTF only in dwarf/ (made by pahole from the -dbg DWARF)
K72 = DATA / "7.2.13+deb14-amd64"
HOST = Path("/sys/kernel/btf/vmlinux")

needs_guest_btf = pytest.mark.skipif(not (K61 / "md_mod.btf.zst").exists(),
                                     reason="captured guest BTF not in tests/data/btf")


@pytest.mark.skipif(not HOST.exists(), reason="this host has no /sys/kernel/btf/vmlinux")
def test_host_vmlinux_known_members() -> None:
    btf = Btf.load(HOST)
    assert btf.member("mutex", "owner") == (0, 8)          # atomic_long_t owner, first member
    off, size = btf.member("gendisk", "disk_name")
    assert size == 32                                       # char disk_name[DISK_NAME_LEN]
    # nested path through an embedded struct: bio.bi_iter.bi_sector (sector_t)
    sec = btf.member("bio", "bi_iter.bi_sector")
    it = btf.member("bio", "bi_iter")
    assert sec is not None and it is not None and sec[0] == it[0] and sec[1] == 8
    assert btf.member("task_struct", "comm")[1] == 16
    assert btf.member("task_struct", "no_such_member") is None
    assert btf.find("no_such_struct_xyz") is None


def test_anonymous_members_are_transparent() -> None:
    btf = Btf.load(HOST) if HOST.exists() else load_blob(K612 / "vmlinux.btf.zst")
    # struct page keeps most members inside anonymous unions/structs
    assert btf.member("page", "flags") == (0, 8)
    lru = btf.member("page", "lru")
    assert lru is not None and lru[0] == 8


@needs_guest_btf
@pytest.mark.parametrize("kdir,table", [(K510, RECOVERY_PRE_6_11), (K61, RECOVERY_PRE_6_11),
                                        (K612, RECOVERY_6_11), (K72, RECOVERY_7_0)],
                         ids=lambda x: x.name if isinstance(x, Path) else "")
def test_recovery_enum_matches_the_tables(kdir: Path, table: dict[str, int]) -> None:
    vm = load_blob(kdir / "vmlinux.btf.zst")
    md_blob = kdir / "md_mod.btf.zst"
    md = load_blob(md_blob if md_blob.exists() else kdir / "dwarf" / "md_mod.btf.zst", base=vm)
    enum = md.enum_containing("MD_RECOVERY_RUNNING")
    assert enum is not None
    got = {k.removeprefix("MD_RECOVERY_"): v for k, v in enum.items()}
    for name, bit in table.items():
        if name == "RESYNCING_REMOTE":
            assert enum["MD_RESYNCING_REMOTE"] == bit
        else:
            assert got[name] == bit, name


@needs_guest_btf
def test_offsets_differ_between_61_and_612() -> None:
    o61 = compute_offsets(BtfSet.from_dir(K61))
    o612 = compute_offsets(BtfSet.from_dir(K612))
    # measured in vm-notes.md: recovery bits moved in 6.11, struct mddev layout shifted
    assert o61.defines["REC_NEEDED"] == 5 and o612.defines["REC_NEEDED"] == 0
    assert o61.defines["REC_DONE"] == 4 and o612.defines["REC_DONE"] == 3
    assert o61.defines["MDDEV_RESHAPE_POS"] != o612.defines["MDDEV_RESHAPE_POS"]
    # suspend_mutex exists from 6.7; md_unregister_thread gained the mddev argument in 6.7
    assert o61.defines["HAVE_SUSPEND_MUTEX"] == 0 and o612.defines["HAVE_SUSPEND_MUTEX"] == 1
    assert o61.defines["UNREGISTER_NARGS"] == 1 and o612.defines["UNREGISTER_NARGS"] == 2
    assert o61.defines["MDDEV_SUSPEND_RETURNS_INT"] == 0
    assert o612.defines["MDDEV_SUSPEND_RETURNS_INT"] == 1
    for o in (o61, o612):
        assert o.defines["HAVE_DM_NAMES"] == 1
        assert o.defines["RAID_SET_MD"] > 0          # mddev embedded inside struct raid_set
        assert o.flag_table.recovery["RESYNCING_REMOTE"] == 12
    assert o612.flag_table.recovery_canon(1 << 3) == o61.flag_table.recovery_canon(1 << 4)


@needs_guest_btf
def test_dm_raid_split_btf_resolves_base_types() -> None:
    vm = load_blob(K612 / "vmlinux.btf.zst")
    dm = load_blob(K612 / "dm_raid.btf.zst", base=vm)
    md_off, md_size = dm.member("raid_set", "md")
    assert md_size > 1000                              # the whole struct mddev, by value
    assert dm.member("raid_set", "md.recovery") is not None


def test_missing_md_btf_is_a_clear_environment_problem(tmp_path: Path) -> None:
    if HOST.exists():
        (tmp_path / "vmlinux").write_bytes(HOST.read_bytes())
    else:
        (tmp_path / "vmlinux.btf.zst").write_bytes((K612 / "vmlinux.btf.zst").read_bytes())
    with pytest.raises(EnvironmentProblem, match="md_mod"):
        compute_offsets(BtfSet.from_dir(tmp_path))
    with pytest.raises(EnvironmentProblem, match="no kernel BTF"):
        BtfSet.from_dir(tmp_path / "nowhere")


def test_not_btf_rejected(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(b"\0" * 64)
    with pytest.raises(BtfError, match="bad magic"):
        Btf.load(p)
