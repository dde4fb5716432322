"""diagnose's kernel-state stage (sources/snapshot/kcore.py): a synthetic ELF core built here,
laid out with the REAL struct offsets of the committed 6.1 and 6.12 BTF blobs
(tests/data/btf/<kernel>/), a fake kallsyms, and a fixture sysfs / proc tree."""

from __future__ import annotations

import errno
import json
import struct
from pathlib import Path

import pytest

from mdtrace.cli import main
from mdtrace.events import check
from mdtrace.frontends.report.build import build_diagnosis
from mdtrace.kernel.flags import Recovery, recovery_names
from mdtrace.kernel.offsets import BtfSet, compute_offsets
from mdtrace.sources.snapshot import collect
from mdtrace.sources.snapshot import kcore as K

BTF = Path(__file__).parent / "data" / "btf"
KERNELS = ("6.1.0-56-amd64", "6.12.117+deb12-amd64")
MOD = 0xFFFFFFFFC0A00000          # module data (all_mddevs)
HEAP = 0xFFFF888100000000         # direct map (kmalloc'd mddevs, gendisks, dm structs)
HEAD = MOD + 0x100
GAP = b"\xee" * 64                # file bytes between segments: never to be returned
_BTFS: dict[str, BtfSet] = {}


def btfs(kernel: str) -> BtfSet:
    if kernel not in _BTFS:
        _BTFS[kernel] = BtfSet.from_dir(BTF / kernel, fallback=[BTF / kernel / "dwarf"])
    return _BTFS[kernel]


def load(btf_dir: Path) -> BtfSet:
    """The tree's BTF (symlinks to one kernel's committed blobs), parsed once per kernel."""
    return btfs((btf_dir / "vmlinux.btf.zst").resolve().parent.name)


def state(sys_root: Path, proc: Path, **kw) -> K.KernelStateResult:  # noqa: ANN003
    return K.read_kernel_state(sys_root, proc, load_btf=load, **kw)


class Mem:
    """Segments of kernel memory, written as an ELF64 core like /proc/kcore."""

    def __init__(self) -> None:
        self.segs: dict[int, bytearray] = {MOD: bytearray(0x1000), HEAP: bytearray(0x10000)}

    def put(self, addr: int, data: bytes) -> None:
        for base, buf in self.segs.items():
            if base <= addr and addr + len(data) <= base + len(buf):
                buf[addr - base:addr - base + len(data)] = data
                return
        raise AssertionError(f"{addr:#x} outside the fake memory")

    def u64(self, addr: int, v: int) -> None:
        self.put(addr, struct.pack("<Q", v))

    def s32(self, addr: int, v: int) -> None:
        self.put(addr, struct.pack("<i", v))

    def core(self) -> bytes:
        segs = sorted(self.segs.items())
        nph = len(segs) + 1                       # a PT_NOTE first, as kcore has
        off = 64 + 56 * nph + len(GAP)
        phdrs = [struct.pack("<IIQQQQQQ", 4, 0, off, 0, 0, 16, 16, 0)]
        body = GAP + b"\0" * 16 + GAP
        off += 16 + len(GAP)
        for base, buf in segs:
            phdrs.append(struct.pack("<IIQQQQQQ", K.PT_LOAD, 7, off, base, 0, len(buf),
                                     len(buf), 0x1000))
            body += bytes(buf) + GAP
            off += len(buf) + len(GAP)
        ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + b"\0" * 9, 4, 62, 1,
                           0, 64, 0, 0, 64, 56, nph, 0, 0, 0)
        return ehdr + b"".join(phdrs) + body


def build(kernel: str, *, md0: dict | None = None, dm: dict | None = None,
          links: str = "ok", dm_via: str = "list") -> tuple[Mem, K.Layout]:
    """md0 (a gendisk) and dm-6 (an mddev inside a struct raid_set, gendisk NULL), every field
    at the offset this kernel's BTF gives.  ``dm_via``: "list" puts dm-6 on all_mddevs too
    (no real kernel does: dm_registry.py); "index" leaves it off, reachable only through dm's
    name index (the rb-tree or 5.10's hash buckets at DM_INDEX), next to a linear device."""
    b = btfs(kernel)
    lay = K.layout(b)
    table = compute_offsets(b).flag_table
    o = lay.off
    m = Mem()
    a = HEAP + 0x1000
    rs = HEAP + 0x5000
    bm = rs + o["RAID_SET_MD"]
    ti, dmt, mdev = HEAP + 0x9000, HEAP + 0x9400, HEAP + 0x9800
    disk_a, disk_b, ref_data = HEAP + 0xA000, HEAP + 0xA400, HEAP + 0xB000
    for addr, vals in ((a, md0 or {}), (bm, dm or {})):
        rec = vals.get("rec", 0)
        m.u64(addr + o["MDDEV_RECOVERY"], table.recovery_raw(int(rec)))
        m.s32(addr + o["MDDEV_RO"], vals.get("ro", 0))
        m.s32(addr + o["MDDEV_SUSPENDED"], vals.get("suspended", 0))
        m.u64(addr + o["MDDEV_SYNC_THREAD"], HEAP + 0xC000 if vals.get("sync_thread") else 0)
        m.u64(addr + o["MDDEV_RESHAPE_POS"], vals.get("reshape", (1 << 64) - 1))
        m.u64(addr + o["MDDEV_CURR_RESYNC"], vals.get("curr_resync", 0))
        m.u64(addr + o["MDDEV_RESYNC_MAX"], vals.get("resync_max", 2097152))
        m.u64(addr + o["MDDEV_SB_FLAGS"], vals.get("sb_flags", 0))
        m.s32(addr + o["MDDEV_LEVEL"], vals.get("level", 5))
        m.s32(addr + o["MDDEV_RECOVERY_ACTIVE"], vals.get("recovery_active", 0))
        m.s32(addr + o["MDDEV_PENDING_WRITES"], vals.get("pending_writes", 0))
        ref = addr + o["MDDEV_ACTIVE_IO"]
        m.u64(ref + o["PERCPU_REF_COUNT_PTR"], HEAP + 0xD000 | vals.get("ref_bits", 0))
        m.u64(ref + o["PERCPU_REF_DATA"], ref_data)
        wp = addr + o["MDDEV_WRITES_PENDING"]
        m.u64(wp + o["PERCPU_REF_COUNT_PTR"], HEAP + 0xD100)
        m.u64(wp + o["PERCPU_REF_DATA"], ref_data + 0x100)
    m.u64(ref_data + o["PERCPU_REF_DATA_COUNT"], (md0 or {}).get("ref_count", 0))
    m.u64(a + o["MDDEV_GENDISK"], disk_a)
    m.put(disk_a + o["GENDISK_DISK_NAME"], b"md0\0")
    m.u64(bm + o["MDDEV_GENDISK"], 0)
    m.u64(rs + o["RAID_SET_TI"], ti)
    m.u64(ti + o["DM_TARGET_TABLE"], dmt)
    m.u64(dmt + o["DM_TABLE_MD"], mdev)
    m.u64(mdev + o["MAPPED_DEVICE_DISK"], disk_b)
    m.put(mdev + o["MAPPED_DEVICE_NAME"], b"253:6\0")
    m.put(disk_b + o["GENDISK_DISK_NAME"], b"dm-6\0")
    la, lb = a + o["MDDEV_ALL_MDDEVS"], bm + o["MDDEV_ALL_MDDEVS"]
    nxt, prv = o["LIST_HEAD_NEXT"], o["LIST_HEAD_PREV"]
    if dm_via == "index":
        _dm_index(m, b, ti, dmt, mdev, rs)
        m.u64(HEAD + nxt, la)
        m.u64(HEAD + prv, la)
        m.u64(la + nxt, HEAD)
        m.u64(la + prv, HEAD)
        return m, lay
    order = {"ok": (la, lb, HEAD), "cycle": (la, lb, la), "bad": (la, lb, 0xDEAD000000000100)}
    first, second, after = order[links]
    m.u64(HEAD + nxt, first)
    m.u64(HEAD + prv, lb)
    m.u64(first + nxt, second)
    m.u64(first + prv, HEAD)
    m.u64(second + nxt, after)
    m.u64(second + prv, first)
    return m, lay


DM_INDEX = MOD + 0x400            # name_rb_tree, or _name_buckets[64] (0x400 bytes)


def _dm_index(m: Mem, b: BtfSet, ti: int, dmt: int, mdev: int, rs: int) -> None:
    """dm's name index with two cells: the raid LV (dm-6, its table's one target a "raid"
    with private = the raid_set) and a linear device, whose target must be skipped."""
    from mdtrace.sources.snapshot.dm_registry import dm_layout

    d = dm_layout(b)
    o = d.off
    cells = (HEAP + 0xE000, HEAP + 0xE200)
    lin_md, lin_table, lin_ti = HEAP + 0xF000, HEAP + 0xF200, HEAP + 0xF400
    t_raid, t_lin, names = HEAP + 0xE400, HEAP + 0xE500, HEAP + 0xE600
    m.put(names, b"raid\0")
    m.put(names + 16, b"linear\0")
    m.u64(t_raid + o["TARGET_TYPE_NAME"], names)
    m.u64(t_lin + o["TARGET_TYPE_NAME"], names + 16)
    for cell, md, table, target, ttype, priv in ((cells[0], mdev, dmt, ti, t_raid, rs),
                                                 (cells[1], lin_md, lin_table, lin_ti, t_lin,
                                                  HEAP + 0xF600)):
        m.u64(cell + o["HASH_CELL_MD"], md)
        m.u64(md + o["MAPPED_DEVICE_MAP"], table)
        m.put(table + o["DM_TABLE_NUM_TARGETS"], struct.pack("<I", 1))
        m.u64(table + o["DM_TABLE_TARGETS"], target)
        m.u64(target + o["DM_TARGET_TYPE"], ttype)
        m.u64(target + o["DM_TARGET_PRIVATE"], priv)
    if d.index == "tree":   # root -> raid cell, its left child the linear one
        n0, n1 = (c + o["HASH_CELL_NAME_NODE"] for c in cells)
        m.u64(DM_INDEX, n0)
        m.u64(n0 + o["RB_NODE_LEFT"], n1)
        return
    for bucket in range(64):   # all empty but bucket 5: head -> raid -> linear -> head
        head = DM_INDEX + 16 * bucket
        m.u64(head, head)
        m.u64(head + 8, head)
    head = DM_INDEX + 16 * 5
    l0, l1 = (c + o["HASH_CELL_NAME_LIST"] for c in cells)
    m.u64(head, l0)
    m.u64(l0, l1)
    m.u64(l1, head)


def tree(tmp: Path, kernel: str, mem: Mem | None, *, ksym: str | None = None,
         btf: tuple[str, ...] = ("vmlinux", "md_mod", "dm_mod", "dm_raid")) -> tuple[Path, Path]:
    sys_root, proc = tmp / "sys", tmp / "proc"
    (sys_root / "kernel" / "btf").mkdir(parents=True, exist_ok=True)
    (sys_root / "block").mkdir(exist_ok=True)
    for name in btf:
        link = sys_root / "kernel" / "btf" / f"{name}.btf.zst"
        blob = BTF / kernel / f"{name}.btf.zst"
        if not blob.exists():                       # 5.10: module BTF made from DWARF
            blob = BTF / kernel / "dwarf" / f"{name}.btf.zst"
        if not link.exists():
            link.symlink_to(blob)
    (proc / "sys" / "kernel").mkdir(parents=True, exist_ok=True)
    (proc / "sys" / "kernel" / "osrelease").write_text(kernel + "\n")
    (proc / "uptime").write_text("1000.00 1.00\n")
    (proc / "self").mkdir(exist_ok=True)
    (proc / "kallsyms").write_text(
        "ffffffffc0a02000 t md_check_recovery\t[md_mod]\n"
        + (ksym if ksym is not None else f"{HEAD:016x} d all_mddevs\t[md_mod]\n"))
    if mem is not None:
        (proc / "kcore").write_bytes(mem.core())
    return sys_root, proc


DONE_SUSPENDED = {"rec": Recovery.RUNNING | Recovery.SYNC | Recovery.DONE, "suspended": 1,
                  "sync_thread": True, "curr_resync": 2097152, "sb_flags": 1 << 2,
                  "ref_bits": K.PERCPU_REF_ATOMIC | K.PERCPU_REF_DEAD, "ref_count": 2,
                  "recovery_active": 0, "pending_writes": 1}


# -- decoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_two_mddevs_decoded_with_the_real_offsets(tmp_path: Path, kernel: str) -> None:
    mem, lay = build(kernel, md0=DONE_SUSPENDED, dm={"ro": 1, "rec": Recovery.FROZEN,
                                                       "reshape": 4096, "level": 5})
    res = state(*tree(tmp_path, kernel, mem))
    assert res.ok and res.stopped == "", res.reason
    by = res.by_name()
    assert sorted(by) == ["dm-6", "md0"]
    a, d = by["md0"], by["dm-6"]
    assert (a.kind, a.dm_name, d.kind, d.dm_name) == ("md", "", "dm-raid", "253:6")
    assert res.table is not None
    view = a.to_json(res.table, res.sb_names)
    assert view["recovery"] == ["RUNNING", "DONE", "SYNC"]
    assert view["sb_flags"] == ["CHANGE_PENDING"]
    assert (a.suspended, a.sync_thread, a.ro, a.reshape_position) == (1, True, 0, None)
    assert a.active_io == K.RefState("dead", 2)          # killed by mddev_suspend: counted
    assert a.writes_pending == K.RefState("percpu", None)  # spread over CPUs: no count
    assert (a.recovery_active, a.pending_writes, a.curr_resync) == (0, 1, 2097152)
    assert (d.ro, d.sync_thread, d.reshape_position, d.level) == (1, False, 4096, 5)
    assert d.to_json(res.table, res.sb_names)["recovery"] == ["FROZEN"]
    # no kernel pointer value leaves: every number is a word, a count or a sector
    assert view["sync_thread"] is True
    assert not [v for v in view.values() if isinstance(v, int) and not isinstance(v, bool)
                and v >= 1 << 47]


def test_the_two_kernels_really_differ_in_layout() -> None:
    l61, l612 = (K.layout(btfs(k)) for k in KERNELS)
    assert l61.off["MDDEV_RECOVERY"] == 456 and l612.off["MDDEV_RECOVERY"] == 488
    assert l61.off["MDDEV_ALL_MDDEVS"] != l612.off["MDDEV_ALL_MDDEVS"]
    assert l61.size["MDDEV_ACTIVE_IO"] == 16 and l61.size["MDDEV_RECOVERY_ACTIVE"] == 4


def test_walk_is_bounded_cycle_bad_pointer_limit(tmp_path: Path) -> None:
    kernel = KERNELS[1]
    for links, want in (("cycle", "loops after 2 entries"), ("bad", "bad pointer")):
        mem, _ = build(kernel, links=links)
        res = state(*tree(tmp_path / links, kernel, mem))
        assert res.ok and want in res.stopped, res.stopped
        assert sorted(res.by_name()) == ["dm-6", "md0"]   # what was read is kept
    mem, _ = build(kernel)
    res = state(*tree(tmp_path / "lim", kernel, mem), limit=1)
    assert "more than 1 mddevs" in res.stopped and [m.name for m in res.mddevs] == ["md0"]


def test_a_list_changing_under_the_walk_stops_it(tmp_path: Path) -> None:
    kernel = KERNELS[0]
    mem, lay = build(kernel)
    lb = HEAP + 0x5000 + lay.off["RAID_SET_MD"] + lay.off["MDDEV_ALL_MDDEVS"]
    mem.u64(lb + lay.off["LIST_HEAD_PREV"], HEAD)        # dm-6's prev no longer md0
    res = state(*tree(tmp_path, kernel, mem))
    assert "changed under the walk (entry 2)" in res.stopped
    assert [m.name for m in res.mddevs] == ["md0"]


# -- failure reasons ----------------------------------------------------------------------------


def _denied(_p: Path):  # noqa: ANN202
    raise PermissionError(errno.EPERM, "Operation not permitted")


def test_every_failure_is_one_line_with_its_reason(tmp_path: Path) -> None:
    k = KERNELS[0]
    mem, _ = build(k)

    def reason(name: str, **kw) -> str:  # noqa: ANN003
        opts = {x: kw.pop(x) for x in ("opener", "euid") if x in kw}
        mem_ = kw.pop("mem", mem)
        if "btf" not in kw:
            opts["load_btf"] = load
        res = K.read_kernel_state(*tree(tmp_path / name, k, mem_, **kw), **opts)
        assert not res.ok and res.mddevs == [] and "\n" not in res.reason
        return res.reason

    assert "not present" in reason("nokcore", mem=None)
    assert "needs root with CAP_SYS_RAWIO" in reason("user", opener=_denied, euid=1000)
    assert "CAP_SYS_RAWIO dropped" in reason("root", opener=_denied, euid=0)
    lock = tmp_path / "lock" / "sys" / "kernel" / "security"
    lock.mkdir(parents=True)
    (lock / "lockdown").write_text("none integrity [confidentiality]\n")
    assert "kernel lockdown (confidentiality" in reason("lock", opener=_denied, euid=0)
    assert "all_mddevs not in" in reason("nosym", ksym="")
    assert "zero addresses" in reason("hidden",
                                      ksym="0000000000000000 d all_mddevs\t[md_mod]\n")
    assert "md_mod" in reason("nobtf", btf=("vmlinux",))
    assert "outside" in reason("elsewhere", ksym="ffffffff81000000 d all_mddevs\t[md_mod]\n")
    bad = tmp_path / "notelf"
    tree(bad, k, None)
    (bad / "proc" / "kcore").write_bytes(b"not an elf file at all" * 10)
    res = K.read_kernel_state(bad / "sys", bad / "proc")
    assert "not an ELF core" in res.reason


def test_reader_never_reads_outside_the_segments(tmp_path: Path) -> None:
    mem, lay = build(KERNELS[1], md0=DONE_SUSPENDED)
    path = tmp_path / "kcore"
    path.write_bytes(mem.core())
    reads: list[tuple[int, int]] = []
    with open(path, "rb") as fh:
        core = K.Kcore(fh)
        real = core._pread

        def spy(n: int, off: int) -> bytes:
            reads.append((off, n))
            return real(n, off)

        core._pread = spy  # type: ignore[method-assign]
        addrs, why = K.walk(core, lay, HEAD)
        states = [K.read_mddev(core, lay, x) for x in addrs]
        assert why == "" and [s.name for s in states] == ["md0", "dm-6"]
        for addr, size in ((HEAP - 8, 8), (HEAP + 0x10000 - 4, 8), (MOD + 0x1000, 1),
                           (0xFFFF888200000000, 8), (HEAP, K.MAX_READ + 1), (0, 8)):
            with pytest.raises(K.BadAddress):
                core.read(addr, size)
    assert reads
    for off, n in reads:
        assert any(s.offset <= off and off + n <= s.offset + s.size for s in core.segments), \
            (off, n)
        assert n <= K.MAX_READ


# -- into the snapshot and the diagnosis ------------------------------------------------------


def md_sysfs(sys_root: Path, action: str = "resync") -> None:
    d = sys_root / "block" / "md0" / "md"
    d.mkdir(parents=True)
    for k, v in {"level": "raid5", "array_state": "active", "sync_action": action,
                 "sync_completed": "none", "degraded": "0", "raid_disks": "4",
                 "reshape_position": "none", "suspend_lo": "0", "suspend_hi": "0"}.items():
        (d / k).write_text(v + "\n")
    (sys_root / "block" / "md0" / "ro").write_text("0\n")


def md_threads(proc: Path) -> None:
    for pid, comm in ((951, "md0_raid5"), (952, "md0_resync")):
        td = proc / str(pid) / "task" / str(pid)
        td.mkdir(parents=True)
        (proc / str(pid) / "fd").mkdir()
        (proc / str(pid) / "cmdline").write_bytes(b"")
        (td / "stat").write_text(f"{pid} ({comm}) S 2 0 0 0 -1\n")
        (td / "wchan").write_text("md_thread")
        (td / "stack").write_text("[<0>] md_thread+0x12e/0x160 [md_mod]\n"
                                  "[<0>] kthread+0xd7/0x100\n")


@pytest.mark.parametrize("kernel", KERNELS)
def test_collect_overrides_the_sysfs_guess_and_the_engine_raises_f1(tmp_path: Path,
                                                                     kernel: str) -> None:
    mem, _ = build(kernel, md0=DONE_SUSPENDED)
    sys_root, proc = tree(tmp_path, kernel, mem)
    md_sysfs(sys_root)
    md_threads(proc)
    col = collect(sys_root, proc, dmsetup=None, kernel_log=None, kernel_state=state)
    (st_ev,) = [e for e in col.events if e.kind == "sysfs_state"]
    assert check(st_ev) is None                       # the arg schema knows the new args
    st = st_ev.state
    assert st is not None and st.rec & Recovery.DONE and st.suspended == 1 and st.sync_thread
    assert st_ev.args["state_source"] == "kcore" and st_ev.args["active_io"] == 2
    assert st_ev.args["active_io_mode"] == "dead" and "writes_pending" not in st_ev.args
    assert not any(n.startswith("kernel-internal state") for n in col.notes), col.notes
    model = build_diagnosis(col)
    (f1,) = [f for f in model.snapshot.findings if f.active]
    assert f1.code == "F1" and f1.array == "md0"
    assert "echo active > /sys/block/md0/md/array_state" in f1.remedy
    # the same tree without the stage: the sysfs guess has no DONE, no F1, and a note why
    col2 = collect(sys_root, proc, dmsetup=None, kernel_log=None)
    assert not [f for f in build_diagnosis(col2).snapshot.findings if f.active]
    assert any(n.startswith("kernel-internal state") and "--no-kernel-state" in n
               for n in col2.notes)


def test_not_suspended_done_is_not_f1_and_ro_is_f2(tmp_path: Path) -> None:
    kernel = KERNELS[1]
    for name, extra, want in (("busy", {"suspended": 0}, set()), ("ro", {"suspended": 0,
                                                                          "ro": 1}, {"F2"})):
        mem, _ = build(kernel, md0=DONE_SUSPENDED | extra)
        sys_root, proc = tree(tmp_path / name, kernel, mem)
        md_sysfs(sys_root)
        md_threads(proc)
        col = collect(sys_root, proc, dmsetup=None, kernel_log=None, kernel_state=state)
        got = {f.code for f in build_diagnosis(col).snapshot.findings if f.active}
        assert got == want, name


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["diagnose", *args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_diagnose_command_f1_from_the_core_and_json_kernel_state(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kernel = KERNELS[0]
    mem, _ = build(kernel, md0=DONE_SUSPENDED)
    sys_root, proc = tree(tmp_path, kernel, mem)
    md_sysfs(sys_root)
    md_threads(proc)
    roots = ["--sys-root", str(sys_root), "--proc-root", str(proc)]
    rc, out, err = _cli([*roots, "--format", "json"], capsys)
    assert rc == 1, err
    doc = json.loads(out)
    assert [f["code"] for f in doc["findings"]] == ["F1"]
    ks = doc["arrays"]["md0"]["kernel_state"]
    assert ks["read"] is True and "DONE" in ks["recovery"] and ks["suspended"] == 1
    assert 0 < ks["read_s"] < 60                  # the stage's own time (BTF parse included)
    assert ks["active_io"] == {"mode": "dead", "count": 2,
                               "meaning": "atomic mode: the real count"}
    rc, out, _ = _cli(roots, capsys)
    assert rc == 1 and "F1" in out and "Traceback" not in out
    rc, out, _ = _cli([*roots, "--format", "json", "--no-kernel-state"], capsys)
    doc = json.loads(out)
    assert rc == 0 and doc["findings"] == []
    off = doc["arrays"]["md0"]["kernel_state"]
    assert off.pop("read_s") >= 0 and off == {
        "read": False, "reason": "not requested (--no-kernel-state)"}
    (proc / "kcore").unlink()
    rc, out, _ = _cli([*roots, "--format", "json"], capsys)
    doc = json.loads(out)
    assert rc == 0 and "not present" in doc["arrays"]["md0"]["kernel_state"]["reason"]
    assert sum(n.startswith("kernel-internal state") for n in doc["notes"]) == 1


def test_a_damaged_core_is_a_reason_or_a_partial_read_never_an_exception(
        tmp_path: Path) -> None:
    """Bytes of the headers and of the memory overwritten at random (seeded): every result
    is a one-line reason, or mddevs read with values the event checks accept."""
    import random

    kernel = KERNELS[1]
    mem, _ = build(kernel, md0=DONE_SUSPENDED, dm={"ro": 1})
    sys_root, proc = tree(tmp_path, kernel, mem)
    good = (proc / "kcore").read_bytes()
    rng = random.Random(11)
    outcomes = {"reason": 0, "read": 0, "partial": 0}
    for _ in range(300):
        raw = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(0, 64 + 56 * 3) if rng.random() < 0.3 else \
                rng.randrange(len(raw))
            raw[at:at + 8] = rng.randbytes(8)
        (proc / "kcore").write_bytes(bytes(raw))
        res = state(sys_root, proc)
        if not res.ok:
            assert "\n" not in res.reason and res.mddevs == []
            outcomes["reason"] += 1
            continue
        outcomes["partial" if res.stopped else "read"] += 1
        md_sysfs_once = sys_root / "block" / "md0"
        if not md_sysfs_once.exists():
            md_sysfs(sys_root)
        col = collect(sys_root, proc, dmsetup=None, kernel_log=None, kernel_state=state)
        for ev in col.events:
            assert check(ev) is None, (ev.kind, check(ev))
        build_diagnosis(col)
    assert all(outcomes.values()), outcomes      # each kind of outcome was exercised


def test_dm_raid_mddev_named_through_raid_set_gives_f1_with_dmsetup_resume(
        tmp_path: Path) -> None:
    """dm-raid's mddev has no gendisk: the name comes through container_of(mddev, struct
    raid_set, md)->ti->table->md, and the array is the LV (dmsetup status) it matches."""
    kernel = KERNELS[0]
    mem, _ = build(kernel, dm=DONE_SUSPENDED | {"suspended": 0})
    sys_root, proc = tree(tmp_path, kernel, mem)
    d = sys_root / "block" / "dm-6" / "dm"
    d.mkdir(parents=True)
    (d / "name").write_text("vg-lv\n")
    (d / "suspended").write_text("1\n")
    for pid, comm in ((951, "mdX_raid5"), (952, "mdX_resync")):
        td = proc / str(pid) / "task" / str(pid)
        td.mkdir(parents=True)
        (td / "stat").write_text(f"{pid} ({comm}) S 2 0 0 0 -1\n")
        (td / "wchan").write_text("md_thread")
        (td / "stack").write_text("[<0>] md_thread+0x12e/0x160 [md_mod]\n")
    status = "vg-lv: 0 2097152 raid raid5_ls 3 AAA 2097152/2097152 resync 0 0 -\n"
    col = collect(sys_root, proc, dmsetup=lambda: (status, ""), kernel_log=None,
                  kernel_state=state)
    assert col.kernel_view["dm-6"]["read"] is True
    assert "DONE" in col.kernel_view["dm-6"]["recovery"]
    found = {f.code: f for f in build_diagnosis(col).snapshot.findings if f.active}
    assert set(found) == {"F1"} and found["F1"].array == "dm-6"
    assert "dmsetup resume vg-lv" in found["F1"].remedy, found["F1"].remedy


@pytest.mark.parametrize("kernel", ["5.10.0-32-amd64", *KERNELS, "7.2.13+deb14-amd64"])
def test_dm_raid_mddev_found_through_dms_name_index(tmp_path: Path, kernel: str) -> None:
    """A dm-raid mddev is never on all_mddevs: the reader finds it through dm's name index
    (5.10: _name_buckets, later: name_rb_tree; which one, from dm_mod's BTF), skips the
    linear device next to it, and decodes it like any mddev."""
    from mdtrace.sources.snapshot.dm_registry import dm_layout

    mem, _ = build(kernel, md0={"rec": Recovery.NONE}, dm_via="index",
                   dm=DONE_SUSPENDED | {"suspended": 0})
    sym = dm_layout(btfs(kernel)).root_symbol
    assert sym == ("_name_buckets" if kernel.startswith("5.10") else "name_rb_tree")
    sys_root, proc = tree(tmp_path, kernel, mem,
                          ksym=f"{HEAD:016x} d all_mddevs\t[md_mod]\n"
                               f"{DM_INDEX:016x} b {sym}\t[dm_mod]\n")
    res = state(sys_root, proc)
    assert res.ok and not res.stopped, (res.reason, res.stopped)
    got = {m.name: m for m in res.mddevs}
    assert set(got) == {"md0", "dm-6"}
    dm6 = got["dm-6"]
    assert dm6.kind == "dm-raid" and dm6.dm_name == "253:6"
    assert res.table is not None
    assert "DONE" in recovery_names(res.table.recovery_canon(dm6.recovery))
    assert dm6.sync_thread and dm6.level == 5
    # without the index symbol (dm_mod not loaded): md0 alone, and no complaint
    sys2, proc2 = tree(tmp_path / "b", kernel, mem)
    alone = state(sys2, proc2)
    assert alone.ok and [m.name for m in alone.mddevs] == ["md0"] and not alone.stopped
    # a bad pointer in the raid cell: md0 still read, the dm walk says why it skipped
    from mdtrace.sources.snapshot.dm_registry import dm_layout as _dl

    mem.u64(HEAP + 0xE000 + _dl(btfs(kernel)).off["HASH_CELL_MD"], 0xDEAD000000000100)
    sys3, proc3 = tree(tmp_path / "c", kernel, mem,
                       ksym=f"{HEAD:016x} d all_mddevs\t[md_mod]\n"
                            f"{DM_INDEX:016x} b {sym}\t[dm_mod]\n")
    bad = state(sys3, proc3)
    assert bad.ok and [m.name for m in bad.mddevs] == ["md0"]
    assert bad.stopped.startswith("dm devices: a bad pointer"), bad.stopped
