"""The lazy BTF parser answers as the eager one it replaced (tests/test_btf_eager.py) did.

Run on the committed guest blobs (6.1 and 6.12: vmlinux + md_mod + raid456 + dm_mod + dm_raid):
the whole compute_offsets / kcore layout result, then every struct member and enumerator the
module blobs define, and a sample of vmlinux types decoded through the lazy ``types`` sequence.
"""

from __future__ import annotations

import struct
from dataclasses import astuple
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

import tests.test_btf_eager as eager
from mdtrace.kernel.btf import ENUM, ENUM64, STRUCT, UNION, Btf, BtfError, load_blob
from mdtrace.kernel.offsets import MODULES, BtfSet, compute_offsets
from mdtrace.sources.snapshot.kcore import layout

DATA = Path(__file__).parent / "data" / "btf"
KERNELS = [DATA / "5.10.0-32-amd64", DATA / "6.1.0-56-amd64", DATA / "6.12.117+deb12-amd64",
           DATA / "7.2.13+deb14-amd64"]
pytestmark = pytest.mark.skipif(not (KERNELS[1] / "md_mod.btf.zst").exists(),
                                reason="captured guest BTF not in tests/data/btf")


def _t(t: Any) -> Any:
    """A decoded type as plain tuples (the two parsers have their own dataclasses)."""
    return None if t is None else astuple(t)


def _eager_set(kdir: Path) -> BtfSet:
    vm = eager.load_blob(kdir / "vmlinux.btf.zst")
    mods = {m: eager.load_blob(_mod_blob(kdir, m), base=vm) for m in MODULES}
    return BtfSet(vm, mods, str(kdir))  # type: ignore[arg-type]  # same duck-typed API


def _mod_blob(kdir: Path, m: str) -> Path:
    """5.10's modules have no BTF of their own: its dwarf/ holds the pahole-made blobs."""
    p = kdir / f"{m}.btf.zst"
    return p if p.exists() else kdir / "dwarf" / f"{m}.btf.zst"


@pytest.fixture(scope="module", params=KERNELS, ids=lambda p: p.name)
def pair(request: pytest.FixtureRequest) -> tuple[BtfSet, BtfSet]:
    kdir: Path = request.param
    lazy = BtfSet.from_dir(kdir, fallback=[kdir / "dwarf"])
    assert sorted(lazy.modules) == sorted(MODULES)
    return lazy, _eager_set(kdir)


def test_compute_offsets_and_layout_identical(pair: tuple[BtfSet, BtfSet]) -> None:
    lazy, ref = pair
    a, b = compute_offsets(lazy), compute_offsets(ref)
    assert a.defines == b.defines
    assert a.flag_table == b.flag_table
    assert a.missing == b.missing and a.modules == b.modules
    assert layout(lazy) == layout(ref)
    assert len(a.defines) > 40 and a.defines["MDDEV_RECOVERY"] > 0


def test_every_module_member_and_enumerator_identical(pair: tuple[BtfSet, BtfSet]) -> None:
    lazy, ref = pair
    checked = 0
    for mod in MODULES:
        lb, rb = lazy.modules[mod], ref.modules[mod]
        assert len(lb.types) == len(rb.types)
        start = len(ref.vmlinux.types)
        for tid in range(start, len(rb.types)):
            t = rb.types[tid]
            assert _t(lb.types[tid]) == _t(t), (mod, tid)
            if t is None or not t.name:
                continue
            if t.kind in (STRUCT, UNION):
                assert lb.struct_size(t.name) == rb.struct_size(t.name)
                for m in t.members:
                    if m.name:
                        assert lb.member(t.name, m.name) == rb.member(t.name, m.name)
                        checked += 1
            elif t.kind in (ENUM, ENUM64):
                assert lb.enum(t.name) == rb.enum(t.name)
                for name, _v in t.enum_values[:3]:
                    assert lb.enum_containing(name) == rb.enum_containing(name)
            elif t.kind == eager.FUNC:
                assert lb.func_signature(t.name) == rb.func_signature(t.name)
                assert lb.has_func(t.name)
    assert checked > 500
    # base lookups through a split blob, absent names, and a vmlinux-only enumerator
    md, rmd = lazy.modules["md_mod"], ref.modules["md_mod"]
    for s, path in (("bio", "bi_iter.bi_sector"), ("page", "lru"), ("task_struct", "comm"),
                    ("no_such_struct_xyz", "a"), ("mddev", "no_such_member")):
        assert md.member(s, path) == rmd.member(s, path)
    assert md.enum_containing("TASK_COMM_LEN") == rmd.enum_containing("TASK_COMM_LEN")
    assert md.enum_containing("NO_SUCH_ENUMERATOR_XYZ") is None
    assert md.has_func("no_such_func_xyz") is False


def test_vmlinux_types_sequence_matches_sample(pair: tuple[BtfSet, BtfSet]) -> None:
    lazy, ref = pair
    lt, rt = lazy.vmlinux.types, ref.vmlinux.types
    assert len(lt) == len(rt) > 80_000     # 5.10: 82 905 types; 6.x-7.2: > 90 000
    for tid in (*range(0, len(rt), 97), len(rt) - 1):
        assert _t(lt[tid]) == _t(rt[tid]), tid
    assert _t(lt[-1]) == _t(rt[-1])
    assert [_t(x) for x in lt[1:4]] == [_t(x) for x in rt[1:4]]
    assert [_t(x) for x in islice(reversed(lt), 5)] == [_t(x) for x in islice(reversed(rt), 5)]
    with pytest.raises(IndexError):
        lt[len(rt)]


def test_lazy_load_decodes_nothing_until_asked() -> None:
    vm = load_blob(KERNELS[1] / "vmlinux.btf.zst")
    assert vm._cache == {}
    assert vm.member("mutex", "owner") == (0, 8)
    assert 0 < len(vm._cache) < 50          # only the types that lookup touched


def _blob(types: bytes, strings: bytes = b"\0") -> bytes:
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def test_damaged_blobs_are_clear_errors() -> None:
    # a struct claiming 3 members but carrying one: truncated, not a struct.error traceback
    rec = struct.pack("<III", 0, STRUCT << 24 | 3, 8) + struct.pack("<III", 0, 0, 0)
    with pytest.raises(BtfError, match="truncated type section"):
        Btf.parse(_blob(rec), source="x.btf")
    with pytest.raises(BtfError, match="unknown BTF kind 25"):
        Btf.parse(_blob(struct.pack("<III", 0, 25 << 24, 0)), source="x.btf")
    ok = Btf.parse(_blob(struct.pack("<III", 1, STRUCT << 24, 4), b"\0s\0"))
    assert ok.struct_size("s") == 4 and ok.member("s", "x") is None
