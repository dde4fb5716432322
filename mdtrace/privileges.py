"""Least privilege after the BPF programs are attached (issue 13, row 11).

Loading BPF programs, creating kprobes and opening /dev/kmsg need root (or CAP_BPF,
CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYSLOG).  Once they are attached, what a live command still
does is read perf buffers and BPF maps through descriptors it already holds, read sysfs and
/proc, and at exit detach the probes.  Two steps, both no-ops where they cannot apply:

- :func:`drop_after_attach` (the live session calls it once, after starting its producers):
  the calling thread, and every thread it starts afterwards (Linux capabilities are per
  thread and inherited at thread creation), keeps only the BPF capabilities (CAP_BPF and
  CAP_PERFMON where the kernel has them, 5.8+; else CAP_SYS_ADMIN, which older kernels ask
  for BPF map access); the rest leave the bounding set, the ambient set is cleared and
  no_new_privs is set, so no exec regains them.  The uid stays 0: detaching legacy kprobes
  at exit writes root-owned tracefs files (kprobe_events).
- :func:`confine_thread` (the exporter's HTTP threads call it when they start): the calling
  thread alone becomes ``nobody`` with no capabilities (a raw setresuid acts on one thread;
  glibc's wrapper would change every thread), so HTTP and TLS parsing never run as root.

The threads started *before* the drop (event source, kernel log reader, blocked-task
re-scans: /proc/PID/stack needs CAP_SYS_ADMIN) keep their capabilities.  See docs/engine.md
"Privileges" for what remains root and why.  Every syscall goes through :class:`Sys`, so the
logic is tested without root with a fake.
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass, field

CAP_SETPCAP = 8
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
_NAMES = {CAP_SYS_ADMIN: "CAP_SYS_ADMIN", CAP_PERFMON: "CAP_PERFMON", CAP_BPF: "CAP_BPF"}

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# per-thread credential syscalls (x86_64, aarch64); elsewhere confine_thread is a no-op
_SYSCALLS = {"x86_64": {"setgroups": 116, "setresuid": 117, "setresgid": 119},
             "aarch64": {"setgroups": 159, "setresuid": 147, "setresgid": 149}}


@dataclass
class Outcome:
    """What a drop did: ``applied`` False with the reason where it could not apply."""

    applied: bool
    reason: str
    kept: list[str] = field(default_factory=list)


class Sys:
    """The real syscalls (ctypes, libc).  Tests pass a fake with the same methods."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)

    def geteuid(self) -> int:
        return os.geteuid()

    def cap_last_cap(self) -> int:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                return int(f.read())
        except (OSError, ValueError):
            return 37          # a kernel without the file predates CAP_PERFMON/CAP_BPF

    def capget(self) -> tuple[int, int, int]:
        """(effective, permitted, inheritable) of the calling thread, 64-bit masks."""
        hdr = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)()
        if self._libc.capget(hdr, data) != 0:
            _raise("capget")
        return (data[0] | data[3] << 32, data[1] | data[4] << 32, data[2] | data[5] << 32)

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        hdr = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
        m = 0xFFFFFFFF
        data = (ctypes.c_uint32 * 6)(effective & m, permitted & m, inheritable & m,
                                     effective >> 32, permitted >> 32, inheritable >> 32)
        if self._libc.capset(hdr, data) != 0:
            _raise("capset")

    def prctl(self, option: int, arg: int = 0, arg3: int = 0) -> None:
        if self._libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3),
                            ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
            _raise(f"prctl({option})")

    def user(self, name: str) -> tuple[int, int] | None:
        import pwd

        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None
        return pw.pw_uid, pw.pw_gid

    def thread_setids(self, uid: int, gid: int) -> None:
        """setgroups([]), setresgid, setresuid as raw syscalls: the calling thread only."""
        nr = _SYSCALLS.get(platform.machine())
        if nr is None:
            raise OSError(0, f"no per-thread credential syscalls known for "
                             f"{platform.machine()}")
        sc = self._libc.syscall
        for what, args in (("setgroups", (0, None)), ("setresgid", (gid, gid, gid)),
                           ("setresuid", (uid, uid, uid))):
            if sc(ctypes.c_long(nr[what]), *[ctypes.c_long(a) if a is not None else None
                                              for a in args]) != 0:
                _raise(what)


def _raise(what: str) -> None:
    e = ctypes.get_errno()
    raise OSError(e, f"{what}: {os.strerror(e)}")


def _names(mask: int) -> list[str]:
    return [_NAMES.get(c, f"cap{c}") for c in range(64) if mask >> c & 1]


def drop_after_attach(bpf: bool, sys: Sys | None = None) -> Outcome:
    """Keep only what reading BPF maps needs, in this thread and the threads it starts.

    ``bpf``: BPF programs are attached (a sysfs-polling session has none: nothing to
    keep, but also nothing known to be safe to drop for dmsetup, so it is left alone)."""
    if not bpf:
        return Outcome(False, "no BPF programs attached")
    try:
        sys = sys or Sys()
        eff, perm, _ = sys.capget()
    except OSError as exc:
        return Outcome(False, f"capabilities not readable ({exc})")
    if sys.geteuid() != 0 and not eff:
        return Outcome(False, "not privileged")
    last = sys.cap_last_cap()
    want = (1 << CAP_BPF | 1 << CAP_PERFMON) if last >= CAP_BPF else 1 << CAP_SYS_ADMIN
    keep = want & perm
    try:
        if perm >> CAP_SETPCAP & 1:      # the bounding set needs CAP_SETPCAP to shrink
            for cap in range(last + 1):
                if not keep >> cap & 1:
                    sys.prctl(PR_CAPBSET_DROP, cap)
        sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        sys.capset(keep, keep, 0)
        sys.prctl(PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        return Outcome(False, f"capabilities not dropped ({exc})")
    return Outcome(True, "kept only the BPF capabilities", _names(keep))


def confine_thread(user: str = "nobody", sys: Sys | None = None) -> Outcome:
    """The calling thread becomes ``user`` (default nobody) with no capabilities; a no-op
    when the process is not root."""
    try:
        sys = sys or Sys()
        if sys.geteuid() != 0:
            return Outcome(False, "not root")
        ids = sys.user(user)
        if ids is None:
            ids = (65534, 65534)            # nobody/nogroup by number
        sys.prctl(PR_SET_NO_NEW_PRIVS, 1)
        sys.thread_setids(*ids)             # leaving uid 0 clears every capability
        sys.capset(0, 0, 0)                 # and say so, in case the kernel kept some
    except OSError as exc:
        return Outcome(False, f"thread not confined ({exc})")
    return Outcome(True, f"thread runs as uid {ids[0]} without capabilities")
