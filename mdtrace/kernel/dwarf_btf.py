"""Module BTF made from DWARF, for kernels that build none (5.10 and older).

mdtrace reads md's struct layout from the md modules' BTF (``/sys/kernel/btf/md_mod`` ...).
Kernels before 5.11 have no module BTF at all: ``CONFIG_DEBUG_INFO_BTF_MODULES`` arrived with
5.11 (commit 5f9ae91f7c0d "kbuild: Build kernel module BTFs if BTF is enabled and pahole
supports it"; 36e68442d1af "bpf: Load and verify kernel module BTFs" is the loader); Debian
bullseye's 5.10 has ``CONFIG_DEBUG_INFO_BTF=y`` (``/sys/kernel/btf/vmlinux``) but no ``.BTF``
in any ``.ko``.  md.h is not in linux-headers either.

The same layout is in the DWARF of the distribution's debug package
(``linux-image-<release>-dbg``: ``/usr/lib/debug/lib/modules/<release>/kernel/drivers/md/``).
pahole (package ``dwarves``) encodes it as split BTF on top of the running kernel's vmlinux
BTF, exactly what kbuild does for 5.11+ modules::

    pahole -J --btf_base /sys/kernel/btf/vmlinux copy-of-md-mod.ko
    objcopy --dump-section .BTF=md_mod.btf copy-of-md-mod.ko

Measured (tests/data/btf/README.md): on 6.12.117 this gives every offset, enum and struct
layout mdtrace reads identical to the kernel's own module BTF; on 5.10.223 bullseye's pahole
1.20 and bookworm's 1.24 agree; the five md/dm modules take ~1 s.

:func:`build` writes ``<module>.btf`` plus a copy of vmlinux BTF into
``/var/cache/mdtrace/btf/<release>/``; :meth:`mdtrace.kernel.offsets.BtfSet.from_dir` looks there
for modules /sys/kernel/btf lacks, and ``mdtrace record --btf-dir`` can point at it directly.
Run it as ``python3 -m mdtrace.kernel.dwarf_btf``.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mdtrace.errors import EnvironmentProblem

CACHE = Path("/var/cache/mdtrace/btf")
DEBUG_MODULES = Path("/usr/lib/debug/lib/modules")
SYS_VMLINUX = Path("/sys/kernel/btf/vmlinux")
# BTF name (as in /sys/kernel/btf) -> module file name
MODULE_FILES = {"md_mod": "md-mod", "raid456": "raid456", "raid1": "raid1", "dm_mod": "dm-mod",
                "dm_raid": "dm-raid"}


def cache_dir(release: str | None = None, root: Path = CACHE) -> Path:
    return root / (release or platform.release())


def debug_module(release: str, name: str, root: Path = DEBUG_MODULES) -> Path | None:
    """The -dbg package's DWARF copy of module ``name`` (md_mod -> .../md-mod.ko)."""
    d = root / release / "kernel" / "drivers" / "md"
    for cand in (d / f"{MODULE_FILES.get(name, name)}.ko", d / f"{name}.ko"):
        if cand.is_file():
            return cand
    return None


def build_id(elf: Path, readelf: str = "readelf") -> str:
    """GNU build-id of an ELF ('' if none / unreadable); the -dbg copy of a module shares the
    stripped module's id, so a mismatch means the debug package is for another build."""
    try:
        out = subprocess.run([readelf, "-n", str(elf)], capture_output=True, text=True,
                             check=False).stdout
    except OSError:
        return ""
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split("Build ID:", 1)[1].strip()
    return ""


def _installed_module(release: str, name: str, lib_modules: Path) -> Path | None:
    d = lib_modules / release / "kernel" / "drivers" / "md"
    stem = MODULE_FILES.get(name, name)
    for cand in (d / f"{stem}.ko", d / f"{stem}.ko.xz", d / f"{stem}.ko.zst"):
        if cand.is_file():
            return cand
    return None


def build(release: str | None = None, out: Path | None = None, *,
          vmlinux: Path = SYS_VMLINUX, debug_root: Path = DEBUG_MODULES,
          lib_modules: Path = Path("/lib/modules"), pahole: str = "pahole",
          objcopy: str = "objcopy", readelf: str = "readelf",
          modules: tuple[str, ...] = tuple(MODULE_FILES)) -> dict[str, Path]:
    """Encode split BTF for ``modules`` from the -dbg DWARF; {module: written .btf}.

    md_mod is required (EnvironmentProblem naming the package to install); the others are
    skipped when their debug file is absent.
    """
    release = release or platform.release()
    out = out or cache_dir(release)
    if not vmlinux.is_file():
        raise EnvironmentProblem(f"{vmlinux}: no kernel BTF (CONFIG_DEBUG_INFO_BTF=y is needed "
                                 "as the base of module BTF)")
    for tool, pkg in ((pahole, "dwarves"), (objcopy, "binutils")):
        if shutil.which(tool) is None:
            raise EnvironmentProblem(f"{tool} not found: apt-get install {pkg}")
    if debug_module(release, "md_mod", debug_root) is None:
        raise EnvironmentProblem(
            f"no DWARF for md_mod under {debug_root}/{release}: apt-get install "
            f"linux-image-{release}-dbg (Debian; ~0.8 GB download, ~5.4 GB installed for 5.10)")
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as td:
        for name in modules:
            src = debug_module(release, name, debug_root)
            if src is None:
                continue
            inst = _installed_module(release, name, lib_modules)
            if inst is not None and inst.suffix == ".ko":
                want, got = build_id(inst, readelf), build_id(src, readelf)
                if want and got and want != got:
                    raise EnvironmentProblem(
                        f"{src} (build-id {got}) is not the DWARF of {inst} ({want}): the -dbg "
                        f"package does not match the installed kernel {release}")
            tmp = Path(td) / f"{name}.ko"
            shutil.copyfile(src, tmp)    # pahole -J adds .BTF to the file it reads
            r = subprocess.run([pahole, "-J", "--btf_base", str(vmlinux), str(tmp)],
                               capture_output=True, text=True, check=False)
            dst = out / f"{name}.btf"
            if r.returncode == 0:
                r = subprocess.run([objcopy, f"--dump-section=.BTF={dst}", str(tmp),
                                    str(Path(td) / "junk.o")],
                                   capture_output=True, text=True, check=False)
            if r.returncode != 0 or not dst.is_file():
                raise EnvironmentProblem(f"pahole/objcopy failed on {src}: "
                                         f"{(r.stderr or r.stdout).strip()[:300]}")
            done[name] = dst
    shutil.copyfile(vmlinux, out / "vmlinux")   # so --btf-dir OUT is self-contained
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m mdtrace.kernel.dwarf_btf",
        description="Make md/dm module BTF from the kernel's -dbg package (kernels without "
                    "CONFIG_DEBUG_INFO_BTF_MODULES, e.g. Debian 11's 5.10)")
    ap.add_argument("--release", default=platform.release())
    ap.add_argument("--out", type=Path, help=f"default: {CACHE}/<release>")
    ap.add_argument("--vmlinux", type=Path, default=SYS_VMLINUX)
    ap.add_argument("--debug-root", type=Path, default=DEBUG_MODULES)
    a = ap.parse_args(argv)
    try:
        done = build(a.release, a.out, vmlinux=a.vmlinux, debug_root=a.debug_root)
    except EnvironmentProblem as exc:
        print(f"mdtrace: {exc}", file=sys.stderr)
        return 2
    for name, p in done.items():
        print(f"{name}: {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
