#!/usr/bin/env python3
"""Build a tests/data/btf/<release>/ directory from a kernel's Debian packages, without booting.

``capture_btf.sh`` (the guest way) copies /sys/kernel/btf/* and greps /proc/kallsyms and
available_filter_functions.  The same facts are in the packages:

- ``/sys/kernel/btf/vmlinux`` is vmlinux's ``.BTF`` section: from the unstripped ``vmlinux`` of
  linux-headers-<rel> (6.12, 7.2) or from ``vmlinuz`` decompressed (5.10 has no headers vmlinux);
- ``/sys/kernel/btf/<module>`` is the module's ``.BTF`` section (split BTF on vmlinux);
- kallsyms: the ``.symtab`` of an unstripped vmlinux (linux-headers' vmlinux, or the -dbg
  package's for 5.10: Debian's /boot/System.map is a one-line stub) and of each module (Debian
  strips debug info from modules, not symbols);
- available_filter_functions: the functions that ``__mcount_loc`` points into.

Checked on 6.12.117+deb12-amd64: every BTF blob made this way is byte-identical to the guest's
/sys/kernel/btf capture, and kallsyms.txt / traceable.txt equal the guest's for the functions of
the list (tests/test_btf_kernels.py keeps the 6.12 comparison honest).

Usage (needs binutils' ``objcopy`` and ``readelf``, and ``zstd``)::

    extract_from_debs.py --release R --vmlinux V [--vmlinux-syms ELF] --config C \
        --modules DIR [--module-btf-dir DIR2] OUT

``--module-btf-dir`` takes pahole-made split BTF (``<name>.btf``) for kernels whose modules
carry none (5.10: see README.md); they go to ``OUT/dwarf/`` (never under the names of real
/sys/kernel/btf blobs), and ``missing_btf`` lists the modules the kernel itself has no BTF for.
"""

from __future__ import annotations

import argparse
import lzma
import re
import struct
import subprocess
import sys
import tempfile
from bisect import bisect_left
from pathlib import Path

# capture_btf.sh's list, plus the names 7.x added or turned into macros
FUNCS = """md_check_recovery md_do_sync md_reap_sync_thread md_register_thread md_unregister_thread
mddev_suspend mddev_resume mddev_suspend_and_lock stop_sync_thread md_frozen_sync_thread
md_unfrozen_sync_thread md_idle_sync_thread raid5_make_request md_handle_request
make_stripe_request raid5_prepare_suspend raid5_start_reshape md_start_sync action_store
__md_stop_writes md_stop md_set_readonly dm_suspend dm_resume raid_message raid_postsuspend
raid_preresume raid_resume raid_presuspend raid_presuspend_undo raid_dtr raid_ctr raid_map
raid_status md_wakeup_thread md_new_event md_error mddev_unlock do_md_run md_run
reshape_request raid5d md_thread""".split()
EXTRA = "md_finish_sync __md_wakeup_thread md_done_sync".split()
MODULES = {"md_mod": "md-mod", "raid456": "raid456", "raid1": "raid1", "dm_raid": "dm-raid",
           "dm_mod": "dm-mod"}
CONFIG = re.compile(r"^CONFIG_(KPROBES|KPROBE_EVENTS|BPF_EVENTS|DEBUG_INFO_BTF|"
                    r"DEBUG_INFO_BTF_MODULES|MD_RAID456|MD_RAID1|DM_RAID|BLK_DEV_MD|"
                    r"FUNCTION_TRACER|FPROBE|DYNAMIC_FTRACE)=")


def base(name: str) -> str:
    return name.split(".", 1)[0]


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def section(elf: Path, name: str, out: Path) -> bool:
    with tempfile.NamedTemporaryFile() as junk:
        r = subprocess.run(["objcopy", f"--dump-section={name}={out}", str(elf), junk.name],
                           capture_output=True)
    return r.returncode == 0 and out.exists() and out.stat().st_size > 0


def open_ko(path: Path, tmp: Path) -> Path:
    if path.suffix == ".xz":
        dst = tmp / path.stem
        dst.write_bytes(lzma.decompress(path.read_bytes()))
        return dst
    return path


def vmlinux_elf(path: Path, tmp: Path) -> Path:
    """An ELF as is; a bzImage: the xz/gzip/zstd payload decompressed (extract-vmlinux)."""
    data = path.read_bytes()
    if data[:4] == b"\x7fELF":
        return path
    i = data.find(b"\xfd7zXZ\x00")
    if i < 0:
        sys.exit(f"{path}: no xz payload (add gzip/zstd here if a kernel needs it)")
    out = tmp / "vmlinux.elf"
    out.write_bytes(lzma.LZMADecompressor().decompress(data[i:]))
    return out


def symbols(elf: Path) -> list[tuple[str, int, int, str, str]]:
    """(name, value, size, type letter t/T, section name) of each FUNC in .symtab."""
    secs = {}
    for m in re.finditer(r"^\s*\[\s*(\d+)\]\s+(\S+)", run("readelf", "-SW", str(elf)), re.M):
        secs[m[1]] = m[2]
    out = []
    for line in run("readelf", "-sW", str(elf)).splitlines():
        p = line.split()
        if len(p) >= 8 and p[3] == "FUNC" and p[6].isdigit():
            letter = "T" if p[4] in ("GLOBAL", "WEAK") else "t"
            out.append((p[7], int(p[1], 16), int(p[2]), letter, secs.get(p[6], "")))
    return out


def mcount_funcs(elf: Path, syms: list[tuple[str, int, int, str, str]]) -> set[str]:
    """Function names __mcount_loc points into (a module's .rela__mcount_loc: section+addend)."""
    got: set[str] = set()
    text = run("readelf", "-rW", str(elf))
    m = re.search(r"Relocation section '\.rela__mcount_loc'.*?\n\n", text + "\n\n", re.S)
    if not m:
        return got
    by_sec: dict[str, list[tuple[int, int, str]]] = {}
    for name, val, size, _l, sec in syms:
        by_sec.setdefault(sec, []).append((val, size, name))
    for line in m[0].splitlines():
        r = re.search(r"R_X86_64_64\s+\S+\s+(\S+)\s*\+\s*([0-9a-f]+)", line)
        if not r:
            continue
        addr = int(r[2], 16)
        for val, size, name in by_sec.get(r[1], []):
            if val <= addr < val + max(size, 1):
                got.add(name)
    return got


def vmlinux_mcount(elf: Path, syms: list[tuple[str, int, int, str, str]]) -> set[str]:
    """vmlinux's __mcount_loc holds absolute addresses (sorted at build time)."""
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "mcount"
        if not section(elf, "__mcount_loc", out):
            return set()
        raw = out.read_bytes()
    addrs = sorted(struct.unpack(f"<{len(raw) // 8}Q", raw[: len(raw) // 8 * 8]))
    got = set()
    for name, val, size, _l, _sec in syms:
        i = bisect_left(addrs, val)
        if i < len(addrs) and addrs[i] < val + max(size, 1):
            got.add(name)
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--release", required=True)
    ap.add_argument("--vmlinux", type=Path, required=True, help="vmlinux ELF or vmlinuz")
    ap.add_argument("--vmlinux-syms", type=Path, help="unstripped vmlinux (default: --vmlinux)")
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--modules", type=Path, required=True, help="…/kernel/drivers/md")
    ap.add_argument("--module-btf-dir", type=Path, help="pahole-made <name>.btf (5.10)")
    ap.add_argument("out", type=Path)
    a = ap.parse_args()
    want = set(FUNCS + EXTRA)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "uname_r").write_text(a.release + "\n")
    missing_btf = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        vm = vmlinux_elf(a.vmlinux, tmp)
        raw = tmp / "vmlinux.btf"
        if not section(vm, ".BTF", raw):
            sys.exit(f"{a.vmlinux}: no .BTF section")
        blobs = {"vmlinux": raw}
        lines: list[str] = []
        traceable: list[str] = []
        vsym = a.vmlinux_syms or vm
        syms = symbols(vsym)
        traced = vmlinux_mcount(vsym, syms)
        for name, _v, _s, letter, _sec in syms:
            if base(name) in want:
                lines.append(f"0000000000000000 {letter} {name}")
                if name in traced:
                    traceable.append(name)
        for mod, fname in MODULES.items():
            cands = [a.modules / f"{fname}.ko", a.modules / f"{fname}.ko.xz"]
            ko = next((c for c in cands if c.exists()), None)
            if ko is None:
                sys.exit(f"{a.modules}: no {fname}.ko")
            elf = open_ko(ko, tmp)
            out = tmp / f"{mod}.btf"
            pre = a.module_btf_dir / f"{mod}.btf" if a.module_btf_dir else None
            if section(elf, ".BTF", out):
                blobs[mod] = out
            else:
                missing_btf.append(mod)
                if pre is not None and pre.exists():
                    blobs[f"dwarf/{mod}"] = pre
            syms = symbols(elf)
            traced = mcount_funcs(elf, syms)
            for name, _v, _s, letter, _sec in syms:
                if base(name) in want:
                    lines.append(f"0000000000000000 {letter} {name} [{mod}]")
                    if name in traced:
                        traceable.append(f"{name} [{mod}]")
        if any(n.startswith("dwarf/") for n in blobs):
            (a.out / "dwarf").mkdir(exist_ok=True)
        for name, path in blobs.items():
            subprocess.run(["zstd", "-q", "-19", "-f", str(path), "-o",
                            str(a.out / f"{name}.btf.zst")], check=True)
    if missing_btf:
        (a.out / "missing_btf").write_text("".join(f"{m}\n" for m in missing_btf))
    lines = sorted(set(lines), key=lambda s: (s.split()[2], s))
    (a.out / "kallsyms.txt").write_text("".join(x + "\n" for x in lines))
    seen = {base(x.split()[2]) for x in lines}
    (a.out / "kallsyms_missing.txt").write_text(
        "".join(f + "\n" for f in sorted(want - seen)))
    (a.out / "traceable.txt").write_text("".join(x + "\n" for x in sorted(set(traceable))))
    cfg = [x for x in a.config.read_text().splitlines() if CONFIG.match(x)]
    (a.out / "config.txt").write_text("".join(x + "\n" for x in cfg))


if __name__ == "__main__":
    main()
