"""A small pure-Python reader of raw BTF blobs (``/sys/kernel/btf/*``), incl. split module BTF.

Why not bpftool: it is not always installed, and a JSON dump of vmlinux BTF is ~100 MB.  We need
only struct member offsets (with anonymous struct/union members flattened) and enum values.

Why lazy: vmlinux has ~110k types; decoding them all in Python took 0.7 s here and 11 s in the
TCG guest, more than ``mdtrace diagnose``'s whole budget.  Loading makes one cheap pass that
records where each type record starts; a type is decoded (members, enumerators, names) only when
a lookup touches it.  A lookup by name finds the name's offset(s) in the string section first,
then the records whose ``name_off`` is that integer, by a byte search of the type section.

Format (include/uapi/linux/btf.h): a 24-byte header, a type section of variable-length records
(``name_off``, ``info`` = kind<<24 | vlen, ``size``/``type``, then kind-specific data) and a
string section.  Split BTF (kernel modules) continues the type ids and string offsets of its
base (vmlinux): ids start at ``len(base types)`` and string offsets at ``base str_len``.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from mdtrace.errors import EnvironmentProblem

BTF_MAGIC = 0xEB9F

# kinds
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_MODIFIERS = frozenset({TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG})

# bytes after the 12-byte header of a record: fixed part, and per vlen item (-1: unknown kind)
_FIXED = [-1] * 32
_PER_ITEM = [0] * 32
for _k in (PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG):
    _FIXED[_k] = 0
for _k in (INT, VAR, DECL_TAG):
    _FIXED[_k] = 4
_FIXED[ARRAY] = 12
for _k, _n in ((STRUCT, 12), (UNION, 12), (ENUM, 8), (ENUM64, 12), (FUNC_PROTO, 8),
               (DATASEC, 12)):
    _FIXED[_k], _PER_ITEM[_k] = 0, _n
del _k, _n

_U32 = struct.Struct("<I").unpack_from
_U32X2 = struct.Struct("<II").unpack_from
_U32X3 = struct.Struct("<III").unpack_from


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


class _Types(Sequence["BtfType | None"]):
    """``btf.types`` as a read-only list (id 0 = void = None) that decodes on access."""

    def __init__(self, btf: Btf) -> None:
        self._btf = btf

    def __len__(self) -> int:
        return self._btf._end

    @overload
    def __getitem__(self, i: int) -> BtfType | None: ...
    @overload
    def __getitem__(self, i: slice) -> list[BtfType | None]: ...

    def __getitem__(self, i: int | slice) -> BtfType | None | list[BtfType | None]:
        if isinstance(i, slice):
            return [self._btf._type(j) for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("BTF type id out of range")
        return self._btf._type(i)

    def __iter__(self) -> Iterator[BtfType | None]:
        get = self._btf._type
        return (get(j) for j in range(len(self)))

    def __reversed__(self) -> Iterator[BtfType | None]:
        get = self._btf._type
        return (get(j) for j in range(len(self) - 1, -1, -1))


class Btf:
    """Parsed BTF: ``types[i]`` is type id i (id 0 = void).  Split BTF continues its base."""

    def __init__(self, tsec: bytes, ssec: bytes, offs: array, names: array,
                 base: Btf | None, source: str = "") -> None:
        self.source = source
        self._tsec = tsec
        self._ssec = ssec
        self._offs = offs                    # record start in tsec of own type k (id first+k)
        self._names = names                  # name_off of own type k
        self._last_by_name: dict[int, int] | None = None  # name_off -> last own id, on demand
        self._base = base
        self._first: int = 1 if base is None else base._end
        self._end: int = self._first + len(offs)
        self._str_base: int = 0 if base is None else base._str_end
        self._str_end: int = self._str_base + len(ssec)
        self._cache: dict[int, BtfType] = {}
        self._ids: dict[tuple[int, str], int] = {}  # (kind, name) -> last id, -1: none
        self.types: Sequence[BtfType | None] = _Types(self)

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
        """Check the header and index the record starts; nothing else is decoded yet."""
        what = source or "BTF"
        if len(data) < 24:
            raise BtfError(f"{what}: too short to be BTF")
        magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise BtfError(f"{what}: not a BTF blob (bad magic {magic:#x})")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        tsec = data[hdr_len + type_off: hdr_len + type_off + type_len]
        ssec = data[hdr_len + str_off: hdr_len + str_off + str_len]
        offs = array("I")
        names = array("I")
        append, append_name = offs.append, names.append
        fixed, per_item, u32x2 = _FIXED, _PER_ITEM, _U32X2
        pos = 0
        n = len(tsec)
        while pos + 12 <= n:
            name_off, info = u32x2(tsec, pos)
            kind = (info >> 24) & 0x1F
            extra = fixed[kind]
            if extra < 0:
                raise BtfError(f"{what}: unknown BTF kind {kind} at type {len(offs) + 1} "
                               "(newer kernel? please report with 'uname -r')")
            append(pos)
            append_name(name_off)
            pos += 12 + extra + per_item[kind] * (info & 0xFFFF)
        if pos > n:
            raise BtfError(f"{what}: truncated type section (record {len(offs)} runs past "
                           "its end; the blob is damaged, capture it again)")
        return cls(tsec, ssec, offs, names, base, source)

    # -- raw access ------------------------------------------------------------------------
    def _owner(self, tid: int) -> Btf:
        b: Btf = self
        while tid < b._first:
            assert b._base is not None
            b = b._base
        return b

    def _str(self, off: int) -> str:
        b: Btf = self
        while off < b._str_base:
            assert b._base is not None
            b = b._base
        o = off - b._str_base
        end = b._ssec.find(b"\0", o)
        return b._ssec[o:end if end >= 0 else len(b._ssec)].decode("utf-8", "replace")

    def _type(self, tid: int) -> BtfType | None:
        """Decode type ``tid`` (cached in the blob that defines it)."""
        if tid <= 0 or tid >= self._end:
            return None
        b = self._owner(tid)
        t = b._cache.get(tid)
        if t is None:
            t = b._cache[tid] = b._decode(b._offs[tid - b._first])
        return t

    def _decode(self, pos: int) -> BtfType:
        tsec, name_at, unpack3 = self._tsec, self._str, _U32X3
        name_off, info, size = unpack3(tsec, pos)
        pos += 12
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        t = BtfType(kind, name_at(name_off) if name_off else "", size, vlen=vlen)
        if kind == ARRAY:
            elem, _idx, nelems = unpack3(tsec, pos)
            t.array = (elem, nelems)
        elif kind in (STRUCT, UNION):
            kflag = info >> 31
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
        return t

    def _name_offsets(self, name: str) -> list[int]:
        """Every string offset (in this blob's chain) that holds exactly ``name``.

        Searching for ``\\0name`` and then checking the NUL after it is faster than searching
        for ``\\0name\\0``: the search skips on the last byte, and NUL is the commonest one.
        """
        key = name.encode()
        pat = b"\0" + key
        k = len(pat)
        got = []
        b: Btf | None = self
        while b is not None:
            s = b._ssec
            if s.startswith(key + b"\0"):
                got.append(b._str_base)
            i = s.find(pat)
            while i >= 0:
                if s[i + k: i + k + 1] == b"\0":
                    got.append(b._str_base + i + 1)
                i = s.find(pat, i + 1)
            b = b._base
        return got

    def _hits(self, value: int) -> Iterator[tuple[int, int]]:
        """(record index, byte position) of each occurrence of u32 ``value`` in the type section."""
        pat = struct.pack("<I", value)
        tsec, offs = self._tsec, self._offs
        i = tsec.find(pat)
        while i >= 0:
            k = bisect_right(offs, i) - 1
            if k >= 0:
                yield k, i
            i = tsec.find(pat, i + 1)

    def _own_last(self, kind: int, name_off: int) -> int:
        """Highest own id of ``kind`` whose name_off is ``name_off``; -1 if none."""
        if self._last_by_name is None:
            # one C-speed pass; a duplicated offset keeps its last (highest) id (one name per id)
            self._last_by_name = dict(zip(self._names, range(self._first, self._end)))
        tid = self._last_by_name.get(name_off)
        if tid is None:
            return -1
        if self._kind(tid) == kind:
            return tid
        # rare: the name is shared by types of other kinds (typedef struct x x; a FWD)
        pat = struct.pack("<I", name_off)
        raw = self._names.tobytes()
        best = -1
        i = raw.find(pat)
        while i >= 0:
            if i % 4 == 0 and self._kind(self._first + i // 4) == kind:
                best = self._first + i // 4
            i = raw.find(pat, i + 1)
        return best

    def _last_of(self, kind: int, name: str) -> int:
        """Id of the last type of ``kind`` named ``name`` (split blob before its base); -1."""
        key = (kind, name)
        tid = self._ids.get(key)
        if tid is None:
            offsets = self._name_offsets(name) if name else []
            b: Btf | None = self
            tid = -1
            while b is not None and tid < 0:
                for off in offsets:
                    tid = max(tid, b._own_last(kind, off))
                b = b._base
            self._ids[key] = tid
        return tid

    def _kind(self, tid: int) -> int:
        b = self._owner(tid)
        return (_U32(b._tsec, b._offs[tid - b._first] + 4)[0] >> 24) & 0x1F

    # -- queries ---------------------------------------------------------------------------
    def find(self, name: str, kinds: tuple[int, ...] = (STRUCT, UNION)) -> BtfType | None:
        """The (last defined, i.e. module-local first) complete type of this name."""
        for kind in kinds:
            tid = self._last_of(kind, name)
            if tid > 0:
                return self._type(tid)
        return None

    def resolve(self, type_id: int) -> BtfType | None:
        """Follow typedef/const/volatile to the underlying type."""
        for _ in range(32):
            t = self._type(type_id)
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
        """Enumerators of the (possibly anonymous) enum that has ``enumerator``; the last one."""
        offsets = self._name_offsets(enumerator)
        b: Btf | None = self
        while b is not None:
            best = -1
            for off in offsets:
                for k, p in b._hits(off):
                    start = b._offs[k]
                    info = _U32(b._tsec, start + 4)[0]
                    kind = (info >> 24) & 0x1F
                    step = 8 if kind == ENUM else 12 if kind == ENUM64 else 0
                    rel = p - start - 12
                    if step and rel >= 0 and rel % step == 0 and rel // step < (info & 0xFFFF):
                        best = max(best, k)
            if best >= 0:
                t = b._type(b._first + best)
                assert t is not None
                return dict(t.enum_values)
            b = b._base
        return None

    def has_func(self, name: str) -> bool:
        return self._last_of(FUNC, name) > 0

    def func_signature(self, name: str) -> tuple[int, int] | None:
        """(number of parameters, return size in bytes; 0 = void) of a function in BTF."""
        tid = self._last_of(FUNC, name)
        if tid <= 0:
            return None
        func = self._type(tid)
        proto = self._type(func.size_or_type) if func is not None else None
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
