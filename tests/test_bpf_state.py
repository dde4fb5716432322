"""diagnose's kernel-state fallback (sources/snapshot/bpf_state.py, kernel_state.py): where
/proc/kcore is closed, a BPF probe on array_state_show / raid_status copies what the kcore
reader would read; the copies decode through the same kcore.read_mddev into the same
MddevState.  The synthetic memory of tests/test_kcore.py (real 6.1 / 6.12 BTF offsets) is both
the core the kcore path reads and the memory the probe copies from (``probe_copy`` does what
mddev_state.c does; the bcc test at the end checks the C struct is the layout decoded here)."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
from test_kcore import (
    DONE_SUSPENDED,
    HEAP,
    KERNELS,
    Mem,
    _cli,
    build,
    load,
    md_sysfs,
    md_threads,
    state,
    tree,
)

from mdtrace.frontends.report.build import build_diagnosis
from mdtrace.kernel.flags import Recovery
from mdtrace.sources.snapshot import bpf_state as B
from mdtrace.sources.snapshot import collect
from mdtrace.sources.snapshot import kcore as K
from mdtrace.sources.snapshot.kernel_state import LOCKDOWN_NOTE, read_kernel_state_any

DM = {"ro": 1, "rec": Recovery.FROZEN, "reshape": 4096, "level": 5}
C_SRC = Path(B.__file__).resolve().parents[2] / "bpf" / B.PROGRAM


def _rd(mem: Mem, addr: int, n: int) -> bytes | None:
    for base, buf in mem.segs.items():
        if base <= addr and addr + n <= base + len(buf):
            return bytes(buf[addr - base:addr - base + n])
    return None


def probe_copy(mem: Mem, lay: K.Layout, mddev: int, probe: int = 1,
               drop: tuple[int, ...] = ()) -> bytes:
    """struct mdt_snap as mddev_state.c's snap() fills it from ``mem`` (regions in ``drop``
    fail their read)."""
    o = lay.off
    body = _rd(mem, mddev, lay.mddev_size)
    assert body is not None
    addr, ln, ok = [0] * B.NREG, [0] * B.NREG, [0] * B.NREG
    data = bytearray(B.NREG * B.REG_MAX)

    def u64(at: int) -> int:
        return int.from_bytes(body[at:at + 8], "little")

    def cap(i: int, a: int, n: int) -> int:
        addr[i], ln[i] = a, n
        d = None if i in drop else _rd(mem, a, n)
        if d is None:
            return 0
        ok[i] = 1
        data[i * B.REG_MAX:i * B.REG_MAX + n] = d
        return int.from_bytes(d[:8], "little") if n >= 8 else 0

    gendisk = u64(o["MDDEV_GENDISK"])
    if gendisk:
        cap(0, gendisk + o["GENDISK_DISK_NAME"], 32)
    else:
        ti = cap(1, mddev - o["RAID_SET_MD"] + o["RAID_SET_TI"], 8)
        table = cap(2, ti + o["DM_TARGET_TABLE"], 8) if ti else 0
        md = cap(3, table + o["DM_TABLE_MD"], 8) if table else 0
        disk = cap(4, md + o["MAPPED_DEVICE_DISK"], 8) if md else 0
        if disk:
            cap(5, disk + o["GENDISK_DISK_NAME"], 32)
        if md:
            cap(6, md + o["MAPPED_DEVICE_NAME"], 16)
    for i, define in ((7, "MDDEV_ACTIVE_IO"), (8, "MDDEV_WRITES_PENDING")):
        ref_data = u64(o[define] + o["PERCPU_REF_DATA"])
        if ref_data:
            cap(i, ref_data + o["PERCPU_REF_DATA_COUNT"], 8)
    head = struct.pack(f"<QII{B.NREG}Q{B.NREG}I{B.NREG}I", mddev, probe, 1, *addr, *ln, *ok)
    return head + bytes(data) + body


def addresses(lay: K.Layout) -> tuple[int, int]:
    """md0's and dm-6's mddev in test_kcore.build's memory."""
    return HEAP + 0x1000, HEAP + 0x5000 + lay.off["RAID_SET_MD"]


class FakeRunner:
    """Stands in for bcc only: what would be compiled and attached is recorded, the reads are
    fired for real, the map holds the copies probe_copy made."""

    def __init__(self, raws: list[bytes], notes: list[str] | None = None) -> None:
        self.raws, self.notes = raws, notes or []
        self.calls: list[tuple[bytes, list[str], tuple[tuple[str, str], ...]]] = []
        self.fired: list[str] = []

    def __call__(self, text: bytes, flags: list[str], probes: tuple[tuple[str, str], ...],
                 fire):  # noqa: ANN001, ANN204
        self.calls.append((text, flags, probes))
        self.fired = fire()
        return self.raws, self.notes


# -- decoding: the same words as the kcore path -------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_probe_copies_decode_to_the_kcore_readers_states(tmp_path: Path, kernel: str) -> None:
    mem, lay = build(kernel, md0=DONE_SUSPENDED, dm=DM)
    sys_root, proc = tree(tmp_path, kernel, mem)
    via_kcore = state(sys_root, proc)
    assert via_kcore.ok, via_kcore.reason
    a, d = addresses(lay)
    run = FakeRunner([probe_copy(mem, lay, a, 1), probe_copy(mem, lay, d, 2)])
    via_bpf = B.read_by_probe(sys_root, proc, runner=run, load_btf=load, check=False,
                              fire=lambda root: [])
    assert via_bpf.ok and via_bpf.stopped == "", (via_bpf.reason, via_bpf.stopped)
    assert via_bpf.by_name() == via_kcore.by_name()      # every field, both arrays
    assert via_bpf.source == B.SOURCE and via_kcore.source == "/proc/kcore"
    md0 = via_bpf.by_name()["md0"]
    assert md0.active_io == K.RefState("dead", 2) and md0.suspended == 1
    assert via_bpf.by_name()["dm-6"].dm_name == "253:6"
    assert via_bpf.table is not None
    view = md0.to_json(via_bpf.table, via_bpf.sb_names, via_bpf.source)
    assert view["source"] == B.SOURCE and view["recovery"] == ["RUNNING", "DONE", "SYNC"]
    # what was handed to bcc: this kernel's struct size and percpu_ref counters, both probes
    text, flags, probes = run.calls[0]
    assert b"int array_state_show_enter(struct pt_regs *ctx)" in text
    assert f"-DMDDEV_SIZE={lay.mddev_size}" in flags and "-DREF_ACTIVE_IO=1" in flags
    assert f"-DMDDEV_RECOVERY={lay.off['MDDEV_RECOVERY']}" in flags
    assert [p[0] for p in probes] == ["array_state_show", "raid_status"]


def test_without_dm_raid_btf_only_array_state_show_is_probed(tmp_path: Path) -> None:
    kernel = KERNELS[1]
    mem, lay = build(kernel, md0=DONE_SUSPENDED)
    sys_root, proc = tree(tmp_path, kernel, mem, btf=("vmlinux", "md_mod", "dm_mod"))
    run = FakeRunner([probe_copy(mem, lay, addresses(lay)[0])])
    res = B.read_by_probe(sys_root, proc, runner=run, load_btf=lambda p: K.BtfSet.from_dir(p),
                          check=False, fire=lambda root: [])
    assert res.ok and [m.name for m in res.mddevs] == ["md0"]
    assert [p[0] for p in run.calls[0][2]] == ["array_state_show"]


def test_a_failed_copy_is_what_kcore_gives_for_a_bad_pointer_never_a_guess() -> None:
    kernel = KERNELS[0]
    mem, lay = build(kernel, md0=DONE_SUSPENDED, dm=DM)
    _a, d = addresses(lay)
    kl = K.load_layout(Path("/x"), lambda p: K.BtfSet.from_dir(
        Path(__file__).parent / "data" / "btf" / kernel))
    assert not isinstance(kl, str)
    # the dm chain's mapped_device read failed: no name (kcore's _names on a bad pointer)
    states, why = B.states_from_snaps([probe_copy(mem, lay, d, 2, drop=(3,))], kl)
    assert why == "" and [(m.name, m.kind, m.ro) for m in states] == [("", "", 1)]
    # the struct copy itself failed, or the entry is short: skipped, and said so
    raw = bytearray(probe_copy(mem, lay, d, 2))
    raw[12:16] = b"\0\0\0\0"                               # body_ok = 0
    assert B.decode_snap(bytes(raw), lay.mddev_size) is None
    assert B.decode_snap(bytes(raw[:100]), lay.mddev_size) is None
    states, why = B.states_from_snaps([bytes(raw), bytes(raw[:100])], kl)
    assert states == [] and why == "2 probe entries not decodable"
    # a region read outside what was copied is refused (Captured), as outside kcore's segments
    mem_ = K.Captured({0x1000: b"x" * 16})
    assert mem_.read(0x1004, 8) == b"x" * 8
    for addr, n in ((0x100C, 8), (0x2000, 8), (0, 8), (0x1000, 0)):
        with pytest.raises(K.BadAddress):
            mem_.read(addr, n)


def test_region_names_and_struct_order_match_the_c() -> None:
    text = C_SRC.read_text()
    regs = dict((m.group(1), int(m.group(2)))
                for m in re.finditer(r"#define R_([A-Z_]+)\s+(\d+)", text))
    assert regs == {name.upper(): i for i, (name, _n) in enumerate(B.REGIONS)}
    assert f"#define NREG              {B.NREG}" in text
    assert f"#define REG_MAX           {B.REG_MAX}" in text
    for i, (_name, n) in enumerate(B.REGIONS):
        cname = f"R_{B.REGIONS[i][0].upper()}"
        if cname in ("R_ACTIVE_IO", "R_WRITES_PENDING"):      # cap_ref: data->count, 8
            assert re.search(rf"cap_ref\(s, {cname}, ", text) and n == 8, cname
        else:
            assert re.search(rf"cap\(s, {cname}, [^;]*, {n}\)", text), cname
    fields = re.findall(r"^\s+(?:u64|u32|u8) (\w+)", text.split("struct mdt_snap {")[1]
                        .split("};")[0], re.M)
    assert fields == ["mddev", "probe", "body_ok", "reg_addr", "reg_len", "reg_ok",
                      "reg_data", "body"]
    assert [f for f, _ in B.PROBES] == ["array_state_show", "raid_status"]
    for _f, fn in B.PROBES:
        assert f"int {fn}(struct pt_regs *ctx)" in text


# -- selection: kcore first, the probe only where it can help ----------------------------------


def _fail(reason: str):  # noqa: ANN202
    def reader(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        return K.KernelStateResult(reason=reason, timings={"kallsyms": 0.1})
    return reader


class Probe:
    def __init__(self, res: K.KernelStateResult) -> None:
        self.res, self.called = res, 0

    def __call__(self, *_a, **_k) -> K.KernelStateResult:  # noqa: ANN002, ANN003
        self.called += 1
        return self.res


def test_kcore_read_means_no_probe(tmp_path: Path) -> None:
    kernel = KERNELS[0]
    mem, _ = build(kernel, md0=DONE_SUSPENDED)
    sys_root, proc = tree(tmp_path, kernel, mem)
    probe = Probe(K.KernelStateResult(reason="must not run"))
    res = read_kernel_state_any(sys_root, proc, by_probe=probe, load_btf=load)
    assert res.ok and res.source == "/proc/kcore" and probe.called == 0


def test_masked_kcore_falls_back_and_says_why(tmp_path: Path) -> None:
    """/dev/null over /proc/kcore (docker's masked path): the real fstat says masked; the
    probe's answer is used and the note keeps kcore's reason."""
    kernel = KERNELS[1]
    mem, lay = build(kernel, md0=DONE_SUSPENDED)
    sys_root, proc = tree(tmp_path, kernel, mem)
    masked = K.read_kernel_state(sys_root, proc, load_btf=load,
                                 opener=lambda p: open("/dev/null", "rb", buffering=0))
    assert masked.reason.startswith(f"{proc}/kcore: masked (a character device")
    run = FakeRunner([probe_copy(mem, lay, addresses(lay)[0])])

    def by_kcore(s, p, **kw):  # noqa: ANN001, ANN003, ANN202
        return K.read_kernel_state(s, p, opener=lambda _p: open("/dev/null", "rb",
                                                                buffering=0), **kw)

    def by_probe(s, p, **kw):  # noqa: ANN001, ANN003, ANN202
        return B.read_by_probe(s, p, runner=run, check=False, fire=lambda root: [], **kw)

    res = read_kernel_state_any(sys_root, proc, by_kcore=by_kcore, by_probe=by_probe,
                                load_btf=load)
    assert res.ok and res.source == B.SOURCE and res.fallback_from == masked.reason
    assert set(res.timings) >= {"kallsyms", "btf", "bpf"}
    md_sysfs(sys_root)
    md_threads(proc)
    col = collect(sys_root, proc, dmsetup=None, kernel_log=None,
                  kernel_state=lambda s, p: read_kernel_state_any(
                      s, p, by_kcore=by_kcore, by_probe=by_probe, load_btf=load))
    (st_ev,) = [e for e in col.events if e.kind == "sysfs_state"]
    assert st_ev.args["state_source"] == "bpf" and st_ev.args["active_io"] == 2
    assert any(n == f"kernel state read through the {B.SOURCE}: {masked.reason}"
               for n in col.notes), col.notes
    assert col.kernel_view["md0"]["source"] == B.SOURCE
    (f1,) = [f for f in build_diagnosis(col).snapshot.findings if f.active]
    assert f1.code == "F1" and f1.array == "md0"     # the same finding the kcore path gives


def test_lockdown_confidentiality_closes_both_no_probe(tmp_path: Path) -> None:
    kernel = KERNELS[0]
    sys_root, proc = tree(tmp_path, kernel, None)
    (sys_root / "kernel" / "security").mkdir()
    (sys_root / "kernel" / "security" / "lockdown").write_text(
        "none integrity [confidentiality]\n")
    probe = Probe(K.KernelStateResult(reason="must not run"))
    res = read_kernel_state_any(sys_root, proc, by_kcore=_fail("/proc/kcore: forbidden by "
                                "kernel lockdown (confidentiality)"), by_probe=probe)
    assert probe.called == 0 and not res.ok and res.reason.endswith(LOCKDOWN_NOTE)
    assert "\n" not in res.reason


def test_no_btf_no_probe_and_both_failing_gives_both_reasons(tmp_path: Path) -> None:
    kernel = KERNELS[0]
    sys_root, proc = tree(tmp_path, kernel, None)
    probe = Probe(K.KernelStateResult(reason="BPF probe: no probe attached"))
    res = read_kernel_state_any(sys_root, proc, by_kcore=_fail("no usable BTF: x"),
                                by_probe=probe)
    assert probe.called == 0 and res.reason == "no usable BTF: x; the probe needs the same BTF"
    res = read_kernel_state_any(sys_root, proc, by_kcore=_fail("/proc/kcore: not present"),
                                by_probe=probe)
    assert probe.called == 1
    assert res.reason == "/proc/kcore: not present; BPF probe: no probe attached"


def test_the_probe_refuses_copied_trees_non_root_and_hosts_without_arrays(
        tmp_path: Path) -> None:
    sys_root, proc = tree(tmp_path, KERNELS[0], None)
    assert B.refusal(sys_root, proc).startswith("a copied tree")
    res = B.read_by_probe(sys_root, proc)                 # never compiles: refused first
    assert res.reason.startswith("BPF probe not run: a copied tree")
    assert B.refusal(Path("/sys"), Path("/proc"), euid=1000).startswith("not root")


def test_trigger_reads_every_array_state_and_only_runs_dmsetup_with_dm(tmp_path: Path) -> None:
    sys_root, _proc = tree(tmp_path, KERNELS[0], None)
    for n in ("md0", "md127"):
        (sys_root / "block" / n / "md").mkdir(parents=True)
        (sys_root / "block" / n / "md" / "array_state").write_text("clean\n")
    assert [p.parent.parent.name for p in B.md_state_files(sys_root)] == ["md0", "md127"]
    assert not B.has_dm(sys_root) and B.trigger(sys_root) == []


def test_diagnose_on_a_copied_tree_without_kcore_says_both_reasons(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kernel = KERNELS[0]
    mem, _ = build(kernel, md0=DONE_SUSPENDED)
    sys_root, proc = tree(tmp_path, kernel, mem)
    md_sysfs(sys_root)
    md_threads(proc)
    (proc / "kcore").unlink()
    rc, out, err = _cli(["--sys-root", str(sys_root), "--proc-root", str(proc), "--format",
                         "json"], capsys)
    assert rc == 0 and "Traceback" not in out + err
    reason = json.loads(out)["arrays"]["md0"]["kernel_state"]["reason"]
    assert "kcore: not present" in reason and "BPF probe not run: a copied tree" in reason


# -- the C itself (bcc, root): compiles with both kernels' BTF, verifies, the layout decoded ---


@pytest.mark.bcc
@pytest.mark.parametrize("kernel", ["6.1.0-56-amd64", "6.12.117+deb12-amd64"])
def test_the_program_compiles_verifies_and_its_struct_is_the_decoders(kernel: str) -> None:
    import ctypes

    from bcc_util import bcc_or_skip, env, headers_env_or_skip

    bcc = bcc_or_skip()
    extra = headers_env_or_skip()
    kl = K.load_layout(Path("/x"), lambda p: K.BtfSet.from_dir(
        Path(__file__).parent / "data" / "btf" / kernel))
    assert not isinstance(kl, str)
    with env(extra):
        b = bcc.BPF(text=B.program_text(), cflags=B.cflags(kl))
    try:
        for _f, fn in B.PROBES:
            b.load_func(fn.encode(), bcc.BPF.KPROBE)           # the kernel verifier
        leaf = b[b"mddev_snaps"].Leaf
        got = {n: getattr(leaf, n).offset for n, *_ in leaf._fields_}
        assert got == {"mddev": 0, **B.snap_layout()}
        assert ctypes.sizeof(leaf) == B.BODY_AT + kl.lay.mddev_size
    finally:
        b.cleanup()
