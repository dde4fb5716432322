"""Contracts between the BPF C and the Python side (issue 12, part 4).

The kernel side (mdtrace/bpf/) and user space agree on event kind numbers, lock and hook codes,
the byte layout of ``struct mdt_event`` and which BTF offsets are needed.  Each of those is
written twice, once per language; these tests parse the C and hold the Python to it.
"""

from __future__ import annotations

import ast
import re
import struct
from pathlib import Path

import pytest

from mdtrace.events import KIND_SET
from mdtrace.kernel.flags import FlagTable
from mdtrace.kernel.offsets import FIELDS
from mdtrace.pointers import PointerHasher
from mdtrace.sources import bcc_decode
from mdtrace.sources.bcc_decode import KIND_NAMES, RAW, RAW_SIZE, Ev, Hook, Lk, Op, RawDecoder

ROOT = Path(__file__).resolve().parents[1]
BPF = ROOT / "mdtrace" / "bpf"
COMMON_H = (BPF / "common.h").read_text()


def _strip_comments(c: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", c, flags=re.S))


def defines(text: str, prefix: str) -> dict[str, int]:
    """``#define PREFIX_NAME <int>`` -> {NAME: int}."""
    return {m[1]: int(m[2], 0) for m in re.finditer(
        rf"^\s*#define\s+{prefix}_(\w+)\s+(-?(?:0x)?[0-9a-fA-F]+)\b", text, re.M)}


_CTYPES = {"u64": ("Q", 8), "u32": ("I", 4), "s32": ("i", 4), "u8": ("B", 1),
           "char": ("s", 1)}


def struct_fields(text: str, name: str) -> list[tuple[str, str, int]]:
    """The members of ``struct name { ... };`` as (member, C type, array length or 0)."""
    m = re.search(rf"struct\s+{name}\s*\{{(.*?)\}};", _strip_comments(text), re.S)
    assert m, f"struct {name} not found"
    out = []
    for decl in m[1].split(";"):
        decl = decl.strip()
        if not decl:
            continue
        ctype, _, names = decl.partition(" ")
        assert ctype in _CTYPES, f"struct {name}: type {ctype!r} has no decoder format here"
        for part in names.split(","):
            mm = re.fullmatch(r"\s*(\w+)\s*(?:\[(\d+)\])?\s*", part)
            assert mm, f"struct {name}: cannot parse {part!r}"
            out.append((mm[1], ctype, int(mm[2] or 0)))
    return out


def c_layout(fields: list[tuple[str, str, int]]) -> tuple[str, int, list[int]]:
    """The struct module format, the C sizeof (natural alignment) and each member's offset."""
    fmt, off, offsets, align = "<", 0, [], 1
    for _, ctype, n in fields:
        code, size = _CTYPES[ctype]
        a = size
        align = max(align, a)
        off = (off + a - 1) // a * a
        offsets.append(off)
        if ctype == "char":
            fmt += f"{n}s"
            off += n
        else:
            fmt += f"{n}{code}" if n else code
            off += size * (n or 1)
    return fmt, (off + align - 1) // align * align, offsets


def test_event_kinds_match_common_h() -> None:
    ev = defines(COMMON_H, "EV")
    assert len(ev) >= 20, ev              # the parser found the table
    assert ev == {k.name: k.value for k in Ev}
    assert set(KIND_NAMES) == {v for v in ev.values() if v != Ev.TEST}
    assert all(KIND_NAMES[v] == n.lower() for n, v in ev.items() if n != "TEST")
    # every decoded kind is an event kind the engine and the trace format know
    assert set(KIND_NAMES.values()) <= KIND_SET


def test_lock_and_hook_codes_match_the_c() -> None:
    assert defines(COMMON_H, "LK") == {k.name: k.value for k in Lk}
    assert defines(COMMON_H, "OP") == {k.name: k.value for k in Op}
    hooks = defines((BPF / "dm_suspend.c").read_text(), "HOOK")
    assert hooks == {k.name: k.value for k in Hook}
    assert set(bcc_decode.LOCK_CLASSES) == set(Lk)
    assert set(bcc_decode.LOCK_OPS) == set(Op)


def test_struct_mdt_event_layout_is_the_decoders() -> None:
    fields = struct_fields(COMMON_H, "mdt_event")
    fmt, size, offsets = c_layout(fields)
    assert [f[0] for f in fields][:2] == ["ts", "mddev"]
    # no implicit padding in C (sizeof == the packed size), so the packed format read by
    # the decoder has the C offsets; and it is the decoder's format, member for member
    assert struct.calcsize(fmt) == size == RAW_SIZE
    assert _expand(fmt) == _expand(RAW.format)
    # the decoder unpacks one name per member, in order (the tuple in RawDecoder.decode)
    names = _decode_unpack_targets()
    assert len(names) == len(fields)
    same = {"ts", "mddev", "recovery", "flags", "reshape_pos", "curr_resync", "resync_max",
            "a0", "a1", "a2", "a3", "kind", "cpu", "pid", "tid", "ro", "suspended", "level",
            "sync_thread", "has_state", "is_dm", "comm", "name"}
    for (cname, _, _), pyname in zip(fields, names):
        if cname in same:
            assert pyname == cname, (cname, pyname)


def _expand(fmt: str) -> list[str]:
    """'<11Q4I' -> ['Q'] * 11 + ['I'] * 4 (strings stay one item: '16s')."""
    out: list[str] = []
    for count, code in re.findall(r"(\d*)([A-Za-z])", fmt.lstrip("<=>!@")):
        if code == "s":
            out.append(f"{count}s")
        else:
            out.extend([code] * int(count or 1))
    return out


def _decode_unpack_targets() -> list[str]:
    tree = ast.parse(Path(bcc_decode.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "decode":
            first = node.body[0]
            assert isinstance(first, ast.Assign) and isinstance(first.targets[0], ast.Tuple)
            return [t.id for t in first.targets[0].elts if isinstance(t, ast.Name)]
    raise AssertionError("RawDecoder.decode not found")


def test_struct_layout_parser_catches_a_change() -> None:
    """A test of the test: one more member, or a reordering that pads, is seen."""
    more = COMMON_H.replace("    u32 kind;", "    u32 kind;\n    u32 extra;")
    assert c_layout(struct_fields(more, "mdt_event"))[1] != RAW_SIZE
    padded = "struct p { u8 a; u64 b; };"
    assert c_layout(struct_fields(padded, "p"))[1:] == (16, [0, 8])


def _raw(kind: int, **over: int) -> bytes:
    vals = dict(ts=1000, mddev=0xFFFF8881_00000000, recovery=0, flags=0, reshape_pos=0,
                curr_resync=0, resync_max=0, a0=0, a1=0, a2=0, a3=0, kind=kind, cpu=0,
                pid=10, tid=10, ro=0, suspended=0, level=5, sync_thread=0, has_state=0,
                is_dm=0, pad0=0)
    vals.update(over)
    return RAW.pack(*vals.values(), b"md_sync\0", b"md0\0", b"\0", b"\0" * 32)


def _decoder() -> RawDecoder:
    return RawDecoder(FlagTable.for_release("6.12.0"), PointerHasher(b"k" * 16),
                      dm_names=lambda d: "")


@pytest.mark.parametrize("kind", list(Ev), ids=lambda k: k.name)
def test_every_kind_decodes_to_its_name(kind: Ev) -> None:
    dec = _decoder()
    ev = dec.decode(_raw(kind))
    if kind is Ev.TEST:
        assert ev is None and dec.unknown == 1
    else:
        assert ev is not None and ev.kind == kind.name.lower() and dec.unknown == 0


def test_lock_event_names_class_and_op() -> None:
    dec = _decoder()
    ev = dec.decode(_raw(Ev.LOCK, a0=0xFFFF8881_12345678, a1=Op.CONTEND, a2=Lk.DM_SUSPEND))
    assert ev is not None and ev.args["lock"] == "dm_suspend_lock"
    assert ev.args["op"] == "contend"


def _bpf_identifiers() -> set[str]:
    text = "".join(_strip_comments(p.read_text()) for p in sorted(BPF.glob("*.[ch]")))
    return set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", text))


def test_required_btf_fields_are_read_by_a_program() -> None:
    """A required field refuses to attach anything when the kernel lacks it: only a member
    a BPF program reads may do that."""
    used = _bpf_identifiers()
    required = {d for d, _, _, _, req in FIELDS if req}
    assert required, FIELDS
    assert required <= used, f"required but read by no program: {sorted(required - used)}"


def test_every_btf_field_has_a_reader() -> None:
    kcore = (ROOT / "mdtrace" / "sources" / "snapshot" / "kcore.py").read_text()
    used = _bpf_identifiers() | set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", kcore))
    unread = sorted(d for d, *_ in FIELDS if d not in used)
    assert not unread, f"BTF fields computed for no reader: {unread}"
    assert len({d for d, *_ in FIELDS}) == len(FIELDS)
