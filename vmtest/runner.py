"""Boot a guest kernel under qemu, run one script in it, bring its results back.

The guest's boot agent (vmtest/guest/mdtrace-vm-agent, a systemd oneshot) mounts two 9p
shares: ``src`` (the project tree, read-only, at /mnt/src, the script's cwd) and ``out`` (a
writable host directory at /mnt/out, ``$MDTRACE_OUT``).  It runs ``/mnt/out/job.sh``, tees the
output to the serial console and ``output.log``, writes the exit code to ``rc`` and powers off.
The host enforces a hard timeout on qemu itself, so a hung guest kernel cannot hang the caller.

TCG, not KVM, by default: on these machines /dev/kvm comes from a nested-virtualisation module
that accepts the ioctls but cannot boot a kernel (see docs/vm.md).  MDTRACE_VM_ACCEL=kvm opts in.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdtrace.errors import EnvironmentProblem, MdtraceError
from vmtest.image import GuestImage
from vmtest.recipe import kernel_release

QEMU = "qemu-system-x86_64"
ACCELS = {
    "tcg": ["-accel", "tcg,thread=multi", "-cpu", "max"],
    "kvm": ["-accel", "kvm", "-cpu", "host"],
}


# RCU's stall report after 60 s, not 21: an emulated CPU of a guest that shares the host's 2
# cores with another guest (tests/vm/conftest.py, lanes) ran 15 s of guest time in module
# loading without a quiescent state and was reported at 21 s (6.1, udev-worker, 70 s after
# boot): emulation speed, not a kernel bug; a real stall still is reported, later.
# (expedited grace periods follow it: rcu_exp_cpu_stall_timeout is 0 in Debian's configs,
# kernel/rcu/tree_stall.h rcu_exp_jiffies_till_stall_check, 6.1 and 6.12)
RCU_STALL_ARGS = "rcupdate.rcu_cpu_stall_timeout=60"
RC_GRACE_S = 45   # seconds a guest may take to power off after its script's exit code arrived
# A kernel failure report on the console (the guest's own printk lines, optionally behind the
# printk time stamp; the script's echoes are not anchored like that) wedges the boot: the guest
# driver then ends its scenario and exits, and qemu is stopped FAILURE_GRACE_S after the report
# whatever the guest does.  The same list is in tests/vm/guest/run_scenarios.sh (FAIL_RE).
KERNEL_FAILURE = re.compile(
    r"^(?:\[\s*\d+\.\d+\]\s*)?(kernel BUG at .*|BUG: .*|Oops: .*|general protection fault.*"
    r"|Kernel panic - not syncing.*|INFO: task .* blocked for more than .*"
    r"|rcu: INFO: rcu_[a-z]+ (?:self-)?detected stall.*)$", re.M)
# hung_task's report (kernel/hung_task.c check_hung_task): a script that provokes it on purpose
# (a hang created to be diagnosed, hung_task_timeout_secs set low) runs with
# expect_hung_tasks=True, and then these lines are counted, not failures
HUNG_TASK = re.compile(r"^(?:\[\s*\d+\.\d+\]\s*)?INFO: task (.*):(\d+) blocked for more than "
                       r"(\d+) seconds\.", re.M)
FAILURE_GRACE_S = 120
# the guest driver's heartbeat ($MDTRACE_OUT/heartbeat) may stand still this long: its longest
# bounded phase is one scenario (SCEN_TIMEOUT, 480 s); a script without a heartbeat is not timed
HEARTBEAT_LIMIT_S = 600
BOOT_LIMIT_S = 300        # qemu start to the job script's start (boots take 20-50 s under TCG)


def kernel_failure(console: str, expect_hung_tasks: bool = False) -> str | None:
    """The first kernel failure report (oops, BUG, panic, hung task, RCU stall) in ``console``;
    hung-task reports are skipped when ``expect_hung_tasks`` (the script provokes them)."""
    for m in KERNEL_FAILURE.finditer(console):
        if expect_hung_tasks and m.group(1).startswith("INFO: task "):
            continue
        return m.group(1).strip()
    return None


def hung_task_reports(console: str) -> list[str]:
    """Every hung-task report line in ``console`` ('INFO: task dd:812 blocked for more ...')."""
    return [m.group(0).split("] ", 1)[-1].strip() for m in HUNG_TASK.finditer(console)]


@dataclass
class Watch:
    """Why a running guest must be stopped now ('' while it may go on): pure, fed by the
    runner's poll loop, so its rules are tested without qemu."""

    timeout_s: float
    expect_hung_tasks: bool = False  # hung-task reports are expected: not failures
    failure: str = ""              # first kernel failure line seen on the console
    hung_tasks: list[str] = field(default_factory=list)  # hung-task lines seen (when expected)
    failure_at: float | None = None
    beat: str = ""
    beat_at: float = 0.0
    started_at: float | None = None  # the job script started (the guest booted)

    def update(self, now: float, console: str, heartbeat: str, started: bool) -> None:
        if not self.failure:
            line = kernel_failure(console, self.expect_hung_tasks)
            if line:
                self.failure, self.failure_at = line, now
        if self.expect_hung_tasks:
            self.hung_tasks += hung_task_reports(console)
        if started and self.started_at is None:
            self.started_at = now
        if heartbeat != self.beat or not self.beat_at:
            self.beat, self.beat_at = heartbeat, now

    def failed_before_start(self) -> bool:
        """The kernel failed before the job script started: while booting."""
        return self.failure_at is not None and (self.started_at is None
                                                or self.failure_at <= self.started_at)

    def stop_reason(self, now: float, t0: float) -> str:
        if now - t0 > self.timeout_s:
            return f"timed out after {self.timeout_s:.0f} s"
        if self.failure_at is not None and now - self.failure_at > FAILURE_GRACE_S:
            return f"kernel failure: {self.failure}"
        if self.started_at is None and now - t0 > BOOT_LIMIT_S:
            return f"the guest did not start its job within {BOOT_LIMIT_S} s of boot"
        if self.beat and now - self.beat_at > HEARTBEAT_LIMIT_S:
            return (f"no progress for {HEARTBEAT_LIMIT_S} s (guest driver at: "
                    f"{self.beat.strip()[:120]})")
        return ""


@dataclass
class RunResult:
    """What came back from one guest run."""

    kernel: str
    rc: int | None            # the script's exit code; None if it never finished
    timed_out: bool           # the host killed qemu at the hard timeout
    output: str               # the script's combined stdout+stderr
    out_dir: Path             # the writable share: output.log, rc, and whatever the script wrote
    console_log: Path         # the guest's serial console (kernel messages, agent lines)
    wall_s: float             # host seconds from qemu start to qemu exit
    boot_s: float | None      # guest uptime when the script started (boot time)
    uname_r: str = ""
    qemu_rc: int | None = None
    cmdline: list[str] = field(default_factory=list)
    forced_off: bool = False  # the script finished, the guest did not power off: qemu stopped
    wedged: str = ""          # why the host stopped a guest that had not finished ('' if not)
    kernel_failure: str = ""  # the first kernel oops/BUG/hung-task line on the console
    failure_to_stop_s: float | None = None  # from that line to qemu stopped
    hung_tasks: list[str] = field(default_factory=list)  # expected hung-task reports seen
    failed_in_boot: bool = False  # stopped for a kernel failure that came before the job

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out and not self.wedged

    def summary(self) -> str:
        state = "timed out" if self.timed_out else f"rc={self.rc}"
        if self.wedged and not self.timed_out:
            state += f" (stopped: {self.wedged})"
        elif self.kernel_failure:
            state += f" (kernel failure: {self.kernel_failure})"
        if self.forced_off:
            state += " (guest did not power off: stopped)"
        boot = f"{self.boot_s:.1f}" if self.boot_s is not None else "?"
        return (f"kernel {self.uname_r or self.kernel}: {state}, boot {boot} s, "
                f"wall {self.wall_s:.1f} s, out {self.out_dir}")


def qemu_problem() -> str | None:
    """Why no guest can run here (no qemu binary), or None."""
    if shutil.which(QEMU) is None:
        return (f"{QEMU} not found: install it with 'apt-get install qemu-system-x86' "
                "(scripts/install-system-deps.sh)")
    return None


def default_src_dir() -> Path:
    """The project tree to share: the checkout this harness lives in."""
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").is_file() and (here / "mdtrace").is_dir():
        return here
    raise MdtraceError(f"cannot find the mdtrace project tree above {here}: pass --src DIR")


def snapshot_tree(src: Path, dest: Path) -> str:
    """Copy the project tree's tracked and untracked-but-not-ignored files (git's view; the
    whole tree minus .git/.venv/out without git) to ``dest``, so the guest runs the code as
    it was at boot even while the checkout is being edited.  Returns ``git describe``."""
    try:
        ls = subprocess.run(["git", "-C", str(src), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=True, timeout=60)
        names = [n for n in ls.stdout.decode().split("\0") if n]
        rev = subprocess.run(["git", "-C", str(src), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "out", "__pycache__", ".*_cache"))
        return "not a git checkout"
    for name in names:
        f = src / name
        if not f.is_file():
            continue                              # deleted in the work tree, or a dangling link
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest / name, follow_symlinks=False)
    return rev or "unknown"


def _disk_files(out_dir: Path, disks: int, disk_mb: int) -> list[Path]:
    paths = []
    for i in range(disks):
        p = out_dir.parent / f"{out_dir.name}.disk{i}.img"
        with open(p, "wb") as fh:
            fh.truncate(disk_mb << 20)
        paths.append(p)
    return paths


def build_cmdline(image: GuestImage, kernel: str, src: Path, out_dir: Path,
                  disks: list[Path], *, cpus: int = 2, mem_mb: int = 2048,
                  accel: str = "tcg", console_log: Path, append: str = "") -> list[str]:
    """The qemu command line (pure: tests check it without booting)."""
    if accel not in ACCELS:
        raise MdtraceError(f"unknown accelerator {accel!r}: use one of {', '.join(ACCELS)}")
    accel_args = list(ACCELS[accel])
    if os.environ.get("MDTRACE_VM_CPU"):   # a CPU model experiment (docs/vm.md, TCG speed)
        accel_args[-1] = os.environ["MDTRACE_VM_CPU"]
    cmd = [QEMU, *accel_args, "-smp", str(cpus), "-m", str(mem_mb),
           "-display", "none", "-monitor", "none", "-no-reboot", "-nic", "none",
           "-serial", f"file:{console_log}",
           "-kernel", str(image.vmlinuz(kernel)), "-initrd", str(image.initrd(kernel)),
           "-append", ("root=/dev/vda rw console=ttyS0 panic=-1 loglevel=5 "
                       "systemd.show_status=0 " + RCU_STALL_ARGS + " " + append).strip(),
           "-drive", f"file={image.root_img},if=virtio,format=raw,snapshot=on",
           "-virtfs", f"local,path={src},mount_tag=src,security_model=none,readonly=on",
           "-virtfs", f"local,path={out_dir},mount_tag=out,security_model=none"]
    for d in disks:
        cmd += ["-drive", f"file={d},if=virtio,format=raw,cache=unsafe"]
    return cmd


def run_script(image: GuestImage, kernel: str, script: str | os.PathLike[str], *,
               out_dir: str | os.PathLike[str] | None = None,
               src: str | os.PathLike[str] | None = None, disks: int = 4, disk_mb: int = 256,
               timeout_s: float = 900, cpus: int = 2, mem_mb: int = 2048,
               accel: str | None = None, env: dict[str, str] | None = None,
               args: list[str] | None = None, append: str = "",
               expect_hung_tasks: bool = False) -> RunResult:
    """:func:`run_script_once`, booted once more when the kernel failed while booting.

    A kernel failure before the job started is no md behaviour: under TCG on a loaded host
    the boot itself can stall RCU while loading modules (seen: 6.1, ``rcu_preempt
    self-detected stall`` in ``load_module`` at 107 s, before the job).  The first boot's
    console is kept as ``console-boot1.log``.
    """
    kw: dict[str, Any] = dict(out_dir=out_dir, src=src, disks=disks, disk_mb=disk_mb,
                              timeout_s=timeout_s, cpus=cpus, mem_mb=mem_mb, accel=accel,
                              env=env, args=args, append=append,
                              expect_hung_tasks=expect_hung_tasks)
    res = run_script_once(image, kernel, script, **kw)
    if not res.failed_in_boot:
        return res
    print(f"mdtrace vm: {res.kernel}: kernel failure while booting, before the job "
          f"({res.kernel_failure[:120]}): booting once more", file=sys.stderr)
    shutil.copy2(res.console_log, res.out_dir / "console-boot1.log")
    kw["out_dir"] = res.out_dir
    return run_script_once(image, kernel, script, **kw)


def run_script_once(image: GuestImage, kernel: str, script: str | os.PathLike[str], *,
                    out_dir: str | os.PathLike[str] | None = None,
                    src: str | os.PathLike[str] | None = None, disks: int = 4,
                    disk_mb: int = 256, timeout_s: float = 900, cpus: int = 2,
                    mem_mb: int = 2048, accel: str | None = None,
                    env: dict[str, str] | None = None, args: list[str] | None = None,
                    append: str = "", expect_hung_tasks: bool = False) -> RunResult:
    """Boot ``kernel`` ('6.1', '6.12' or a full release), run ``script`` as root, power off.

    ``script`` is a host path; it is copied into the out share, run by bash with cwd = the
    project tree (read-only) and ``args``; ``env`` entries are exported first.  Extra disks
    appear as /dev/vdb, /dev/vdc, ... (sparse files, deleted afterwards).  The script gets
    ``timeout_s - 60`` seconds inside the guest (minimum half of it); qemu is killed at
    ``timeout_s`` whatever happens.  ``expect_hung_tasks``: the script provokes hung-task
    reports on purpose (a hang it creates, hung_task_timeout_secs set low): they are collected
    in ``RunResult.hung_tasks`` instead of stopping the guest as a kernel failure (an oops,
    BUG, panic or RCU stall still does); MDTRACE_VM_EXPECT_HUNG_TASKS=1 sets it too.
    Without ``src`` the guest sees a snapshot of this
    checkout taken at boot (:func:`snapshot_tree`; its ``git describe`` in ``out/src_rev``).
    """
    problem = qemu_problem()
    if problem:
        raise EnvironmentProblem(problem)
    rel = kernel_release(kernel)
    if rel not in image.kernels or not image.vmlinuz(rel).is_file():
        raise MdtraceError(f"kernel {rel} is not in the image at {image.path}: "
                           f"it has {', '.join(image.kernels)}")
    script = Path(script)
    if not script.is_file():
        raise MdtraceError(f"{script}: no such script")
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix=f"mdtrace-vm-{rel[:4]}-"))
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("rc", "output.log", "boot_uptime", "uname_r", "console.log", "src_rev",
                  "heartbeat"):
        (out / stale).unlink(missing_ok=True)
    snap: Path | None = None
    if src:
        src_dir = Path(src).resolve()
    else:
        snap = Path(tempfile.mkdtemp(prefix="mdtrace-vm-src-"))
        src_dir = snap / "src"
        (out / "src_rev").write_text(snapshot_tree(default_src_dir(), src_dir) + "\n")
    body = ["#!/bin/bash", "set -o pipefail"]
    for k, v in (env or {}).items():
        body.append(f"export {k}={_shq(v)}")
    argv = " ".join(_shq(a) for a in (args or []))
    # The script's exit code reaches the host even when something it left behind (IO stuck in
    # an array wedged by a kernel bug) keeps the agent's output pipe open or blocks power-off:
    # the host then stops qemu RC_GRACE_S after this file appears.
    body += [f"bash /mnt/out/job_script.sh {argv}", "rc=$?",
             "echo $rc > /mnt/out/rc.tmp && mv /mnt/out/rc.tmp /mnt/out/rc", "sync",
             "exit $rc"]
    shutil.copy2(script, out / "job_script.sh")
    (out / "job.sh").write_text("\n".join(body) + "\n")
    guest_limit = int(max(timeout_s - 60, timeout_s / 2))
    (out / "job_timeout").write_text(f"{guest_limit}\n")
    console = out / "console.log"
    disk_paths = _disk_files(out, disks, disk_mb)
    accel = accel or os.environ.get("MDTRACE_VM_ACCEL", "tcg")
    cmd = build_cmdline(image, rel, src_dir, out, disk_paths, cpus=cpus, mem_mb=mem_mb,
                        accel=accel, console_log=console, append=append)
    t0 = time.monotonic()
    timed_out = forced_off = False
    wedged = ""
    qemu_rc: int | None = None
    qemu_log = out / "qemu.log"
    # the CLI (`python -m vmtest run-script`) opts in through the environment
    expect_hung_tasks = expect_hung_tasks or os.environ.get("MDTRACE_VM_EXPECT_HUNG_TASKS") == "1"
    watch = Watch(timeout_s, expect_hung_tasks=expect_hung_tasks)
    try:
        with open(qemu_log, "wb") as qlog:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        rc_seen: float | None = None
        tail = _Tail(console)
        while proc.poll() is None:
            now = time.monotonic()
            if rc_seen is None and (out / "rc").exists():
                rc_seen = now
            watch.update(now, tail.read(), _read(out / "heartbeat"),
                         (out / "boot_uptime").exists())
            why = watch.stop_reason(now, t0)
            if why and rc_seen is None:
                timed_out = why.startswith("timed out")
                wedged = why
            elif rc_seen is not None and now - rc_seen > RC_GRACE_S:
                forced_off = True    # the script finished; the guest cannot power off
            if wedged or forced_off:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.5)
        qemu_rc = None if wedged or forced_off else proc.returncode
        watch.update(time.monotonic(), tail.read(), "", True)
    finally:
        for d in disk_paths:
            d.unlink(missing_ok=True)
        if snap is not None:
            shutil.rmtree(snap, ignore_errors=True)
    wall = time.monotonic() - t0
    if forced_off:
        with open(console, "a") as fh:
            fh.write(f"\nmdtrace-vm host: the script exited but the guest was still up "
                     f"{RC_GRACE_S} s later: qemu stopped\n")
    if wedged:
        with open(console, "a") as fh:
            fh.write(f"\nmdtrace-vm host: guest stopped after {wall:.0f} s: {wedged}\n")
    if qemu_rc not in (0, None) and not (out / "rc").exists():
        msg = _read(qemu_log).strip().splitlines()
        raise MdtraceError(f"qemu failed (exit {qemu_rc}): {msg[-1] if msg else 'no output'} "
                           f"(console: {console})")
    return RunResult(kernel=rel, rc=_read_int(out / "rc"), timed_out=timed_out,
                     output=_read(out / "output.log"), out_dir=out, console_log=console,
                     wall_s=wall, boot_s=_read_float(out / "boot_uptime"),
                     uname_r=_read(out / "uname_r").strip(), qemu_rc=qemu_rc, cmdline=cmd,
                     forced_off=forced_off, wedged=wedged, kernel_failure=watch.failure,
                     hung_tasks=watch.hung_tasks,
                     failure_to_stop_s=(None if watch.failure_at is None or not wedged
                                        else round(time.monotonic() - watch.failure_at, 1)),
                     failed_in_boot=bool(wedged) and watch.failed_before_start())


class _Tail:
    """New text of a growing file (the serial console), kept to whole lines."""

    def __init__(self, path: Path) -> None:
        self._path, self._pos, self._part = path, 0, ""

    def read(self) -> str:
        try:
            with open(self._path, "rb") as fh:
                fh.seek(self._pos)
                data = fh.read(4 << 20)
        except OSError:
            return ""
        self._pos += len(data)
        text = self._part + data.decode("utf-8", "replace").replace("\r", "")
        head, sep, self._part = text.rpartition("\n")
        return head + sep


def _shq(s: str) -> str:
    return "'" + str(s).replace("'", "'\"'\"'") + "'"


def _read(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return ""


def _read_int(p: Path) -> int | None:
    try:
        return int(_read(p).strip())
    except ValueError:
        return None


def _read_float(p: Path) -> float | None:
    try:
        return float(_read(p).strip())
    except ValueError:
        return None
