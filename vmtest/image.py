"""Build the guest image from Debian packages only, cached by recipe hash.

Layout of one cache entry, ``<cache_root>/<recipe digest>/``::

    root.img              ext4 root filesystem (sparse raw; booted with snapshot=on, never written)
    vmlinuz-<release>     kernels and initrds, copied out of the rootfs's /boot
    initrd.img-<release>
    manifest.json         recipe, build time, package versions

The entry is built in a temporary sibling directory and renamed into place, so an interrupted
build never leaves a half image that a later run would boot; a lock file serialises builders.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mdtrace.errors import EnvironmentProblem, MdtraceError
from vmtest.recipe import GUEST_FILES_DIR, Recipe, cache_root, default_recipe, kernel_release

Log = Callable[[str], None]


@dataclass(frozen=True)
class GuestImage:
    """A built, cached image: what the runner needs to boot it."""

    path: Path
    recipe_digest: str
    kernels: tuple[str, ...]
    manifest: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def root_img(self) -> Path:
        return self.path / "root.img"

    def vmlinuz(self, kernel: str) -> Path:
        return self.path / f"vmlinuz-{kernel_release(kernel)}"

    def initrd(self, kernel: str) -> Path:
        return self.path / f"initrd.img-{kernel_release(kernel)}"


def _stderr_log(msg: str) -> None:
    print(f"mdtrace vm: {msg}", file=sys.stderr, flush=True)


def find_image(recipe: Recipe | None = None, root: Path | None = None) -> GuestImage | None:
    """The cached image for ``recipe``, or None when it has not been built."""
    recipe = recipe or default_recipe()
    d = (root or cache_root()) / recipe.digest()
    man = d / "manifest.json"
    if not man.is_file() or not (d / "root.img").is_file():
        return None
    try:
        manifest = json.loads(man.read_text())
    except (OSError, ValueError):
        return None
    return GuestImage(d, recipe.digest(), recipe.kernels, manifest)


def build_tools_problem() -> str | None:
    """Why this machine cannot build the image (missing tool / not root), or None."""
    if os.geteuid() != 0:
        return "building the guest image needs root (mmdebstrap, mkfs.ext4 -d)"
    for tool in ("mmdebstrap", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return (f"{tool} not found: install it with "
                    "'apt-get install mmdebstrap e2fsprogs' (scripts/install-system-deps.sh)")
    return None


def ensure_image(recipe: Recipe | None = None, root: Path | None = None, *,
                 rebuild: bool = False, log: Log = _stderr_log) -> GuestImage:
    """Return the cached image, building it first when missing (a few minutes, cold)."""
    recipe = recipe or default_recipe()
    root = root or cache_root()
    if not rebuild:
        img = find_image(recipe, root)
        if img is not None:
            return img
    problem = build_tools_problem()
    if problem:
        raise EnvironmentProblem(problem)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not rebuild:
            img = find_image(recipe, root)  # built by someone else while we waited
            if img is not None:
                return img
        return _build(recipe, root, log)


def image_for(kernel: str, *, rebuild: bool = False, log: Log = _stderr_log) -> GuestImage:
    """The (cached, else built) image of the distro that ships ``kernel`` (recipe.GUESTS)."""
    return ensure_image(default_recipe(kernel), rebuild=rebuild, log=log)


def _run(cmd: list[str], log: Log, what: str) -> None:
    log(f"{what}: {' '.join(cmd[:3])} ...")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = " | ".join(proc.stdout.strip().splitlines()[-5:])
        raise MdtraceError(f"guest image build failed at {what} (exit {proc.returncode}): {tail}")


def _build(recipe: Recipe, root: Path, log: Log) -> GuestImage:
    digest = recipe.digest()
    final = root / digest
    tmp = root / f"{digest}.building"
    if tmp.exists():
        _safe_rmtree(tmp)
    tmp.mkdir()
    rootfs = tmp / "rootfs"
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        cmd = ["mmdebstrap", "--variant=minbase", "--mode=root", "--components=main",
               "--include=" + ",".join(recipe.all_packages()),
               "--aptopt=Acquire::Retries \"3\"",
               # a mirror snapshot serves sid's InRelease past its Valid-Until (seen: expired
               # 26 days); the packages are what the recipe names either way
               "--aptopt=Acquire::Check-Valid-Until \"false\"",
               "--dpkgopt=path-exclude=/usr/share/doc/*",
               "--dpkgopt=path-exclude=/usr/share/man/*",
               "--dpkgopt=path-exclude=/usr/share/locale/*",
               "--dpkgopt=path-include=/usr/share/doc/*/copyright",
               recipe.suite, str(rootfs), *recipe.apt_sources()]
        _run(cmd, log, "mmdebstrap (Debian packages, ~2-5 min)")
        timings["mmdebstrap_s"] = round(time.monotonic() - t0, 1)
        t1 = time.monotonic()
        _install_py_deps(recipe, rootfs / "opt" / "mdtrace-deps", log)
        timings["pip_s"] = round(time.monotonic() - t1, 1)
        t1 = time.monotonic()
        _compile_py_deps(rootfs, log)
        timings["bytecode_s"] = round(time.monotonic() - t1, 1)
        _customise(rootfs)
        versions = _package_versions(rootfs)
        for rel in recipe.kernels:
            for name in (f"vmlinuz-{rel}", f"initrd.img-{rel}"):
                src = rootfs / "boot" / name
                if not src.is_file():
                    raise MdtraceError(f"guest image build: {src} missing after mmdebstrap "
                                       "(kernel or initramfs-tools failed to install)")
                shutil.copy2(src, tmp / name)
        t2 = time.monotonic()
        _run(["mkfs.ext4", "-q", "-F", "-L", "mdtrace-root", "-E", "root_owner=0:0",
              "-d", str(rootfs), str(tmp / "root.img"), f"{recipe.image_size_mb}M"],
             log, "mkfs.ext4 -d (root.img)")
        timings["mkfs_s"] = round(time.monotonic() - t2, 1)
        _safe_rmtree(rootfs)
        timings["total_s"] = round(time.monotonic() - t0, 1)
        manifest = {"recipe": asdict(recipe), "digest": digest, "built": time.time(),
                    "timings": timings, "packages": versions}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        _safe_rmtree(tmp, ignore_errors=True)
        raise
    log(f"image built in {timings['total_s']} s: {final}")
    return GuestImage(final, digest, recipe.kernels, manifest)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (an interrupted mmdebstrap may leave /proc, /dev...)."""
    base = str(path.resolve())
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    pts = [ln.split()[1].replace("\\040", " ") for ln in lines if len(ln.split()) > 1]
    return sorted((m for m in pts if m == base or m.startswith(base + "/")), reverse=True)


def _safe_rmtree(path: Path, ignore_errors: bool = False) -> None:
    """rmtree that never descends into a mounted /dev or /proc of a half-built rootfs."""
    for m in _mounts_under(path):
        subprocess.run(["umount", "-l", m], capture_output=True)
    left = _mounts_under(path)
    if left:
        raise MdtraceError(f"refusing to delete {path}: still mounted below it: {left[0]} "
                           "(umount it, then retry)")
    shutil.rmtree(path, ignore_errors=ignore_errors)


def _install_py_deps(recipe: Recipe, target: Path, log: Log) -> None:
    """Wheels for the guest's CPython (the distro's python3) x86_64, whatever Python runs
    this builder."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-compile", "--target", str(target), "--only-binary=:all:",
           "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
           "--python-version", recipe.python, "--implementation", "cp", *recipe.py_deps]
    _run(cmd, log, "pip install --target (guest Python deps)")


def _compile_py_deps(rootfs: Path, log: Log) -> None:
    """The deps' bytecode, by the guest's own python3 (the .pyc magic is per CPython version):
    compiled here once on the host's cores, not in every boot under TCG, where textual and rich
    alone took 50-63 s of a live boot (ci21).  Guests only read it: the agent runs with
    PYTHONDONTWRITEBYTECODE, which stops writes, not reads."""
    cmd = ["chroot", str(rootfs), "python3", "-m", "compileall", "-q", "/opt/mdtrace-deps"]
    log("compileall /opt/mdtrace-deps (guest python3) ...")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode > 1:   # 1: some file did not compile (it is compiled when imported)
        tail = " | ".join(proc.stdout.strip().splitlines()[-5:])
        raise MdtraceError(f"guest image build failed at compileall in {rootfs} "
                           f"(exit {proc.returncode}): {tail}")


def _customise(rootfs: Path) -> None:
    """Install the boot agent, enable it, and mask what only slows a TCG boot down."""
    sbin = rootfs / "usr/local/sbin"
    sbin.mkdir(parents=True, exist_ok=True)
    shutil.copy2(GUEST_FILES_DIR / "mdtrace-vm-agent", sbin / "mdtrace-vm-agent")
    shutil.copy2(GUEST_FILES_DIR / "mdtrace", rootfs / "usr/local/bin/mdtrace")
    unit_dir = rootfs / "etc/systemd/system"
    shutil.copy2(GUEST_FILES_DIR / "mdtrace-vm.service", unit_dir / "mdtrace-vm.service")
    wants = unit_dir / "multi-user.target.wants"
    wants.mkdir(exist_ok=True)
    link = wants / "mdtrace-vm.service"
    if not link.exists():
        link.symlink_to("/etc/systemd/system/mdtrace-vm.service")
    for unit in ("serial-getty@ttyS0.service", "getty@tty1.service", "mdmonitor.service",
                 "mdcheck_start.timer", "mdcheck_continue.timer", "mdmonitor-oneshot.timer",
                 "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer",
                 "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
                 "systemd-timesyncd.service", "logrotate.timer", "man-db.timer"):
        m = unit_dir / unit
        if not m.exists() and not m.is_symlink():
            m.symlink_to("/dev/null")
    (rootfs / "etc/hostname").write_text("mdtrace-guest\n")
    (rootfs / "etc/fstab").write_text("/dev/vda / ext4 rw,noatime 0 1\n")
    # no root password: the console is never interactive, the guest has no network
    subprocess.run(["chroot", str(rootfs), "passwd", "-d", "root"], capture_output=True)


def _package_versions(rootfs: Path) -> dict[str, str]:
    proc = subprocess.run(["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W",
                           "-f=${Package} ${Version}\n"], capture_output=True, text=True)
    out = {}
    for line in proc.stdout.splitlines():
        name, _, ver = line.partition(" ")
        if name.startswith(("linux-", "mdadm", "lvm2", "dmsetup", "fio", "python3",
                            "bpfcc", "bpftool", "libbpfcc", "systemd", "udev")):
            out[name] = ver
    return out
