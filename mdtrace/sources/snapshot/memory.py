"""Kernel memory as the kernel-state readers see it: /proc/kcore (an ELF64 core whose PT_LOAD
segments map kernel virtual addresses to file offsets) or the regions a BPF probe copied.

Every read is at most :data:`MAX_READ` bytes and lies wholly inside one segment or region;
anything else is :class:`BadAddress`, which the walkers turn into a reason.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from mdtrace.errors import EnvironmentProblem

MAX_READ = 64 * 1024          # one read: a struct mddev is ~2.3 KiB
MAX_SEGMENTS = 4096           # program headers accepted
PT_LOAD = 1
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")


class KcoreUnavailable(EnvironmentProblem):
    """The kernel state cannot be read here; the message is the one-line reason."""


class BadAddress(Exception):
    """A read outside the core's PT_LOAD segments, or one the kernel refused."""


@dataclass(frozen=True)
class Segment:
    vaddr: int
    offset: int
    size: int                 # p_filesz: bytes the file holds for this range


class Memory:
    """Kernel memory as :func:`read_mddev` reads it: :class:`Kcore` (the whole of it, through
    /proc/kcore) or :class:`Captured` (the few regions a BPF probe copied, bpf_state.py).  One
    reader over both is what keeps the two paths' answers the same."""

    def read(self, addr: int, size: int) -> bytes:
        raise NotImplementedError

    def u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def cstr(self, addr: int, size: int) -> str:
        return self.read(addr, size).split(b"\0", 1)[0].decode("utf-8", "replace")


class Captured(Memory):
    """Regions of kernel memory copied elsewhere (by a BPF probe): a read must lie wholly
    inside one region, else :class:`BadAddress` (the probe did not copy it)."""

    def __init__(self, regions: dict[int, bytes]) -> None:
        self.regions = {a: b for a, b in regions.items() if a > 0 and b}

    def read(self, addr: int, size: int) -> bytes:
        if not 0 < size <= MAX_READ or addr <= 0:
            raise BadAddress("read size or address out of range")
        for base, data in self.regions.items():
            if base <= addr and addr + size <= base + len(data):
                return data[addr - base:addr - base + size]
        raise BadAddress("address not captured by the probe")


class Kcore(Memory):
    """Kernel virtual memory through an ELF64 core file (/proc/kcore, or a test's core).

    Reads go through :meth:`_pread` with file offsets computed from one segment only.
    """

    def __init__(self, fh: BinaryIO, where: str = "/proc/kcore") -> None:
        self.fh, self.where = fh, where
        head = self._pread(_EHDR.size, 0)
        if len(head) < _EHDR.size or head[:4] != b"\x7fELF":
            raise KcoreUnavailable(f"{where}: not an ELF core file")
        if head[4] != 2 or head[5] != 1:
            raise KcoreUnavailable(f"{where}: not a 64-bit little-endian core (only x86_64 "
                                   "and other 64-bit LE kernels are read)")
        (_id, _type, _mach, _ver, _entry, phoff, _sh, _fl, _eh, phentsize, phnum,
         *_rest) = _EHDR.unpack(head)
        if phentsize != _PHDR.size or not 0 < phnum <= MAX_SEGMENTS:
            raise KcoreUnavailable(f"{where}: unexpected program headers ({phnum} of "
                                   f"{phentsize} bytes)")
        table = self._pread(phentsize * phnum, phoff)
        if len(table) < phentsize * phnum:
            raise KcoreUnavailable(f"{where}: program headers cut short")
        segs = []
        for i in range(phnum):
            p_type, _f, off, vaddr, _pa, filesz, _memsz, _al = _PHDR.unpack_from(
                table, i * phentsize)
            if p_type == PT_LOAD and filesz and vaddr + filesz <= 1 << 64:
                segs.append(Segment(vaddr, off, filesz))
        if not segs:
            raise KcoreUnavailable(f"{where}: no memory segments (PT_LOAD)")
        self.segments = tuple(sorted(segs, key=lambda s: s.vaddr))

    def _pread(self, n: int, off: int) -> bytes:
        try:
            return os.pread(self.fh.fileno(), n, off)
        except (OSError, OverflowError) as exc:
            raise BadAddress(str(exc)) from None

    def segment_of(self, addr: int, size: int) -> Segment | None:
        for s in self.segments:
            if s.vaddr <= addr and addr + size <= s.vaddr + s.size:
                return s
        return None

    def read(self, addr: int, size: int) -> bytes:
        if not 0 < size <= MAX_READ or addr <= 0:
            raise BadAddress("read size or address out of range")
        seg = self.segment_of(addr, size)
        if seg is None:
            raise BadAddress("address outside the core's segments")
        data = self._pread(size, seg.offset + (addr - seg.vaddr))
        if len(data) != size:
            raise BadAddress("short read")
        return data


__all__ = ["MAX_READ", "PT_LOAD", "BadAddress", "Captured", "Kcore", "KcoreUnavailable",
           "Memory", "Segment"]
