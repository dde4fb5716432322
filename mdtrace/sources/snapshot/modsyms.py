"""A loaded module's data symbol from its own ELF file, without /proc/kallsyms.

/proc/kallsyms lists every symbol of the kernel and its modules (~150 000 lines): the regex
over it was the largest stage of a `diagnose` in a loaded TCG guest (59 s of a 61 s kernel
read on 6.12 during the live test, 2026-12-04).  One module's symbol is cheaper to get the
way the module loader itself computes it: the symbol's offset in its section (the .ko's
symtab: ``st_value`` of an ET_REL object is section-relative) plus where the loader put that
section (``/sys/module/<mod>/sections/<section>``, the section attributes kernel/module/sysfs.c
shows root only; zeros otherwise).

The file on disk must be the module that is loaded: a package upgrade replaces the .ko under
a running kernel.  The GNU build-id note of the file is compared with the loaded one
(``/sys/module/<mod>/notes/.note.gnu.build-id``, the raw note bytes); any doubt (no note, no
file, a different build, a hidden address) gives None and the caller reads kallsyms.
"""

from __future__ import annotations

import gzip
import lzma
import re
import struct
from pathlib import Path

_ELF64_LE = b"\x7fELF\x02\x01"
_SHT_SYMTAB = 2
_MAX_MODULE_BYTES = 64 << 20      # a decompressed .ko bigger than this is not read


def module_file(lib_root: Path, release: str, module: str) -> Path | None:
    """``module``'s file under lib_root/release, from modules.dep (file names may spell the
    module's ``_`` as ``-``: md_mod is md-mod.ko)."""
    base = lib_root / release
    try:
        dep = (base / "modules.dep").read_text(errors="replace")
    except OSError:
        return None
    name = "[-_]".join(re.escape(p) for p in module.split("_"))
    m = re.search(rf"^((?:\S*/)?{name}\.ko(?:\.(?:xz|gz|zst))?):", dep, re.M)
    return base / m.group(1) if m else None


def _read_ko(path: Path) -> bytes | None:
    try:
        raw = path.read_bytes()
        if path.suffix == ".xz":
            return lzma.LZMADecompressor().decompress(raw, _MAX_MODULE_BYTES)
        if path.suffix == ".gz":
            return gzip.decompress(raw)
        if path.suffix == ".zst":
            return _unzstd(raw)
        return raw
    except (OSError, lzma.LZMAError, EOFError, ValueError):
        return None


def _unzstd(raw: bytes) -> bytes | None:
    import zstandard

    try:
        return zstandard.ZstdDecompressor().decompress(raw, max_output_size=_MAX_MODULE_BYTES)
    except zstandard.ZstdError:
        return None


def elf_symbol(elf: bytes, symbol: str) -> tuple[str, int, bytes] | None:
    """(section name, offset in it, build-id note bytes) of ``symbol`` in an ELF64
    little-endian relocatable; None when it is not there or the file is not one."""
    try:
        if not elf.startswith(_ELF64_LE):
            return None
        shoff, = struct.unpack_from("<Q", elf, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
        secs = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize)
                for i in range(shnum)]
        str_off = secs[shstrndx][4]

        def sec_name(s: tuple[int, ...]) -> str:
            end = elf.index(b"\0", str_off + s[0])
            return elf[str_off + s[0]:end].decode(errors="replace")

        names = [sec_name(s) for s in secs]
        note = b""
        if ".note.gnu.build-id" in names:
            s = secs[names.index(".note.gnu.build-id")]
            note = elf[s[4]:s[4] + s[5]]
        want = symbol.encode()
        for s in secs:
            if s[1] != _SHT_SYMTAB:
                continue
            strtab = secs[s[6]][4]
            for off in range(s[4], s[4] + s[5], s[9] or 24):
                st_name, _info, _other, shndx, value, _size = struct.unpack_from(
                    "<IBBHQQ", elf, off)
                start = strtab + st_name
                if elf[start:start + len(want) + 1] == want + b"\0" and 0 < shndx < shnum:
                    return names[shndx], value, note
        return None
    except (struct.error, ValueError, IndexError):
        return None


def module_symbol(module: str, symbol: str, *, sys_root: Path, lib_root: Path,
                  release: str) -> int | None:
    """``symbol``'s address in the loaded ``module``; None when it cannot be known this way."""
    mod = sys_root / "module" / module
    try:
        loaded_note = (mod / "notes" / ".note.gnu.build-id").read_bytes()
    except OSError:
        return None
    path = module_file(lib_root, release, module)
    elf = _read_ko(path) if path is not None else None
    got = elf_symbol(elf, symbol) if elf else None
    if got is None:
        return None
    section, offset, note = got
    if not note or note != loaded_note:      # not the build that is loaded
        return None
    try:
        base = int((mod / "sections" / section).read_text().strip(), 16)
    except (OSError, ValueError):
        return None
    return base + offset if base else None
