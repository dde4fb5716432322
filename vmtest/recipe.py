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
# 6.12: bookworm-security, after them; 5.10: bullseye (Debian 11 / RHEL 9 era: Python 3.9,
# bcc 0.18, no module BTF: CONFIG_DEBUG_INFO_BTF_MODULES came in 5.11); 7.2: sid (Python 3.14,
# bcc 0.37).  Each runs in its own distro's userland (issue 15): see GUESTS.
KERNELS: dict[str, str] = {
    "5.10": "5.10.0-32-amd64",
    "6.1": "6.1.0-56-amd64",
    "6.12": "6.12.117+deb12-amd64",
    "7.2": "7.2.13+deb14-amd64",
}

# The kernels `make test` (.ci/run) boots; MDTRACE_VM_KERNELS=all (``make vm-all``) or a
# comma list picks others (docs/vm.md says why CI runs these two).
TIER_KERNELS: tuple[str, ...] = ("6.1", "6.12")


def tier_kernels() -> list[str]:
    """Short names of the kernels the vm tier runs here ($MDTRACE_VM_KERNELS or TIER_KERNELS)."""
    env = os.environ.get("MDTRACE_VM_KERNELS", "").strip()
    if not env:
        return list(TIER_KERNELS)
    if env == "all":
        return list(KERNELS)
    names = [n.strip() for n in env.split(",") if n.strip()]
    for n in names:
        if n not in KERNELS:
            raise MdtraceError(f"MDTRACE_VM_KERNELS: unknown kernel {n!r}: choose from "
                               f"{', '.join(KERNELS)} or 'all'")
    return names


BASE_PACKAGES: tuple[str, ...] = (
    "systemd-sysv", "udev", "kmod", "procps", "util-linux", "busybox", "initramfs-tools",
    "mdadm", "lvm2", "dmsetup", "fio", "e2fsprogs", "python3", "python3-bpfcc", "bpfcc-tools",
    "bpftool", "zstd", "tmux",
)

# The guest runs mdtrace with these Python deps (the distros lack most of them, or have
# older versions); installed on the host with `pip install --target` for the guest's CPython
# (GuestOS.python), x86_64.  textual: `mdtrace top` runs live in the guest (tests/vm/guest/
# live_fronts.sh, in tmux).  click 8.2 dropped Python 3.9, hence bullseye's own pins
# (and tomli: mdtrace/config.py reads TOML without tomllib before 3.11).
GUEST_PY_DEPS: tuple[str, ...] = (
    "msgspec==0.22.0", "zstandard==0.25.0", "click==8.5.1", "prometheus-client==0.26.0",
    "textual==8.2.8",
)
GUEST_PY_DEPS_39: tuple[str, ...] = (
    "msgspec==0.19.0", "zstandard==0.25.0", "click==8.1.8", "prometheus-client==0.21.1",
    "textual==3.7.1", "tomli==2.2.1",
)


@dataclass(frozen=True)
class GuestOS:
    """One distro's userland: its suite, kernels, Python and apt sources."""

    suite: str
    kernels: tuple[str, ...]          # short names (KERNELS keys)
    python: str                       # the distro's python3, for the guest's wheels
    py_deps: tuple[str, ...] = GUEST_PY_DEPS
    updates: bool = True              # <suite>-updates exists
    security: bool = True             # <suite>-security is used
    image_size_mb: int = 4096


GUESTS: dict[str, GuestOS] = {
    # bullseye-security: the mirror reachable here lists its packages but lacks their pool
    # files (bpftool 5.10.262: 404), and the kernel, 5.10.0-32, is in bullseye itself
    "bullseye": GuestOS("bullseye", ("5.10",), "3.9", GUEST_PY_DEPS_39, security=False,
                        image_size_mb=3072),
    "bookworm": GuestOS("bookworm", ("6.1", "6.12"), "3.11"),
    "sid": GuestOS("sid", ("7.2",), "3.14", updates=False, security=False, image_size_mb=3072),
}


def guest_os(kernel: str) -> GuestOS:
    """The distro whose image holds ``kernel`` (short name or release)."""
    short = {v: k for k, v in KERNELS.items()}.get(kernel, kernel)
    for g in GUESTS.values():
        if short in g.kernels:
            return g
    kernel_release(kernel)  # the one-line error for an unknown name
    raise MdtraceError(f"no guest distro holds kernel {kernel!r}")


GUEST_FILES_DIR = Path(__file__).with_name("guest")
# builder format version: bump when image.py changes what it puts in the image
BUILDER_VERSION = 2   # 2: the Python deps' bytecode compiled in the image


@dataclass(frozen=True)
class Recipe:
    """A reproducible description of one guest image (one distro, its kernels)."""

    kernels: tuple[str, ...] = (KERNELS["6.1"], KERNELS["6.12"])
    packages: tuple[str, ...] = BASE_PACKAGES
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    py_deps: tuple[str, ...] = GUEST_PY_DEPS
    image_size_mb: int = 4096
    guest_files: tuple[tuple[str, str], ...] = field(default_factory=lambda: _guest_files())
    python: str = "3.11"
    updates: bool = True
    security: bool = True

    def all_packages(self) -> list[str]:
        pkgs = list(self.packages)
        for rel in self.kernels:
            pkgs += [f"linux-image-{rel}", f"linux-headers-{rel}"]
        return pkgs

    def apt_sources(self) -> list[str]:
        s = self.suite
        out = [f"deb {self.mirror} {s} main"]
        if self.updates:  # sid has neither -updates nor -security
            out.append(f"deb {self.mirror} {s}-updates main")
        if self.security:
            out.append(f"deb {self.security_mirror} {s}-security main")
        return out

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


def default_recipe(kernel: str = "6.12") -> Recipe:
    """The recipe of the image holding ``kernel``, with mirrors overridable by
    MDTRACE_VM_MIRROR / MDTRACE_VM_SECURITY_MIRROR."""
    g = guest_os(kernel)
    kw: dict[str, Any] = {}
    if os.environ.get("MDTRACE_VM_MIRROR"):
        kw["mirror"] = os.environ["MDTRACE_VM_MIRROR"]
    if os.environ.get("MDTRACE_VM_SECURITY_MIRROR"):
        kw["security_mirror"] = os.environ["MDTRACE_VM_SECURITY_MIRROR"]
    return Recipe(kernels=tuple(KERNELS[k] for k in g.kernels), suite=g.suite,
                  py_deps=g.py_deps, image_size_mb=g.image_size_mb, python=g.python,
                  updates=g.updates, security=g.security, **kw)


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
