"""Fast checks of the VM harness that need no qemu: recipe hashing, kernel names, qemu argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdtrace.errors import MdtraceError
from vmtest.image import GuestImage, find_image
from vmtest.recipe import KERNELS, Recipe, cache_root, kernel_release
from vmtest.runner import build_cmdline


def test_recipe_digest_stable_and_sensitive() -> None:
    a, b = Recipe(), Recipe()
    assert a.digest() == b.digest()
    assert Recipe(packages=a.packages + ("strace",)).digest() != a.digest()
    assert Recipe(kernels=a.kernels[:1]).digest() != a.digest()
    assert Recipe(mirror="http://example.invalid/debian").digest() != a.digest()


def test_recipe_packages_include_both_kernels_and_headers() -> None:
    pkgs = Recipe().all_packages()
    for rel in (KERNELS["6.1"], KERNELS["6.12"]):
        assert f"linux-image-{rel}" in pkgs and f"linux-headers-{rel}" in pkgs
    for must in ("mdadm", "lvm2", "dmsetup", "fio", "python3-bpfcc", "bpftool"):
        assert must in pkgs
    assert any("bookworm-security" in s for s in Recipe().apt_sources())


def test_kernel_release_names() -> None:
    assert kernel_release("6.1") == "6.1.0-56-amd64"
    assert kernel_release("6.12.117+deb12-amd64") == "6.12.117+deb12-amd64"
    assert kernel_release("5.10") == "5.10.0-32-amd64"
    assert kernel_release("7.2") == "7.2.13+deb14-amd64"
    with pytest.raises(MdtraceError, match="unknown guest kernel"):
        kernel_release("4.19")


def test_each_kernel_boots_in_its_own_distro() -> None:
    """Issue 15: a kernel's image is its distro's userland (suite, Python, apt sources)."""
    from vmtest.recipe import default_recipe, guest_os

    assert guest_os("5.10").suite == "bullseye" and guest_os("5.10").python == "3.9"
    assert guest_os("6.1.0-56-amd64").suite == guest_os("6.12").suite == "bookworm"
    assert guest_os("7.2").suite == "sid" and guest_os("7.2").python == "3.14"
    sid = default_recipe("7.2")
    assert sid.apt_sources() == ["deb http://deb.debian.org/debian sid main"]
    assert sid.kernels == ("7.2.13+deb14-amd64",)
    bullseye = default_recipe("5.10")
    assert bullseye.apt_sources() == ["deb http://deb.debian.org/debian bullseye main",
                                      "deb http://deb.debian.org/debian bullseye-updates main"]
    assert "click==8.1.8" in bullseye.py_deps        # click 8.2 needs Python 3.10
    digests = {default_recipe(k).digest() for k in ("5.10", "6.1", "6.12", "7.2")}
    assert len(digests) == 3                          # 6.1 and 6.12 share bookworm's image
    with pytest.raises(MdtraceError, match="unknown guest kernel"):
        guest_os("4.19")


def test_tier_kernels_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmtest.recipe import tier_kernels

    monkeypatch.delenv("MDTRACE_VM_KERNELS", raising=False)
    assert tier_kernels() == ["6.1", "6.12"]
    monkeypatch.setenv("MDTRACE_VM_KERNELS", "all")
    assert tier_kernels() == ["5.10", "6.1", "6.12", "7.2"]
    monkeypatch.setenv("MDTRACE_VM_KERNELS", "7.2, 5.10")
    assert tier_kernels() == ["7.2", "5.10"]
    monkeypatch.setenv("MDTRACE_VM_KERNELS", "6.2")
    with pytest.raises(MdtraceError, match="MDTRACE_VM_KERNELS: unknown kernel '6.2'"):
        tier_kernels()


def test_cache_root_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MDTRACE_VM_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    assert find_image(Recipe(), tmp_path) is None  # nothing built there


def test_cmdline_shares_and_disks(tmp_path: Path) -> None:
    img = GuestImage(tmp_path, "x", (KERNELS["6.1"], KERNELS["6.12"]))
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


# -- scenario result parsing and checks (synthetic result dirs, as the guest driver writes) --

def _scenario_dir(root: Path, name: str, obs: list[tuple[str, str]], rc: int = 0,
                  recorded: bool = False, attempted: bool = False,
                  report: object = None) -> Path:
    import json

    d = root / "scenarios" / name
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps({
        "name": name, "kernel": "6.12.117+deb12-amd64", "rc": rc, "time_s": 1.5,
        "recorded": recorded, "record_attempted": attempted}))
    (d / "obs.jsonl").write_text("".join(
        json.dumps({"t": 10.0 + i, "k": k, "v": v}) + "\n" for i, (k, v) in enumerate(obs)))
    if report is not None:
        (d / "report.json").write_text(json.dumps(report))
    return d


def test_load_results_and_obs_history(tmp_path: Path) -> None:
    from vmtest.scenarios import load_results, obs_history, obs_matches

    _scenario_dir(tmp_path, "x", [("io", "blocked after 12.0s"), ("io", "done rc=1 in 13s")])
    r = load_results(tmp_path)["x"]
    assert r.obs["io"] == "done rc=1 in 13s" and r.obs_t["io"] == 11.0
    assert obs_history("io", "^blocked", "^done rc=1")(r) is None
    assert "do not match" in (obs_history("io", "^blocked", "^done rc=0")(r) or "")
    assert obs_history("io", "^blocked")(r) is not None          # wrong length
    assert obs_matches("io", "rc=1")(r) is None
    assert "missing" in (obs_matches("nope", ".")(r) or "")


def test_finding_codes_from_nested_report(tmp_path: Path) -> None:
    from vmtest.scenarios import load_results

    rep = {"arrays": [{"name": "md0", "findings": [{"code": "F7"}, {"code": "F10"}]}],
           "findings": [{"code": "F7", "array": "md0"}]}
    _scenario_dir(tmp_path, "y", [], recorded=True, report=rep)
    assert load_results(tmp_path)["y"].finding_codes() == {"F7", "F10"}


def test_findings_required_and_allowed(tmp_path: Path) -> None:
    from vmtest.scenarios import F, findings, load_results

    rep = {"findings": [
        {"code": "F4", "array": "md0", "details": {"caller": "raid5_start_reshape"}},
        {"code": "F4", "array": "md0", "details": {"caller": "raid5_run.cold"}},
        {"code": "F7", "array": "md0", "details": {"reason": "frozen", "mode": "sleep"}}]}
    _scenario_dir(tmp_path, "y", [], recorded=True, report=rep)
    r = load_results(tmp_path)["y"]       # no trace here: the guest's report is checked
    grow, run = F("F4", caller="raid5_start_reshape"), F("F4", caller=r"raid5_run(\..*)?")
    f7 = F("F7", reason="frozen", mode="sleep")
    assert findings(required=(grow, f7), allowed=(run,))(r) is None
    msg = findings(required=(grow, f7))(r) or ""
    assert "unexpected findings ['F4 on md0 (caller=raid5_run.cold)']" in msg
    msg = findings(required=(grow, F("F7", reason="frozen", mode="requeue")),
                   allowed=(run,))(r) or ""
    assert "lack ['F7(mode~requeue, reason~frozen)']" in msg and "unexpected" in msg
    assert findings(required=(grow, f7), allowed=(F("F4"),))(r) is None   # code-only spec
    assert F("F4", caller="raid5_start").matches(rep["findings"][0]) is False  # full match
    empty = findings()(r) or ""
    assert empty.startswith("unexpected findings") and "F7 on md0" in empty
    _scenario_dir(tmp_path, "z", [], recorded=True)       # recorded, no report anywhere
    assert "no report" in (findings()(load_results(tmp_path)["z"]) or "")
    _scenario_dir(tmp_path, "w", [], recorded=False)      # md side only: nothing to check
    assert findings(required=(grow,))(load_results(tmp_path)["w"]) is None


def test_findings_checked_on_host_report_of_the_trace(tmp_path: Path) -> None:
    """With a trace present the host's report of it is checked, not the guest's report.json."""
    import shutil

    from vmtest.scenarios import EXPECT, findings, load_results, report_drift

    golden = (Path(__file__).parent / "data/golden" / KERNELS["6.12"]
              / "reshape_frozen_io.jsonl.gz")
    d = _scenario_dir(tmp_path, "reshape_frozen_io", [], recorded=True,
                      report={"findings": [{"code": "F1", "array": "md9"}]})
    shutil.copyfile(golden, d / "trace.jsonl.gz")
    r = load_results(tmp_path)["reshape_frozen_io"]
    spec = EXPECT["reshape_frozen_io"].finding_spec(KERNELS["6.12"])
    assert spec is not None
    assert findings(*spec)(r) is None
    assert {f["code"] for f in r.findings() or []} == {"F7"}
    assert "guest report findings ['F1 on md9']" in (report_drift(r) or "")
    (d / "trace.jsonl.gz").write_bytes(b"\x1f\x8bnot gzip")
    del r.__dict__["host_report"]
    msg = findings(*spec)(r) or ""
    assert msg.startswith("mdtrace report ") and "\n" not in msg


def test_expect_states_findings_per_kernel() -> None:
    """Every scenario says, for each kernel, which findings must and may appear; the fixed
    6.12 and 7.2 kernels allow neither F4 nor F6 anywhere, the 5.10 and 6.1 reshapes require
    F4."""
    from vmtest.scenarios import EXPECT

    scenarios = {p.stem for p in (Path(__file__).parent / "vm/guest/scenarios").glob("*.sh")}
    assert set(EXPECT) == scenarios
    for name, exp in EXPECT.items():
        # 5.10 shares 6.1's md behaviour here, 7.2 6.12's (scenarios.behaviour_kernel)
        for short, rel in KERNELS.items():
            spec = exp.finding_spec(rel)
            assert spec is not None, f"{name} on {rel}: not exactly one findings check"
            codes = {sp.code for part in spec for sp in part}
            if short in ("6.12", "7.2"):
                assert not codes & {"F4", "F6"}, (name, codes)
            elif "reshape" in name:
                assert "F4" in {sp.code for sp in spec[0]}, name


def test_behaviour_kernel_splits_at_the_69_fixes() -> None:
    from vmtest.scenarios import EXPECT, behaviour_kernel

    assert [behaviour_kernel(k) for k in ("5.10", "6.1", "6.8", "6.9", "6.12", "7.2")] == \
        ["6.1", "6.1", "6.1", "6.12", "6.12", "6.12"]
    frozen, lvm = EXPECT["reshape_frozen_io"], EXPECT["lvm_raid5_reshape"]
    assert frozen.checks(KERNELS["7.2"]) == frozen.checks(KERNELS["6.12"])
    assert lvm.checks(KERNELS["5.10"]) == lvm.checks(KERNELS["6.1"])
    assert lvm.checks(KERNELS["6.1"]) != lvm.checks(KERNELS["6.12"])
    # a key of its own wins: 5.10's wchan reads '-' (scenarios.WCHAN_510)
    assert frozen.checks(KERNELS["5.10"]) != frozen.checks(KERNELS["6.1"])


@pytest.mark.parametrize("trace", sorted((Path(__file__).parent / "data/golden")
                                         .glob("*/*.jsonl.gz")),
                         ids=lambda p: f"{p.parent.name}/{p.name.removesuffix('.jsonl.gz')}")
def test_golden_traces_meet_expect_findings(trace: Path) -> None:
    """The recorded real-kernel traces, reported by this checkout's engine, satisfy EXPECT's
    findings for their scenario and kernel (what the vm tier asserts after a boot)."""
    from vmtest.scenarios import EXPECT, events_seen, findings, golden_result

    r = golden_result(trace)
    spec = EXPECT[r.name].finding_spec(r.kernel)
    assert spec is not None
    assert findings(*spec)(r) is None
    assert events_seen("check_recovery_enter", "do_sync_enter")(r) is None


def test_saved_run_round_trip(tmp_path: Path) -> None:
    from vmtest.runner import RunResult
    from vmtest.scenarios import load_run, save_run

    out = tmp_path / KERNELS["6.1"]
    _scenario_dir(out, "resync_raid5", [("started", "resync")])
    assert load_run(out) is None                      # no run.json: nothing to re-check
    (out / "output.log").write_text("hello\n")
    save_run(RunResult(kernel=KERNELS["6.1"], rc=0, timed_out=False, output="", out_dir=out,
                       console_log=out / "console.log", wall_s=512.34, boot_s=21.5,
                       uname_r=KERNELS["6.1"]), ["resync_raid5"])
    run = load_run(out)
    assert run is not None and run.kernel == KERNELS["6.1"]
    assert run.run.ok and run.run.wall_s == 512.3 and run.run.boot_s == 21.5
    assert run.run.output == "hello\n" and list(run.results) == ["resync_raid5"]


def test_check_scenario_failures(tmp_path: Path) -> None:
    from vmtest.scenarios import check_scenario, load_results

    # healthy resync that recorded nothing although the recorder ran, and exited 1
    _scenario_dir(tmp_path, "resync_raid5", [("error", "mdadm --create failed")], rc=1,
                  attempted=True)
    probs = check_scenario(load_results(tmp_path)["resync_raid5"])
    assert any("exit code 1 (mdadm --create failed)" in p for p in probs)
    assert any("left no trace" in p for p in probs)
    assert any("'finished' missing" in p for p in probs)


def test_check_scenario_passes_md_side_without_trace(tmp_path: Path) -> None:
    from vmtest.scenarios import check_scenario, load_results

    _scenario_dir(tmp_path, "resync_raid5", [
        ("started", "resync"), ("finished", "idle"), ("last_sync_action", "resync")])
    assert check_scenario(load_results(tmp_path)["resync_raid5"]) == []


def test_raw_pointer_scan(tmp_path: Path) -> None:
    import gzip

    from vmtest.golden import raw_pointers

    clean = tmp_path / "clean.jsonl.gz"
    clean.write_bytes(gzip.compress(
        b'{"format":"mdtrace-trace"}\n{"t":1,"k":"reap","md":"p:3fa9c01d2b7e",'
        b'"s":{"rp":18446744073709551615}}\n'))
    assert raw_pointers(clean) == []            # hashed pointer, MaxSector: fine
    dirty = tmp_path / "dirty.jsonl"
    dirty.write_bytes(b'{"t":1,"k":"reap","x":{"bio":"0xffff8e3a41b2c000"}}\n'
                      b'{"t":2,"k":"reap","x":{"p":18446623297462337536}}\n')
    assert len(raw_pointers(dirty)) == 2


def test_raw_pointer_scan_ignores_negative_u64(tmp_path: Path) -> None:
    from vmtest.golden import raw_pointers

    t = tmp_path / "t.jsonl"
    # -616 as u64 (a wait_ns underflow) and MaxSector are not pointers; kernel text is
    t.write_bytes(b'{"x":{"wait_ns":18446744073709551000,"cr":18446744073709551615}}\n')
    assert raw_pointers(t) == []
    t.write_bytes(b'{"x":{"fn":18446744071581156608}}\n')   # 0xffffffff81234500
    assert raw_pointers(t) == ["18446744071581156608"]


def test_tier_problem_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The vm tier's loud skip reason: no qemu; no image and not root; too little disk."""
    import shutil
    from collections import namedtuple

    from vmtest import image, runner, scenarios

    monkeypatch.setenv("MDTRACE_VM_CACHE", str(tmp_path / "cache"))   # nothing built there
    real_which = shutil.which
    monkeypatch.setattr(runner.shutil, "which",
                        lambda n: None if n.startswith("qemu") else real_which(n))
    assert "qemu-system-x86_64 not found" in (scenarios.tier_problem() or "")
    monkeypatch.setattr(runner.shutil, "which", lambda n: f"/usr/bin/{n}")
    monkeypatch.setattr(image.os, "geteuid", lambda: 1000)
    assert "cannot be built here: building the guest image needs root" in (
        scenarios.tier_problem() or "")
    monkeypatch.setattr(image.os, "geteuid", lambda: 0)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(scenarios.shutil, "disk_usage", lambda p: usage(0, 0, 3 * 2**30))
    assert (scenarios.tier_problem() or "").startswith("only 3.0 GiB free under ")
    monkeypatch.setattr(scenarios.shutil, "disk_usage", lambda p: usage(0, 0, 100 * 2**30))
    assert scenarios.tier_problem() is None


def test_snapshot_tree_takes_what_git_would(tmp_path: Path) -> None:
    import subprocess

    from vmtest.runner import snapshot_tree

    src, dest = tmp_path / "src", tmp_path / "snap"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "a.py").write_text("tracked\n")
    (src / "gone.py").write_text("deleted later\n")
    (src / ".gitignore").write_text("out/\n")
    (src / "out").mkdir()
    (src / "out" / "big.img").write_text("ignored\n")
    subprocess.run(["git", "init", "-q", str(src)], check=True)
    subprocess.run(["git", "-C", str(src), "add", "."], check=True)
    subprocess.run(["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", "x"], check=True)
    (src / "gone.py").unlink()
    (src / "new.py").write_text("untracked\n")
    rev = snapshot_tree(src, dest)
    assert rev.endswith("-dirty")
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert got == [".gitignore", "new.py", "pkg/a.py"]
    (src / "pkg" / "a.py").write_text("edited after the snapshot\n")
    assert (dest / "pkg" / "a.py").read_text() == "tracked\n"


def _fake_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> GuestImage:
    """A stand-in qemu-system-x86_64: finds the out share in its argv, then runs ``body``."""
    from vmtest import runner

    fake = tmp_path / "bin" / "qemu-system-x86_64"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/bash\nfor a in \"$@\"; do case $a in *mount_tag=out*) "
                    "out=${a#local,path=}; out=${out%%,*};; esac; done\n" + body + "\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.setattr(runner, "RC_GRACE_S", 1)
    img = GuestImage(tmp_path / "img", "x", (KERNELS["6.1"],))
    img.path.mkdir(parents=True)
    for f in (img.vmlinuz("6.1"), img.initrd("6.1")):
        f.write_text("")
    return img


def test_runner_stops_a_guest_that_cannot_power_off(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The script's rc arrived but the guest hangs on (a kernel oops wedged power-off): the
    host stops qemu after RC_GRACE_S instead of waiting for the hard timeout."""
    import time

    from vmtest.runner import run_script

    script = tmp_path / "s.sh"
    script.write_text("true\n")
    img = _fake_qemu(tmp_path, monkeypatch,
                     'grep -q "rc=\\$?" "$out/job.sh" || exit 9; echo 0 > "$out/rc"; '
                     'echo done > "$out/output.log"; sleep 60')
    t0 = time.monotonic()
    res = run_script(img, "6.1", script, out_dir=tmp_path / "o", disks=1, disk_mb=1,
                     timeout_s=30)
    assert time.monotonic() - t0 < 15
    assert res.rc == 0 and res.forced_off and not res.timed_out and res.ok
    assert "did not power off" in res.summary() and res.output == "done\n"
    assert (tmp_path / "o" / "src_rev").read_text().strip()      # a snapshot was shared
    assert not list(tmp_path.glob("o.disk*.img"))                 # disks removed

    img2 = _fake_qemu(tmp_path / "b", monkeypatch, "sleep 60")   # never finishes
    res = run_script(img2, "6.1", script, out_dir=tmp_path / "o2", disks=0, timeout_s=2,
                     src=tmp_path)
    assert res.timed_out and res.rc is None and not res.forced_off


def test_vm_check_command_rechecks_saved_run(tmp_path: Path) -> None:
    """`python -m vmtest check` re-reports a saved run's trace on the host: the real 6.12 trace of
    reshape_frozen_io meets the findings (only the observations, not saved here, fail), and the
    guest/host drift is noted; with the healthy 6.1 resync's trace in its place F7 is lacking."""
    import json
    import shutil

    from click.testing import CliRunner

    from vmtest.cli import command

    rel = KERNELS["6.12"]
    golden = Path(__file__).parent / "data/golden"
    d = _scenario_dir(tmp_path / rel, "reshape_frozen_io", [], recorded=True, attempted=True,
                      report={"findings": []})
    shutil.copyfile(golden / rel / "reshape_frozen_io.jsonl.gz", d / "trace.jsonl.gz")
    (tmp_path / rel / "run.json").write_text(json.dumps(
        {"kernel": rel, "rc": 0, "timed_out": False, "wall_s": 1.0, "uname_r": rel}))
    res = CliRunner().invoke(command, ["check", "--out", str(tmp_path), "--kernel", "6.12",
                                       "--only", "reshape_frozen_io"])
    lines = res.output.splitlines()
    assert lines[0].startswith(f"FAIL {rel} reshape_frozen_io"), res.output   # obs missing
    assert "findings" not in lines[0]              # ... but the host's findings are right
    assert any(ln.startswith("NOTE") and "host report now ['F7 on md0" in ln for ln in lines)
    shutil.copyfile(golden / KERNELS["6.1"] / "resync_raid5.jsonl.gz", d / "trace.jsonl.gz")
    res = CliRunner().invoke(command, ["check", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "findings lack ['F7(mode~requeue, reason~frozen)']" in res.output


def test_known_kernel_hang_is_checked_not_excused(tmp_path: Path) -> None:
    """reshape_frozen_io's known kernel failure (the resumed reshape never moves again): the
    script's exit code is expected then, but mdtrace must report F10 (and F7), and the
    result carries a NOTE saying the kernel hung."""
    from vmtest.scenarios import EXPECT, check_scenario, kernel_hang_note, load_results

    base = [("frozen", "frozen"), ("after_idle", "reshape"),
            ("error", "reshape stalled after idle (remedy: reshape)")]
    _scenario_dir(tmp_path / "a", "reshape_frozen_io",
                  base + [("stalled", "reshape pos=230400 done=76800/131072")], rc=1)
    hung = load_results(tmp_path / "a")["reshape_frozen_io"]
    assert check_scenario(hung) == [] and "kernel hang reproduced" in kernel_hang_note(hung)
    _scenario_dir(tmp_path / "b", "reshape_frozen_io", base, rc=1)
    plain = load_results(tmp_path / "b")["reshape_frozen_io"]
    probs = check_scenario(plain)
    assert kernel_hang_note(plain) is None
    assert any("exit code 1" in p for p in probs) and any("'finished' missing" in p
                                                          for p in probs)
    hang = EXPECT["reshape_frozen_io"].hang
    assert hang is not None
    (spec_check,) = [c for c in hang.checks if getattr(c, "spec", None)]
    for codes, ok in ((["F7", "F10"], True), (["F7"], False), (["F7", "F10", "F3"], False)):
        d = tmp_path / f"c{len(codes)}{ok}"
        _scenario_dir(d, "reshape_frozen_io", base, recorded=True, report={"findings": [
            {"code": c, "array": "md0", "details": {"reason": "frozen"} if c == "F7" else {}}
            for c in codes]})
        assert (spec_check(load_results(d)["reshape_frozen_io"]) is None) == ok, codes


def test_scenarios_after_a_wedge_run_in_a_fresh_boot(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A scenario that wedges the guest kernel makes the guest skip the rest: the host boots
    once more for those, so one kernel bug costs one scenario, not every later one."""
    import json

    from vmtest import scenarios
    from vmtest.runner import RunResult

    calls: list[list[str]] = []

    def fake_run(img, kernel, script, *, out_dir, args, **kw):  # noqa: ANN001, ANN003, ANN202
        calls.append(list(args))
        for name in args or scenarios.all_scenarios():
            d = Path(out_dir) / "scenarios" / name
            d.mkdir(parents=True, exist_ok=True)
            wedged = not args and name == "resync_raid5"
            res = {"name": name, "kernel": kernel, "rc": 125 if wedged else 0, "time_s": 1,
                   "recorded": False, "record_attempted": False}
            if wedged:
                res["skipped"] = "guest wedged after scenario reshape_frozen_io"
            (d / "result.json").write_text(json.dumps(res))
        return RunResult(kernel=kernel, rc=0, timed_out=False, output="", out_dir=Path(out_dir),
                         console_log=Path(out_dir) / "console.log", wall_s=1.0, boot_s=1.0)

    monkeypatch.setattr(scenarios, "image_for", lambda _k: tmp_path / "img")
    monkeypatch.setattr(scenarios, "run_script", fake_run)
    run = scenarios.run_scenarios("6.12.117+deb12-amd64", tmp_path / "out")
    assert calls == [[], ["resync_raid5"]]
    assert not run.results["resync_raid5"].skipped and run.results["resync_raid5"].rc == 0
    assert run.results["reshape_frozen_io"].rc == 0


# -- wedged guests (issue 10): the host's watch, reruns, kernel failures checked -------------

def test_console_kernel_failure_lines_only_from_the_kernel() -> None:
    from vmtest.runner import kernel_failure

    assert kernel_failure("[   88.1] kernel BUG at mm/slub.c:550!\n") == \
        "kernel BUG at mm/slub.c:550!"
    assert kernel_failure("ok\n[ 130.0] INFO: task dd:7 blocked for more than 120 seconds.\n")\
        .startswith("INFO: task dd:7")
    assert kernel_failure("Oops: invalid opcode: 0000 [#1]\n").startswith("Oops:")
    # the guest script's own echoes (indented scenario logs, driver lines) are not the kernel
    assert kernel_failure("  kernel BUG at x\nrun_scenarios: KERNEL FAILURE: kernel BUG\n") \
        is None
    assert kernel_failure("[ 1.0] dm-raid456: io across reshape position\n") is None


def test_watch_stops_a_wedged_guest_within_the_grace() -> None:
    from vmtest.runner import BOOT_LIMIT_S, FAILURE_GRACE_S, HEARTBEAT_LIMIT_S, Watch

    w = Watch(timeout_s=1800)
    w.update(10, "", "", started=False)
    assert w.stop_reason(10, 0) == ""
    assert "did not start" in w.stop_reason(BOOT_LIMIT_S + 1, 0)
    w.update(30, "[ 20.0] kernel BUG at mm/slub.c:550!\n", "12.0 readonly: scenario", True)
    assert w.stop_reason(30 + FAILURE_GRACE_S - 1, 0) == ""
    assert w.stop_reason(30 + FAILURE_GRACE_S + 1, 0) == \
        "kernel failure: kernel BUG at mm/slub.c:550!"
    assert FAILURE_GRACE_S + 1 < 180        # the bound: stopped within 3 minutes
    h = Watch(timeout_s=1800)
    h.update(5, "", "1.0 x: scenario", True)
    h.update(100, "", "1.0 x: scenario", True)            # unchanged heartbeat
    assert h.stop_reason(5 + HEARTBEAT_LIMIT_S - 1, 0) == ""
    assert "no progress" in h.stop_reason(5 + HEARTBEAT_LIMIT_S + 1, 0)
    h.update(5 + HEARTBEAT_LIMIT_S + 2, "", "2.0 x: record_stop", True)
    assert h.stop_reason(5 + HEARTBEAT_LIMIT_S + 3, 0) == ""
    assert Watch(timeout_s=60).stop_reason(61, 0).startswith("timed out")


def test_watch_tells_a_failure_while_booting_from_one_in_the_job() -> None:
    from vmtest.runner import Watch

    w = Watch(timeout_s=1800)
    w.update(10, "[ 107.7] rcu: INFO: rcu_preempt self-detected stall on CPU\n", "", False)
    w.update(12, "", "", True)
    assert w.failed_before_start()
    j = Watch(timeout_s=1800)
    j.update(10, "", "", True)
    j.update(12, "[ 20.0] kernel BUG at mm/slub.c:550!\n", "", True)
    assert not j.failed_before_start()
    assert not Watch(timeout_s=1800).failed_before_start()


def test_runner_boots_again_after_a_kernel_failure_while_booting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An RCU stall before the job started (TCG on a loaded host) costs one more boot, not
    the test; the first boot's console is kept."""
    from vmtest import runner

    monkeypatch.setattr(runner, "FAILURE_GRACE_S", 1)
    script = tmp_path / "s.sh"
    script.write_text("true\n")
    boots = tmp_path / "boots"
    img = _fake_qemu(tmp_path, monkeypatch,
                     f'echo x >> {boots}; '
                     f'if [[ $(wc -l < {boots}) == 1 ]]; then '
                     'echo "[ 107.7] rcu: INFO: rcu_preempt self-detected stall on CPU" '
                     '>> "$out/console.log"; sleep 60; fi; '
                     'echo 1.0 > "$out/boot_uptime"; echo done > "$out/output.log"; '
                     'echo 0 > "$out/rc"')
    res = runner.run_script(img, "6.1", script, out_dir=tmp_path / "o", disks=1, disk_mb=1,
                            timeout_s=60)
    assert boots.read_text().count("x") == 2
    assert res.rc == 0 and res.ok and not res.failed_in_boot and not res.wedged
    assert "self-detected stall" in (tmp_path / "o" / "console-boot1.log").read_text()


def test_a_boot_stopped_mid_scenario_reruns_it(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The host stopped boot 1 during readonly_reshape (no result.json): boot 2 runs it and
    the rest again; its partial results are kept aside; at most MAX_BOOTS boots."""
    import json

    from vmtest import scenarios
    from vmtest.runner import RunResult

    calls: list[list[str]] = []
    order = scenarios.all_scenarios()

    def fake_run(img, kernel, script, *, out_dir, args, **kw):  # noqa: ANN001, ANN003, ANN202
        calls.append(list(args))
        for name in args or order:
            d = Path(out_dir) / "scenarios" / name
            d.mkdir(parents=True, exist_ok=True)
            if not args and name == "readonly_reshape":
                (d / "obs.jsonl").write_text('{"t": 1, "k": "readonly", "v": "ok"}\n')
                return RunResult(kernel=kernel, rc=None, timed_out=False, output="",
                                 out_dir=Path(out_dir), console_log=Path(out_dir) / "c.log",
                                 wall_s=200.0, boot_s=1.0, wedged="kernel failure: kernel BUG",
                                 kernel_failure="kernel BUG at mm/slub.c:550!",
                                 failure_to_stop_s=121.0)
            (d / "result.json").write_text(json.dumps({
                "name": name, "kernel": kernel, "rc": 0, "time_s": 1, "recorded": False,
                "record_attempted": False}))
        return RunResult(kernel=kernel, rc=0, timed_out=False, output="", out_dir=Path(out_dir),
                         console_log=Path(out_dir) / "c.log", wall_s=1.0, boot_s=1.0)

    monkeypatch.setattr(scenarios, "image_for", lambda _k: tmp_path / "img")
    monkeypatch.setattr(scenarios, "run_script", fake_run)
    out = tmp_path / "out"
    run = scenarios.run_scenarios("6.12.117+deb12-amd64", out)
    rest = order[order.index("readonly_reshape"):]
    assert calls == [[], rest]
    assert len(run.boots) == 2 and run.run.ok and run.boots[0].wedged
    assert sorted(run.results) == order and all(r.rc == 0 for r in run.results.values())
    assert (out / "wedged-boot1" / "readonly_reshape" / "obs.jsonl").is_file()
    assert any("kernel BUG" in ln for ln in scenarios.check_all(run) if ln.startswith("NOTE"))
    saved = scenarios.load_run(out)
    assert saved is not None and [b.wedged for b in saved.boots] == [
        "kernel failure: kernel BUG", ""]


def test_kernel_failure_in_a_scenario_is_checked_not_excused(tmp_path: Path) -> None:
    """An oops that kills an md thread passes only with mdtrace's F11 for that thread; any
    other kernel failure fails the scenario."""
    from vmtest.scenarios import check_scenario, kernel_hang_note, load_results

    obs = [("readonly", "ok ro=1 state=readonly"),
           ("kernel_failure", "kernel BUG at mm/slub.c:550!"),
           ("kernel_failure_task", "md0_raid5")]
    f11 = {"code": "F11", "array": "md0", "details": {"thread": "md0_raid5"}}
    f7 = {"code": "F7", "array": "md0", "details": {"reason": "read_only"}}
    cases = {"good": ([f11, f7], True), "no_f11": ([f7], False),
             "other_thread": ([{**f11, "details": {"thread": "md1_raid5"}}], False),
             "extra": ([f11, {"code": "F3", "array": "md0"}], False)}
    for label, (found, ok) in cases.items():
        d = tmp_path / label
        _scenario_dir(d, "readonly_reshape", obs, rc=125, recorded=True, attempted=True,
                      report={"findings": found})
        r = load_results(d)["readonly_reshape"]
        probs = check_scenario(r)
        assert (probs == []) == ok, (label, probs)
    assert "kernel bug reproduced" in (kernel_hang_note(r) or "")
    # the guest's line as dmesg prints it, time stamp first (CI 2026-12-02 failed on it)
    stamped = [(k, "[  220.195540] " + v if k == "kernel_failure" else v) for k, v in obs]
    d = tmp_path / "stamped"
    _scenario_dir(d, "readonly_reshape", stamped, rc=125, recorded=True, attempted=True,
                  report={"findings": [f11, f7]})
    assert check_scenario(load_results(d)["readonly_reshape"]) == []
    d = tmp_path / "hung"
    _scenario_dir(d, "resync_raid5", [("kernel_failure", "INFO: task dd:1 blocked for more "
                                       "than 120 seconds.")], rc=125)
    probs = check_scenario(load_results(d)["resync_raid5"])
    assert len(probs) == 1 and probs[0].startswith("kernel failure during the scenario")


def test_a_failed_boot_keeps_its_console_even_without_results(tmp_path: Path) -> None:
    """A kernel that failed while booting leaves only console.log: it is kept with the boot,
    and a boot that got further keeps its results too (tests/vm/failed_boot.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "failed_boot", Path(__file__).parent / "vm" / "failed_boot.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "console.log").write_text("Oops: int3\n")
    kept = tmp_path / "live-kernel-failure-boot1"
    mod.keep_failed_boot(tmp_path, tmp_path / "live", kept)
    assert (kept / "console.log").read_text() == "Oops: int3\n"
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "obs.txt").write_text("frozen yes\n")
    (tmp_path / "console.log").write_text("boot 2\n")
    mod.keep_failed_boot(tmp_path, tmp_path / "live", kept)
    assert (kept / "obs.txt").read_text() == "frozen yes\n"
    assert (kept / "console.log").read_text() == "boot 2\n"
    assert not (tmp_path / "live").exists()
