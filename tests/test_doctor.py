"""`mdtrace doctor` on this host (no md, no kprobes) and its checks on fake trees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mdtrace.kernel.environment import (
    Paths,
    check_kprobes,
    check_lockdown,
    check_md_functions,
    check_modules,
    live_possible,
    run_checks,
)

MAIN = "from mdtrace.cli import main; main()"


def _host_has_md() -> bool:
    return Path("/proc/mdstat").exists() or Path("/sys/module/md_mod").exists()


@pytest.mark.skipif(_host_has_md(), reason="this host has md: doctor may legitimately pass")
def test_doctor_here_exits_nonzero_and_says_why() -> None:
    r = subprocess.run([sys.executable, "-c", MAIN, "doctor"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "no md driver" in r.stdout
    assert "NOT possible" in r.stdout
    assert "[FAIL] module_md_mod" in r.stdout


@pytest.mark.skipif(_host_has_md(), reason="this host has md")
def test_doctor_json() -> None:
    r = subprocess.run([sys.executable, "-c", MAIN, "doctor", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["live_tracing_possible"] is False
    failed = {c["name"] for c in doc["checks"] if not c["ok"]}
    assert {"module_md_mod", "btf_md_mod", "md_functions"} <= failed


def _fake(tmp: Path, *, md: bool, kprobes: bool, lockdown: str = "[none] integrity") -> Paths:
    proc, sys_, boot = tmp / "proc", tmp / "sys", tmp / "boot"
    for d in (proc / "self", sys_ / "kernel/btf", sys_ / "kernel/security", boot):
        d.mkdir(parents=True, exist_ok=True)
    (proc / "self/status").write_text("CapEff:\t000001ffffffffff\n")
    (sys_ / "kernel/security/lockdown").write_text(lockdown + "\n")
    (boot / "config-9.9").write_text(f"CONFIG_KPROBES={'y' if kprobes else 'n'}\n")
    mods = "md_mod 1 0 - Live 0x0\nraid456 1 0 - Live 0x0\n" if md else ""
    (proc / "modules").write_text(mods)
    ks = ("0000000000000000 T md_check_recovery [md_mod]\n"
          "0000000000000000 t md_do_sync [md_mod]\n"
          "0000000000000000 T md_reap_sync_thread [md_mod]\n") if md else ""
    (proc / "kallsyms").write_text("0000000000000000 T schedule\n" + ks)
    lib = tmp / "lib" / "modules"
    (lib / "9.9").mkdir(parents=True)
    (lib / "9.9" / "modules.dep").write_text(
        "kernel/drivers/md/md-mod.ko.xz:\nkernel/drivers/md/raid456.ko.xz: md-mod.ko.xz\n")
    (tmp / "packages").write_text("")
    return Paths(proc=proc, sys=sys_, boot=boot, release="9.9", lib_modules=lib,
                 package_list=tmp / "packages")


def test_checks_on_fake_trees(tmp_path: Path) -> None:
    good = _fake(tmp_path / "a", md=True, kprobes=True)
    assert all(c.ok for c in check_modules(good) if c.blocking)
    assert check_kprobes(good).ok
    assert check_md_functions(good).ok
    bad = _fake(tmp_path / "b", md=False, kprobes=False, lockdown="none [confidentiality]")
    mods = {c.name: c for c in check_modules(bad)}
    assert not mods["module_md_mod"].ok and "modprobe" in mods["module_md_mod"].fix
    kp = check_kprobes(bad)
    assert not kp.ok and "CONFIG_KPROBES" in kp.detail
    ld = check_lockdown(bad)
    assert not ld.ok and "confidentiality" in ld.detail
    assert not check_md_functions(bad).ok
    assert not live_possible(run_checks(bad))
