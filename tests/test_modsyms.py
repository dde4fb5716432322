"""A module's data symbol from its own .ko (no kallsyms): ELF symtab + /sys/module sections,
trusted only when the file's build-id is the loaded module's."""

from __future__ import annotations

import lzma
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_kcore import DM_INDEX, HEAD, KERNELS, build, state, tree

from mdtrace.sources.snapshot import modsyms as M

REL = "6.12.117+deb12-amd64"
NOTE = struct.pack("<III", 4, 20, 3) + b"GNU\0" + bytes(range(20))


def elf(symbols: dict[str, tuple[str, int]], note: bytes = NOTE) -> bytes:
    """A minimal ELF64 LE relocatable: .data, .bss, the build-id note, .symtab, .strtab."""
    sec_names = ["", ".data", ".bss", ".note.gnu.build-id", ".symtab", ".strtab", ".shstrtab"]
    shstr = b"\0".join(n.encode() for n in sec_names) + b"\0"
    sh_name = [shstr.index(n.encode() + b"\0") if n else 0 for n in sec_names]
    strtab, syms = b"\0", [bytes(24)]
    for name, (sec, value) in symbols.items():
        syms.append(struct.pack("<IBBHQQ", len(strtab), 1, 0, sec_names.index(sec), value, 16))
        strtab += name.encode() + b"\0"
    blobs = {1: bytes(64), 3: note, 4: b"".join(syms), 5: strtab, 6: shstr}
    body, offs = b"", {}
    for i, b in blobs.items():
        offs[i] = 64 + len(body)
        body += b + bytes(-len(b) % 8)
    shoff = 64 + len(body)
    hdr = (b"\x7fELF\x02\x01\x01" + bytes(9)
           + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64,
                         len(sec_names), 6))
    shdrs = b""
    for i in range(len(sec_names)):
        kind = {0: 0, 1: 1, 2: 8, 3: 7, 4: 2, 5: 3, 6: 3}[i]
        size = len(blobs[i]) if i in blobs else (128 if i == 2 else 0)
        link, entsize = (5, 24) if i == 4 else (0, 0)
        shdrs += struct.pack("<IIQQQQIIQQ", sh_name[i], kind, 0, 0, offs.get(i, 0), size,
                             link, 0, 8, entsize)
    return hdr + body + shdrs


def install(tmp: Path, module: str, ko: bytes, *, loaded_note: bytes | None = NOTE,
            sections: dict[str, int] | None = None, fname: str = "") -> tuple[Path, Path]:
    """lib_root with modules.dep naming the .ko.xz, and sys_root/module/<module>."""
    lib, sys_root = tmp / "lib", tmp / "sys"
    d = lib / REL / "kernel" / "drivers" / "md"
    d.mkdir(parents=True, exist_ok=True)
    name = fname or module.replace("_", "-")
    (d / f"{name}.ko.xz").write_bytes(lzma.compress(ko))
    with (lib / REL / "modules.dep").open("a") as f:
        f.write(f"kernel/drivers/md/raid456.ko.xz: kernel/drivers/md/{name}.ko.xz\n"
                f"kernel/drivers/md/{name}.ko.xz:\n")
    mod = sys_root / "module" / module
    (mod / "sections").mkdir(parents=True, exist_ok=True)
    (mod / "notes").mkdir(exist_ok=True)
    if loaded_note is not None:
        (mod / "notes" / ".note.gnu.build-id").write_bytes(loaded_note)
    for sec, base in (sections or {".data": 0xFFFFFFFFC0A1B000}).items():
        (mod / "sections" / sec).write_text(f"0x{base:016x}\n")
    return lib, sys_root


def lookup(lib: Path, sys_root: Path, module: str = "md_mod",
           symbol: str = "all_mddevs") -> int | None:
    return M.module_symbol(module, symbol, sys_root=sys_root, lib_root=lib, release=REL)


def test_section_base_plus_symbol_offset(tmp_path: Path) -> None:
    ko = elf({"md_thread": (".data", 0x40), "all_mddevs": (".data", 0x810)})
    lib, sys_root = install(tmp_path, "md_mod", ko)
    assert M.module_file(lib, REL, "md_mod") == lib / REL / "kernel/drivers/md/md-mod.ko.xz"
    assert lookup(lib, sys_root) == 0xFFFFFFFFC0A1B000 + 0x810
    assert lookup(lib, sys_root, symbol="all_mddev") is None   # a prefix is not the name


def test_a_bss_symbol_uses_the_bss_base(tmp_path: Path) -> None:
    ko = elf({"name_rb_tree": (".bss", 0x70)})
    lib, sys_root = install(tmp_path, "dm_mod", ko,
                            sections={".data": 0xFFFFFFFFC0B00000, ".bss": 0xFFFFFFFFC0B08000})
    assert lookup(lib, sys_root, "dm_mod", "name_rb_tree") == 0xFFFFFFFFC0B08070


@pytest.mark.parametrize("why", ["other build", "no loaded note", "hidden", "no file",
                                 "not elf", "no symbol"])
def test_any_doubt_is_none(tmp_path: Path, why: str) -> None:
    """None sends the caller to kallsyms: a file that is not the loaded module's build (a
    package upgrade under a running kernel), an address hidden from non-root (zeros)."""
    ko = elf({"all_mddevs": (".data", 0x810)})
    kw: dict = {}
    if why == "other build":
        kw["loaded_note"] = NOTE[:-1] + b"\xff"
    elif why == "no loaded note":
        kw["loaded_note"] = None
    elif why == "hidden":
        kw["sections"] = {".data": 0}
    elif why == "not elf":
        ko = b"\x7fELF\x01\x01" + bytes(100)          # ELF32: not a module of this kernel
    elif why == "no symbol":
        ko = elf({"md_thread": (".data", 0x40)})
    lib, sys_root = install(tmp_path, "md_mod", ko, **kw)
    if why == "no file":
        (lib / REL / "kernel/drivers/md/md-mod.ko.xz").unlink()
    assert lookup(lib, sys_root) is None


@settings(max_examples=150)
@given(cut=st.integers(0, 2000), flip=st.integers(0, 2000), byte=st.integers(0, 255))
def test_a_damaged_file_is_none_or_an_address_never_an_exception(cut: int, flip: int,
                                                                 byte: int) -> None:
    ko = bytearray(elf({"all_mddevs": (".data", 0x810)}))
    if flip < len(ko):
        ko[flip] = byte
    got = M.elf_symbol(bytes(ko[:len(ko) - cut]), "all_mddevs")
    assert got is None or isinstance(got[1], int)


def test_the_real_module_file_when_this_machine_has_one() -> None:
    """Debian's own md-mod.ko.xz (6.12 ships .xz): all_mddevs is in .data, with a build-id."""
    found = sorted(Path("/lib/modules").glob("*/kernel/drivers/md/md-mod.ko*"))
    if not found:
        pytest.skip("no md-mod.ko under /lib/modules on this machine")
    path = found[0]
    got = M.elf_symbol(M._read_ko(path) or b"", "all_mddevs")
    assert got is not None and got[0] == ".data" and len(got[2]) == 36, (path, got)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_state_reads_without_kallsyms(tmp_path: Path, kernel: str) -> None:
    """The module route alone: /proc/kallsyms names nothing, yet md0 and dm-6 are read (dm's
    index through dm_mod's own file) and the timings say kallsyms was never read."""
    mem, _lay = build(kernel, md0={}, dm={"level": 5}, dm_via="index")
    sys_root, proc = tree(tmp_path, kernel, mem, ksym="")
    (proc / "kallsyms").write_text("ffffffffc0a02000 t md_check_recovery\t[md_mod]\n")
    (proc / "sys" / "kernel" / "osrelease").write_text(REL + "\n")
    lib, _ = install(tmp_path, "md_mod", elf({"all_mddevs": (".data", 0x810)}),
                     sections={".data": HEAD - 0x810})
    sym = "_name_buckets" if kernel.startswith("5.10") else "name_rb_tree"
    install(tmp_path, "dm_mod", elf({sym: (".bss", 0x70)}), sections={".bss": DM_INDEX - 0x70})
    res = state(sys_root, proc, lib_root=lib)
    assert res.ok, res.reason
    assert sorted(res.by_name()) == ["dm-6", "md0"]
    assert "kallsyms" not in res.timings and "module_symtab" in res.timings


def test_kernel_state_falls_back_to_kallsyms_on_another_build(tmp_path: Path) -> None:
    kernel = KERNELS[-1]
    mem, _lay = build(kernel, md0={})
    sys_root, proc = tree(tmp_path, kernel, mem)
    lib, _ = install(tmp_path, "md_mod", elf({"all_mddevs": (".data", 0x810)}),
                     loaded_note=NOTE[:-1] + b"\x00", sections={".data": 0x1000})
    res = state(sys_root, proc, lib_root=lib)
    assert res.ok and "md0" in res.by_name(), res.reason
    assert "kallsyms" in res.timings
