"""Kernel headers for bcc's own includes (bcc compiles C against them, we never copy md.h).

bcc finds headers by itself only for the *running* kernel, as ``/lib/modules/$(uname -r)/build``
plus ``source``.  With ``BCC_KERNEL_SOURCE`` it wants ONE tree holding both the source headers
(``include/linux/kconfig.h``) and the generated ones (``include/generated``) - but Debian splits
them into ``linux-headers-R-common`` and ``linux-headers-R-amd64``.  For other releases (the
compile tests target the guest kernels' headers on any host) we build a merged tree of symlinks
in a cache directory and point ``BCC_KERNEL_SOURCE`` at it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from mdtrace.errors import EnvironmentProblem

MODULES_DIR = Path("/lib/modules")


def _is_tree(p: Path) -> bool:
    return (p / "include" / "linux" / "kconfig.h").is_file()


def headers_problem(release: str | None = None) -> str | None:
    """None when bcc can find headers for ``release`` (default: running kernel); else why."""
    release = release or platform.release()
    kdir = MODULES_DIR / release
    if os.environ.get("BCC_KERNEL_SOURCE") and release == platform.release():
        src = Path(os.environ["BCC_KERNEL_SOURCE"])
        return None if _is_tree(src) else f"BCC_KERNEL_SOURCE={src} has no include/linux/kconfig.h"
    if not (kdir / "build").is_dir():
        return (f"no kernel headers for {release} ({kdir}/build missing): install "
                f"linux-headers-{release} (scripts/setup-bcc.sh)")
    if _is_tree(kdir / "build") or _is_tree(kdir / "source"):
        return None
    return f"{kdir}/build has no include/linux/kconfig.h (incomplete linux-headers-{release})"


def merged_tree(release: str, cache: Path | None = None) -> Path:
    """A tree of symlinks joining Debian's split header packages for ``release``."""
    kdir = MODULES_DIR / release
    build, source = (kdir / "build").resolve(), (kdir / "source").resolve()
    if _is_tree(build):
        return build
    if not (build.is_dir() and _is_tree(source)):
        raise EnvironmentProblem(headers_problem(release) or f"no headers for {release}")
    root = (cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
            / "mdtrace" / "kheaders" / release)
    if _is_tree(root):
        return root
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    _merge(source, build, tmp)
    try:
        tmp.rename(root)
    except OSError:  # another process won the race
        pass
    return root


def _merge(a: Path, b: Path, dst: Path) -> None:
    """dst/x -> a/x or b/x; directories present in both are merged recursively."""
    dst.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in a.iterdir()} | {p.name for p in b.iterdir()}
    for name in sorted(names):
        pa, pb = a / name, b / name
        if pa.is_dir() and pb.is_dir() and not pa.is_symlink() and not pb.is_symlink():
            _merge(pa, pb, dst / name)
        else:
            (dst / name).symlink_to(pb if pb.exists() else pa)


def bcc_env_for(release: str) -> dict[str, str]:
    """Environment for compiling with bcc against ``release``'s headers ({} = bcc's default)."""
    if release == platform.release() and headers_problem(release) is None:
        return {}
    return {"BCC_KERNEL_SOURCE": str(merged_tree(release))}
