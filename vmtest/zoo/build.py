"""Build the zoo: md_mod, raid456 and dm_raid of the guest's 6.12.117 kernel, out of tree, with
one fix of the seed series reverted per variant, cached by a recipe key.

Source: Debian's ``linux-source-6.12`` 6.12.117-1~deb12u1 (bookworm-security), the exact source
of the guest's ``linux-image-6.12.117+deb12-amd64``; built against
``linux-headers-6.12.117+deb12-amd64`` (whose ``vmlinux`` carries the BTF the modules' split BTF
is generated against).  Layout of the cache, like the guest image's (vmtest/image.py)::

    <cache_root>/zoo/src-6.12.117-1~deb12u1/drivers/md/   the pristine md sources (extracted once)
    <cache_root>/zoo/<variant>-<key>/                      md-mod.ko raid456.ko dm-raid.ko,
                                                           manifest.json, variant.patch

``key`` hashes the source and headers versions, the patch, the Kbuild, the marker and this
builder's version: changing any of them builds a new entry.  Entries are built in a sibling
``.building`` directory and renamed into place; a lock file serialises builders.

Each module also carries a marker (its own object file, so the variant's diff stays exactly
the fix's): ``modinfo -F mdtrace_zoo`` and, once loaded,
``/sys/module/<mod>/parameters/zoo_variant`` name the variant.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mdtrace.errors import EnvironmentProblem, MdtraceError
from vmtest.recipe import cache_root
from vmtest.zoo.variants import Variant, variant

Log = Callable[[str], None]

RELEASE = "6.12.117+deb12-amd64"
SOURCE_PKG = "linux-source-6.12"
SOURCE_VERSION = "6.12.117-1~deb12u1"
HEADERS_PKG = f"linux-headers-{RELEASE}"
TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
HEADERS_DIR = Path(f"/usr/src/linux-headers-{RELEASE}")
SECURITY_SOURCE = "deb http://deb.debian.org/debian-security bookworm-security main"
BUILDER_VERSION = 1

# what the three modules are made of (drivers/md/Makefile of 6.12), plus the headers they use
SOURCES = ("md.c", "md.h", "md-bitmap.c", "md-bitmap.h", "md-cluster.h", "raid5.c", "raid5.h",
           "raid5-cache.c", "raid5-ppl.c", "raid5-log.h", "raid0.h", "raid1.h", "raid10.h",
           "dm-raid.c")
MODULES = ("md-mod.ko", "raid456.ko", "dm-raid.ko")
# dm-raid is one object upstream; it becomes dm-raid-main.o + the marker (a composite module
# cannot share its name with one of its objects)
KBUILD = """\
obj-m := md-mod.o raid456.o dm-raid.o
md-mod-y := md.o md-bitmap.o zoo_md.o
raid456-y := raid5.o raid5-cache.o raid5-ppl.o zoo_r5.o
dm-raid-y := dm-raid-main.o zoo_dm.o
"""
MARKER = """\
// SPDX-License-Identifier: GPL-2.0
/* mdtrace zoo marker: which variant this module was built as (vmtest/zoo/build.py) */
#include <linux/module.h>
#include <linux/moduleparam.h>
static char *zoo_variant = "{name}";
module_param(zoo_variant, charp, 0444);
MODULE_PARM_DESC(zoo_variant, "mdtrace zoo variant (reverted fix: {commit})");
MODULE_INFO(mdtrace_zoo, "{name}");
"""


def _stderr_log(msg: str) -> None:
    print(f"vm-zoo: {msg}", file=sys.stderr, flush=True)


def zoo_root() -> Path:
    return cache_root() / "zoo"


def recipe_key(v: Variant) -> str:
    """Hash of everything that shapes a variant's modules: its cache key."""
    obj = {"source": [SOURCE_PKG, SOURCE_VERSION], "headers": HEADERS_PKG,
           "release": RELEASE, "sources": SOURCES, "kbuild": KBUILD, "marker": MARKER,
           "builder": BUILDER_VERSION, "variant": v.name, "commit": v.commit,
           "patch": hashlib.sha256(v.patch_path.read_bytes()).hexdigest()}
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ZooBuild:
    """A built, cached variant."""

    variant: str
    key: str
    path: Path
    manifest: dict[str, object]

    def modules(self) -> list[Path]:
        return [self.path / m for m in MODULES]


def find_build(name: str) -> ZooBuild | None:
    v = variant(name)
    key = recipe_key(v)
    d = zoo_root() / f"{v.name}-{key}"
    try:
        manifest = json.loads((d / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not all((d / m).is_file() for m in MODULES):
        return None
    return ZooBuild(v.name, key, d, manifest)


def _pkg_version(pkg: str) -> str | None:
    try:
        proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def _run(cmd: list[str], what: str, cwd: Path | None = None, timeout: float = 1800) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    except FileNotFoundError:
        raise EnvironmentProblem(f"{what}: {cmd[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise MdtraceError(f"{what}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines() or ["no output"]
        raise MdtraceError(f"{what} failed (exit {proc.returncode}): {lines[-1]}")
    return proc.stdout


def ensure_packages(log: Log = _stderr_log) -> None:
    """linux-source-6.12 and the headers at the guest kernel's exact version, installed with
    apt-get when missing (root only; bookworm-security added to the sources when apt does not
    know the version)."""
    want = {SOURCE_PKG: SOURCE_VERSION, HEADERS_PKG: SOURCE_VERSION}
    missing = [f"{p}={v}" for p, v in want.items() if _pkg_version(p) != v]
    if not missing:
        return
    if os.geteuid() != 0:
        raise EnvironmentProblem(f"the zoo needs {' '.join(missing)} installed "
                                 f"(apt-get install as root)")
    log(f"installing {' '.join(missing)}")
    try:
        _run(["apt-get", "install", "-y", "-q", *missing], "apt-get install")
    except MdtraceError:
        lst = Path("/etc/apt/sources.list.d/mdtrace-zoo-security.list")
        if not lst.exists():
            lst.write_text(SECURITY_SOURCE + "\n")
        _run(["apt-get", "update", "-q"], "apt-get update")
        _run(["apt-get", "install", "-y", "-q", *missing], "apt-get install")
    for p, v in want.items():
        if _pkg_version(p) != v:
            raise EnvironmentProblem(f"{p} {v} is not installable here "
                                     f"(installed: {_pkg_version(p) or 'none'})")


def source_tree(log: Log = _stderr_log) -> Path:
    """The pristine drivers/md of linux-source-6.12, extracted once into the cache."""
    root = zoo_root()
    dest = root / f"src-{SOURCE_VERSION}"
    if all((dest / "drivers/md" / f).is_file() for f in SOURCES):
        return dest
    ensure_packages(log)
    if not TARBALL.is_file():
        raise EnvironmentProblem(f"{TARBALL} missing (package {SOURCE_PKG})")
    tmp = root / f"src-{SOURCE_VERSION}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.monotonic()
    _run(["tar", "-xJf", str(TARBALL), "-C", str(tmp), "--strip-components=1",
          *[f"linux-source-6.12/drivers/md/{f}" for f in SOURCES]], "extracting the md sources")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    log(f"extracted drivers/md of {SOURCE_PKG} {SOURCE_VERSION} in {time.monotonic() - t0:.1f} s")
    return dest


def _has_btf(ko: Path) -> bool:
    out = _run(["readelf", "-S", "-W", str(ko)], f"readelf {ko.name}")
    return any(line.split()[1:2] == [".BTF"] or " .BTF " in line for line in out.splitlines())


def _modinfo(ko: Path, field: str) -> str:
    return _run(["modinfo", "-F", field, str(ko)], f"modinfo {ko.name}").strip()


def ensure_build(name: str, *, rebuild: bool = False, log: Log = _stderr_log) -> ZooBuild:
    """The variant's built modules (cached by recipe key), built cold when missing."""
    v = variant(name)
    if not rebuild:
        found = find_build(v.name)
        if found:
            return found
    root = zoo_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not rebuild:
            found = find_build(v.name)
            if found:
                return found
        return _build(v, log)


def _build(v: Variant, log: Log) -> ZooBuild:
    t0 = time.monotonic()
    src = source_tree(log)
    ensure_packages(log)
    if not (HEADERS_DIR / "Makefile").is_file():
        raise EnvironmentProblem(f"{HEADERS_DIR} missing (package {HEADERS_PKG})")
    key = recipe_key(v)
    root = zoo_root()
    dest = root / f"{v.name}-{key}"
    tmp = root / f"{v.name}-{key}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    md = tmp / "tree/drivers/md"
    md.mkdir(parents=True)
    for f in SOURCES:
        shutil.copy2(src / "drivers/md" / f, md / f)
    _run(["patch", "-p1", "--forward", "--no-backup-if-mismatch", "-i", str(v.patch_path)],
         f"applying {v.patch}", cwd=tmp / "tree")
    (md / "dm-raid.c").rename(md / "dm-raid-main.c")
    for tag in ("md", "r5", "dm"):
        (md / f"zoo_{tag}.c").write_text(MARKER.format(name=v.name, commit=v.commit))
    (md / "Kbuild").write_text(KBUILD)
    t_make = time.monotonic()
    _run(["make", "-s", "-C", str(HEADERS_DIR), f"M={md}", f"-j{os.cpu_count() or 2}",
          "modules"], f"building {v.name}")
    make_s = time.monotonic() - t_make
    mods: dict[str, str] = {}
    for m in MODULES:
        ko = md / m
        _run(["strip", "--strip-debug", str(ko)], f"strip {m}")
        vermagic = _modinfo(ko, "vermagic")
        if vermagic.split()[:1] != [RELEASE]:
            raise MdtraceError(f"{m}: vermagic {vermagic!r} does not match {RELEASE}")
        if not _has_btf(ko):
            raise MdtraceError(f"{m}: no .BTF section (pahole missing on the build host?)")
        if _modinfo(ko, "mdtrace_zoo") != v.name:
            raise MdtraceError(f"{m}: zoo marker missing")
        shutil.copy2(ko, tmp / m)
        mods[m] = hashlib.sha256(ko.read_bytes()).hexdigest()
    shutil.copy2(v.patch_path, tmp / "variant.patch")
    manifest: dict[str, object] = {
        "variant": v.name, "key": key, "commit": v.commit, "title": v.title,
        "seed_patch": v.seed_patch, "source": f"{SOURCE_PKG} {SOURCE_VERSION}",
        "headers": f"{HEADERS_PKG} {_pkg_version(HEADERS_PKG)}", "release": RELEASE,
        "vermagic": _modinfo(tmp / MODULES[0], "vermagic"), "btf": True, "modules": mods,
        "make_s": round(make_s, 1), "build_s": round(time.monotonic() - t0, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(tmp / "tree")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    log(f"built {v.name} ({v.commit} reverted) in {manifest['build_s']} s "
        f"(make {manifest['make_s']} s): {dest}")
    return ZooBuild(v.name, key, dest, manifest)
