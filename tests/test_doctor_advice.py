"""Issue 16: doctor's advice is checked against the machine before it is given - `modprobe X`
only when X's module is in /lib/modules/<release>, `apt-get install P` only when P exists
(fake /lib/modules trees and package lists)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mdtrace.kernel.environment import (
    Paths,
    check_btf,
    check_headers,
    check_modules,
    modprobe_advice,
    module_file,
    package_known,
)

REL = "9.9.9-test"


def _paths(tmp: Path, dep: str = "", builtin: str = "", packages: str = "") -> Paths:
    proc, sys_ = tmp / "proc", tmp / "sys"
    proc.mkdir(parents=True)
    sys_.mkdir()
    (proc / "modules").write_text("")
    lib = tmp / "lib" / "modules" / REL
    lib.mkdir(parents=True)
    if dep:
        (lib / "modules.dep").write_text(dep)
    if builtin:
        (lib / "modules.builtin").write_text(builtin)
    (tmp / "packages").write_text(packages)
    return Paths(proc=proc, sys=sys_, boot=tmp, release=REL, lib_modules=tmp / "lib/modules",
                 package_list=tmp / "packages")


def test_modprobe_only_for_modules_that_exist(tmp_path: Path) -> None:
    p = _paths(tmp_path, dep="kernel/drivers/md/md-mod.ko.xz:\n"
                             "kernel/drivers/md/raid456.ko.zst: kernel/drivers/md/md-mod.ko.xz\n")
    assert module_file(p, "md_mod") == "module" and module_file(p, "dm_raid") == ""
    mods = {c.name: c.fix for c in check_modules(p)}
    assert mods["module_md_mod"] == "modprobe md_mod"
    assert mods["module_raid456"] == "modprobe raid456"
    assert not mods["module_dm_raid"].startswith("modprobe")
    assert f"kernel {REL} has no dm_raid module" in mods["module_dm_raid"]
    assert check_btf(p, "md_mod").fix == "modprobe md_mod raid456"


def test_no_modules_at_all_says_so_and_names_an_existing_package(tmp_path: Path) -> None:
    p = _paths(tmp_path / "a")                          # the host: no md, no modules
    fix = {c.name: c.fix for c in check_modules(p)}["module_md_mod"]
    assert not fix.startswith("modprobe") and "no modules.dep there" in fix
    assert "apt-get" not in fix and "CONFIG_BLK_DEV_MD" in fix
    q = _paths(tmp_path / "b", packages=f"linux-image-{REL}\nbash\n")
    fix = {c.name: c.fix for c in check_modules(q)}["module_md_mod"]
    assert fix.endswith(f"apt-get install linux-image-{REL}")


def test_builtin_md_needs_no_modprobe(tmp_path: Path) -> None:
    p = _paths(tmp_path, builtin="kernel/drivers/md/md-mod.ko\n")
    assert module_file(p, "md_mod") == "builtin"
    assert modprobe_advice(p, "md_mod") == "md_mod built in: nothing to load"


def test_headers_package_advice_checked(tmp_path: Path) -> None:
    none = check_headers(_paths(tmp_path / "a"))
    assert not none.ok and "apt-get" not in none.fix
    assert f"no package linux-headers-{REL} exists" in none.detail
    some = check_headers(_paths(tmp_path / "b", packages=f"linux-headers-{REL}\n"))
    assert some.fix == f"apt-get install linux-headers-{REL}"


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="no apt-cache on this host")
def test_package_known_asks_apt_cache(tmp_path: Path) -> None:
    real = Paths(proc=tmp_path, sys=tmp_path, release=REL)
    assert package_known(real, "linux-headers-9.9.9-no-such-kernel") is False
    assert package_known(real, "bash") in (True, None)   # None only if the lists are empty
