"""F11: an md kernel thread died in a kernel oops/BUG; the array will never recover by itself.

md never restarts its threads.  With the personality daemon (``mdX_raid5``: raid5d) dead no
stripe is handled again, so IO to the array, the sync thread's end and ``mdadm --stop`` wait
forever; a dead sync thread never sets MD_RECOVERY_DONE.  Nothing short of a reboot helps, and
the kernel log is the bug report.  Raised when the kernel log (``kernel_log`` event) reports a
fatal oops in a task the engine ties to the array (mdtrace.engine.kernel_log).
"""

from __future__ import annotations

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.detectors.base import Context, Verdict
from mdtrace.engine.model import Finding, Severity
from mdtrace.kernel.flags import parse_release

CODE = "F11"
CODES = (CODE,)

# Oopses whose fix is known: (frame the stack has, first and first fixed kernel, fix).
# md_end_clone_io in raid5d, 6.9 to 7.0: 41425f96d7aa (6.9) made raid5_make_request free the
# md clone bio (md_free_cloned_bio) on STRIPE_WAIT_RESHAPE while stripes that took earlier
# parts of it still point at it; raid5d later ends it again, a double free (SLUB's BUG_ON in
# set_freepointer, "kernel BUG at mm/slub.c:550" on 6.12.117).  Fixed by 418b3e64e445 (7.1),
# not in 6.12.y up to 6.12.118 (docs/kernels.md).
KNOWN: tuple[tuple[str, tuple[int, int], tuple[int, int], str], ...] = (
    ("md_end_clone_io", (6, 9), (7, 1),
     "418b3e64e445 md/raid5: Fix UAF on IO across the reshape position (7.1; not in 6.12.y "
     "as of 6.12.118)"),
)


def wanted(arr: ArrayRec, config: EngineConfig) -> bool:
    return False          # raised by the kernel_log event itself; only a stop ends it


def known_fix(frames: tuple[str, ...], kernel: str) -> str:
    ver = parse_release(kernel) if kernel else (0, 0)
    names = {f.split(" ", 1)[0] for f in frames}
    for frame, lo, hi, fix in KNOWN:
        if frame in names and (ver == (0, 0) or lo <= ver < hi):
            return fix
    return ""


def check(ctx: Context) -> list[Verdict]:
    arr, ev = ctx.arr, ctx.ev
    d = arr.thread_died
    if ev is None or ev.kind != "kernel_log" or d is None or d.event is not ev:
        return []
    who = f"{d.thread} (pid {d.pid})" if d.pid else d.thread
    name = arr.dm_name or arr.name
    if d.daemon:
        effect = (f"md never restarts it: no stripe of {name} is handled again, so IO to "
                  f"{name} (and any IO already waiting) never completes, the sync thread "
                  "cannot finish, and `mdadm --stop`/`lvchange -an` block too")
    else:
        effect = (f"its md_do_sync never returns or sets MD_RECOVERY_DONE, so the daemon "
                  f"never reaps it and the next sync action or stop of {name} waits forever")
    if arr.threads is not None and d.thread not in arr.threads:
        effect += f"; {d.thread} is gone from the process list"
    return [Verdict(f"F11:{arr.name}:{arr.generation}:{d.thread}", Finding(
        code="F11", title=f"md thread {d.thread} died in a kernel {_what(d.text)}",
        array=arr.name, start_ns=d.ts, severity=Severity.CRITICAL,
        explanation=(f"{name}'s {d.role} thread {who} died in a kernel report "
                     f"'{d.text}' (in {d.stack()}): {effect}. This is a kernel bug, not a "
                     "configuration problem."),
        fix=known_fix(d.frames, ctx.kernel),
        remedy=("reboot: the dead thread cannot be restarted and the array cannot be stopped "
                "cleanly; save the kernel log first (`dmesg > md-oops.txt` or `journalctl "
                f"-k -b`) for the bug report. After the reboot {name} assembles again (a "
                "reshape continues from its last checkpoint); avoid the operation that "
                "triggered it until the kernel has the fix."),
        evidence=[d.event],
        details={"thread": d.thread, "role": d.role, "pid": d.pid, "report": d.text,
                 "rip": d.rip, "stack": d.stack(12)}))]


def _what(text: str) -> str:
    return "BUG" if "BUG" in text else "panic" if "panic" in text else "oops"
