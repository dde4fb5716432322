"""Fast checks of the VM harness that need no qemu: recipe hashing, kernel names, qemu argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdtrace.errors import MdtraceError
from mdtrace.vm.image import GuestImage, find_image
from mdtrace.vm.recipe import KERNELS, Recipe, cache_root, kernel_release
from mdtrace.vm.runner import build_cmdline


def test_recipe_digest_stable_and_sensitive() -> None:
    a, b = Recipe(), Recipe()
    assert a.digest() == b.digest()
    assert Recipe(packages=a.packages + ("strace",)).digest() != a.digest()
    assert Recipe(kernels=a.kernels[:1]).digest() != a.digest()
    assert Recipe(mirror="http://example.invalid/debian").digest() != a.digest()


def test_recipe_packages_include_both_kernels_and_headers() -> None:
    pkgs = Recipe().all_packages()
    for rel in KERNELS.values():
        assert f"linux-image-{rel}" in pkgs and f"linux-headers-{rel}" in pkgs
    for must in ("mdadm", "lvm2", "dmsetup", "fio", "python3-bpfcc", "bpftool"):
        assert must in pkgs
    assert any("bookworm-security" in s for s in Recipe().apt_sources())


def test_kernel_release_names() -> None:
    assert kernel_release("6.1") == "6.1.0-56-amd64"
    assert kernel_release("6.12.117+deb12-amd64") == "6.12.117+deb12-amd64"
    with pytest.raises(MdtraceError, match="unknown guest kernel"):
        kernel_release("5.10")


def test_cache_root_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MDTRACE_VM_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    assert find_image(Recipe(), tmp_path) is None  # nothing built there


def test_cmdline_shares_and_disks(tmp_path: Path) -> None:
    img = GuestImage(tmp_path, "x", tuple(KERNELS.values()))
    disks = [tmp_path / "d0.img", tmp_path / "d1.img"]
    cmd = build_cmdline(img, "6.12", tmp_path / "src", tmp_path / "out", disks,
                        console_log=tmp_path / "c.log")
    joined = " ".join(cmd)
    assert "tcg,thread=multi" in joined and "-enable-kvm" not in joined
    assert f"vmlinuz-{KERNELS['6.12']}" in joined
    assert "mount_tag=src,security_model=none,readonly=on" in joined
    assert "mount_tag=out,security_model=none" in joined
    assert "snapshot=on" in joined
    assert sum(1 for a in cmd if a.startswith(f"file={tmp_path}/d")) == 2
    with pytest.raises(MdtraceError):
        build_cmdline(img, "6.12", tmp_path, tmp_path, [], accel="hvf",
                      console_log=tmp_path / "c.log")
