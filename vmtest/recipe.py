"""What goes into the guest image, and the hash that keys the image cache.

Everything that changes the built image (Debian packages, kernels, suites, the guest agent
files, the guest's Python dependencies) is part of :class:`Recipe`, so a changed recipe gets a
new cache directory instead of silently reusing a stale image.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mdtrace.errors import MdtraceError

# Short names accepted on the command line -> Debian kernel release (`uname -r`).
# 6.1: bookworm's own kernel, before the 6.8/6.9 md fixes (82ec0ae59d02, ad39c08186f8, ...);
# 6.12: bookworm-security, after them.
KERNELS: dict[str, str] = {
    "6.1": "6.1.0-56-amd64",
    "6.12": "6.12.117+deb12-amd64",
}

BASE_PACKAGES: tuple[str, ...] = (
    "systemd-sysv", "udev", "kmod", "procps", "util-linux", "busybox", "initramfs-tools",
    "mdadm", "lvm2", "dmsetup", "fio", "e2fsprogs", "python3", "python3-bpfcc", "bpfcc-tools",
    "bpftool", "zstd", "tmux",
)

# The guest runs mdtrace from the shared tree with these (bookworm lacks most of them, or has
# older versions); installed on the host with `pip install --target` for CPython 3.11 x86_64,
# the guest's python3.  textual: `mdtrace top` runs live in the guest (tests/vm/guest/
# live_fronts.sh, in tmux).
GUEST_PY_DEPS: tuple[str, ...] = (
    "msgspec==0.22.0", "zstandard==0.25.0", "click==8.5.1", "prometheus-client==0.26.0",
    "textual==8.2.8",
)

GUEST_FILES_DIR = Path(__file__).with_name("guest")
# builder format version: bump when image.py changes what it puts in the image
BUILDER_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    """A reproducible description of the guest image."""

    kernels: tuple[str, ...] = tuple(KERNELS.values())
    packages: tuple[str, ...] = BASE_PACKAGES
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    py_deps: tuple[str, ...] = GUEST_PY_DEPS
    image_size_mb: int = 4096
    guest_files: tuple[tuple[str, str], ...] = field(default_factory=lambda: _guest_files())

    def all_packages(self) -> list[str]:
        pkgs = list(self.packages)
        for rel in self.kernels:
            pkgs += [f"linux-image-{rel}", f"linux-headers-{rel}"]
        return pkgs

    def apt_sources(self) -> list[str]:
        s = self.suite
        return [f"deb {self.mirror} {s} main", f"deb {self.mirror} {s}-updates main",
                f"deb {self.security_mirror} {s}-security main"]

    def digest(self) -> str:
        """Stable hash of everything that shapes the image: the cache key."""
        obj = asdict(self)
        obj["builder_version"] = BUILDER_VERSION
        blob = json.dumps(obj, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _guest_files() -> tuple[tuple[str, str], ...]:
    """(name, sha256) of the files baked into the image, so editing them changes the key."""
    out = []
    for p in sorted(GUEST_FILES_DIR.iterdir()):
        if p.is_file():
            out.append((p.name, hashlib.sha256(p.read_bytes()).hexdigest()))
    return tuple(out)


def default_recipe() -> Recipe:
    """The recipe, with mirrors overridable by MDTRACE_VM_MIRROR / MDTRACE_VM_SECURITY_MIRROR."""
    kw: dict[str, Any] = {}
    if os.environ.get("MDTRACE_VM_MIRROR"):
        kw["mirror"] = os.environ["MDTRACE_VM_MIRROR"]
    if os.environ.get("MDTRACE_VM_SECURITY_MIRROR"):
        kw["security_mirror"] = os.environ["MDTRACE_VM_SECURITY_MIRROR"]
    return Recipe(**kw)


def kernel_release(name: str) -> str:
    """'6.1' / '6.12' / a full release -> the full release; one-line error otherwise."""
    if name in KERNELS:
        return KERNELS[name]
    if name in KERNELS.values():
        return name
    raise MdtraceError(f"unknown guest kernel {name!r}: choose one of "
                       f"{', '.join(KERNELS)} (or {', '.join(KERNELS.values())})")


def cache_root() -> Path:
    """${MDTRACE_VM_CACHE:-~/.cache/mdtrace/vm}."""
    env = os.environ.get("MDTRACE_VM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mdtrace" / "vm"
