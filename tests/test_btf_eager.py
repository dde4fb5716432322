"""Oracle only: the eager BTF parser used before btf.py became lazy (test data, not product).

tests/test_btf_lazy.py and bench/bench_btf.py compare the lazy parser in mdtrace/kernel/btf.py
with this one: same offsets, enums and function signatures on the committed kernel blobs.  It
decodes every type up front (~0.4-0.7 s for vmlinux here), which is why it left the product.
No tests live here; the file name only keeps it among the files of the BTF task.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from mdtrace.errors import EnvironmentProblem

BTF_MAGIC = 0xEB9F

# kinds
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_MODIFIERS = frozenset({TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG})


class BtfError(EnvironmentProblem):
    """A BTF blob is missing, unreadable or not BTF."""


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int
    bit_offset: int


@dataclass
class BtfType:
    kind: int
    name: str
    size_or_type: int
    members: tuple[Member, ...] = ()
    enum_values: tuple[tuple[str, int], ...] = ()
    array: tuple[int, int] = (0, 0)  # (elem type, nelems)
    vlen: int = 0  # members / enumerators / function parameters


@dataclass
class Btf:
    """Parsed BTF: ``types[i]`` is type id i (id 0 = void).  Split BTF shares the base list."""

    types: list[BtfType | None]
    source: str = ""
    _by_name: dict[tuple[int, str], list[int]] = field(default_factory=dict, repr=False)

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, base: Btf | None = None) -> Btf:
        """Load a raw BTF file; ``base`` is the vmlinux BTF for a module's split BTF."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise BtfError(f"{p}: BTF not found (kernel needs CONFIG_DEBUG_INFO_BTF"
                           "{,_MODULES}=y; load the module first)") from None
        except OSError as exc:
            raise BtfError(f"{p}: cannot read BTF: {exc.strerror}") from None
        return cls.parse(data, base=base, source=str(p))

    @classmethod
    def parse(cls, data: bytes, base: Btf | None = None, source: str = "") -> Btf:
        if len(data) < 24:
            raise BtfError(f"{source or 'BTF'}: too short to be BTF")
        magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise BtfError(f"{source or 'BTF'}: not a BTF blob (bad magic {magic:#x})")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        tsec = data[hdr_len + type_off: hdr_len + type_off + type_len]
        ssec = data[hdr_len + str_off: hdr_len + str_off + str_len]
        if base is not None:
            types: list[BtfType | None] = list(base.types)
            str_base = base._str_len
            base_strings = base._strings
        else:
            types = [None]
            str_base = 0
            base_strings = b""

        def name_at(off: int) -> str:
            if off >= str_base:
                buf, o = ssec, off - str_base
            else:
                buf, o = base_strings, off
            end = buf.find(b"\0", o)
            return buf[o:end if end >= 0 else len(buf)].decode("utf-8", "replace")

        pos = 0
        n = len(tsec)
        unpack3 = struct.Struct("<III").unpack_from
        while pos + 12 <= n:
            name_off, info, size = unpack3(tsec, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kflag = info >> 31
            name = name_at(name_off) if name_off else ""
            t = BtfType(kind, name, size, vlen=vlen)
            if kind == INT or kind in (VAR, DECL_TAG):
                pos += 4
            elif kind == ARRAY:
                elem, _idx, nelems = unpack3(tsec, pos)
                t.array = (elem, nelems)
                pos += 12
            elif kind in (STRUCT, UNION):
                members = []
                for _ in range(vlen):
                    m_name, m_type, m_off = unpack3(tsec, pos)
                    pos += 12
                    bit_off = m_off & 0xFFFFFF if kflag else m_off
                    members.append(Member(name_at(m_name) if m_name else "", m_type, bit_off))
                t.members = tuple(members)
            elif kind == ENUM:
                vals = []
                for _ in range(vlen):
                    e_name, e_val = struct.unpack_from("<Ii", tsec, pos)
                    pos += 8
                    vals.append((name_at(e_name), e_val))
                t.enum_values = tuple(vals)
            elif kind == ENUM64:
                vals = []
                for _ in range(vlen):
                    e_name, lo, hi = unpack3(tsec, pos)
                    pos += 12
                    vals.append((name_at(e_name), hi << 32 | lo))
                t.enum_values = tuple(vals)
            elif kind == FUNC_PROTO:
                pos += 8 * vlen
            elif kind == DATASEC:
                pos += 12 * vlen
            elif kind in (PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG):
                pass
            else:
                raise BtfError(f"{source or 'BTF'}: unknown BTF kind {kind} (newer kernel?)")
            types.append(t)
        btf = cls(types, source)
        btf._strings = ssec if base is None else base_strings
        btf._str_len = str_len if base is None else base._str_len
        # only the base's string table is ever needed by a further split on top of it
        index: dict[tuple[int, str], list[int]] = {} if base is None else dict(base._by_name)
        start = 1 if base is None else len(base.types)
        for tid in range(start, len(types)):
            tt = types[tid]
            if tt is not None and tt.name:
                index.setdefault((tt.kind, tt.name), []).append(tid)
        btf._by_name = index
        return btf

    _strings: bytes = b""
    _str_len: int = 0

    # -- queries ---------------------------------------------------------------------------
    def find(self, name: str, kinds: tuple[int, ...] = (STRUCT, UNION)) -> BtfType | None:
        """The (last defined, i.e. module-local first) complete type of this name."""
        for kind in kinds:
            ids = self._by_name.get((kind, name))
            if ids:
                return self.types[ids[-1]]
        return None

    def resolve(self, type_id: int) -> BtfType | None:
        """Follow typedef/const/volatile to the underlying type."""
        for _ in range(32):
            t = self.types[type_id] if 0 < type_id < len(self.types) else None
            if t is None or t.kind not in _MODIFIERS:
                return t
            type_id = t.size_or_type
        return None

    def size_of(self, type_id: int) -> int:
        t = self.resolve(type_id)
        if t is None:
            return 0
        if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT):
            return t.size_or_type
        if t.kind == PTR:
            return 8
        if t.kind == ARRAY:
            return self.size_of(t.array[0]) * t.array[1]
        return 0

    def member(self, struct_name: str, path: str) -> tuple[int, int] | None:
        """Byte offset and size of ``path`` (``a.b.c``) in ``struct_name``; None if absent.

        Anonymous struct/union members are searched transparently, as C does.
        """
        t = self.find(struct_name)
        if t is None:
            return None
        off = 0
        size = 0
        for part in path.split("."):
            if t is None or t.kind not in (STRUCT, UNION):
                return None
            hit = self._find_member(t, part)
            if hit is None:
                return None
            bit_off, type_id = hit
            off += bit_off // 8
            size = self.size_of(type_id)
            t = self.resolve(type_id)
        return off, size

    def _find_member(self, t: BtfType, name: str) -> tuple[int, int] | None:
        for m in t.members:
            if m.name == name:
                return m.bit_offset, m.type_id
        for m in t.members:
            if not m.name:
                inner = self.resolve(m.type_id)
                if inner is not None and inner.kind in (STRUCT, UNION):
                    hit = self._find_member(inner, name)
                    if hit is not None:
                        return m.bit_offset + hit[0], hit[1]
        return None

    def offset(self, struct_name: str, path: str) -> int | None:
        got = self.member(struct_name, path)
        return None if got is None else got[0]

    def enum(self, name: str) -> dict[str, int] | None:
        """Enumerators of ``enum name`` (named enums only)."""
        t = self.find(name, (ENUM, ENUM64))
        return None if t is None else dict(t.enum_values)

    def enum_containing(self, enumerator: str) -> dict[str, int] | None:
        """Enumerators of the (possibly anonymous) enum that has ``enumerator``."""
        for t in reversed(self.types):
            if t is not None and t.kind in (ENUM, ENUM64):
                for n, _v in t.enum_values:
                    if n == enumerator:
                        return dict(t.enum_values)
        return None

    def has_func(self, name: str) -> bool:
        return bool(self._by_name.get((FUNC, name)))

    def func_signature(self, name: str) -> tuple[int, int] | None:
        """(number of parameters, return size in bytes; 0 = void) of a function in BTF."""
        ids = self._by_name.get((FUNC, name))
        if not ids:
            return None
        func = self.types[ids[-1]]
        proto = self.types[func.size_or_type] if func is not None else None
        if proto is None or proto.kind != FUNC_PROTO:
            return None
        return proto.vlen, self.size_of(proto.size_or_type)

    def struct_size(self, name: str) -> int | None:
        t = self.find(name)
        return None if t is None else t.size_or_type


def load_blob(path: str | Path, base: Btf | None = None) -> Btf:
    """Load raw or zstd-compressed (``.zst``, as committed under tests/data/btf) BTF."""
    p = Path(path)
    if p.suffix == ".zst":
        import zstandard

        try:
            raw = zstandard.ZstdDecompressor().decompress(p.read_bytes(),
                                                          max_output_size=1 << 28)
        except FileNotFoundError:
            raise BtfError(f"{p}: BTF not found") from None
        return Btf.parse(raw, base=base, source=str(p))
    return Btf.load(p, base=base)
