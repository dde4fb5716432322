"""F7: IO across the reshape position waits while the reshape cannot make progress."""

from __future__ import annotations

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec, IoWait
from mdtrace.engine.blocked import is_task_io
from mdtrace.engine.detectors.base import (
    Context,
    Verdict,
    fix_missing,
    is_dm,
    readwrite_cmd,
    resume_cmd,
    sync_action_cmd,
)
from mdtrace.engine.iowait import blocked_reason, io_key
from mdtrace.engine.model import Finding, Severity
from mdtrace.kernel.flags import parse_release

CODE = "F7"
CODES = (CODE,)


def finding_key(array: str, generation: int, io_id: str) -> str:
    """One F7 finding per blocked IO of an array generation (the engine closes it by this
    key when the IO completes)."""
    return f"F7:{array}:{generation}:{io_id}"


def wanted(arr: ArrayRec, config: EngineConfig) -> bool:
    """Worth a tick check (it judges only the blocked IO it tracks)."""
    return bool(arr.io_waits)


def behaviour(kernel: str, mode: str) -> str:
    """What the running kernel does with such an IO (measured on 6.1 and 6.12, docs/kernels.md),
    said only for the kernel of the trace."""
    ver = parse_release(kernel)
    if mode == "requeue" or ver >= (6, 9):
        return ("6.9+: raid5 refuses the IO (STRIPE_WAIT_RESHAPE) and md re-submits it in a "
                "loop (dm-raid requeues it) until the reshape moves")
    sleeps = ("the IO sleeps uninterruptibly (state D, on wait_for_overlap) until the reshape "
              "moves, then completes")
    if ver >= (6, 7):
        return f"6.7/6.8: {sleeps}"
    if ver == (0, 0):
        return sleeps
    return f"{ver[0]}.{ver[1]}: {sleeps}"


def check(ctx: Context) -> list[Verdict]:
    """On an ``io_wait`` event: that IO only (its finding gets the event as evidence); on a
    tick or another trigger (reap, register, kernel log): every tracked IO of the array.

    Bounded work: the array-wide parts (why the reshape cannot move, remedy, fixing commit,
    kernel behaviour per wait mode) are computed once per call, not once per IO, and an
    ``io_wait`` costs O(1) however many IOs are blocked (it used to judge them all)."""
    arr = ctx.arr
    reason = blocked_reason(arr)
    if not reason:
        return []
    ev = ctx.ev
    if ev is not None and ev.kind == "io_wait":
        w = arr.io_waits.get(io_key(ev))
        waits = [] if w is None else [w]
    else:
        waits = list(arr.io_waits.values())
    limit = ctx.config.io_wait_s * 1e9
    out: list[Verdict] = []
    shared: tuple[str, str, str, str, str] | None = None
    behaviours: dict[str, str] = {}
    name, rpos = arr.name, arr.reshape_pos
    for w in waits:
        if w.f7 is not None and w.f7.end_ns is None and w.f7.details.get("reason") == reason:
            # raised and still open: re-assert it (the engine only marks it seen)
            out.append(Verdict(w.f7.key, w.f7))
            continue
        waited = w.last_ns - w.first_ns
        if w.wait_ns > waited:
            waited = w.wait_ns
        if waited < limit:
            continue
        if shared is None:
            shared = (f"IO across the reshape position blocked ({reason})", _pos(arr),
                      _fix(arr, ctx.kernel), _remedy(arr, reason),
                      finding_key(name, arr.generation, ""))
        title, pos, fix, remedy, prefix = shared
        mode = w.mode
        kb = behaviours.get(mode)
        if kb is None:
            kb = behaviours[mode] = behaviour(ctx.kernel, mode)
        w.f7 = Finding(
            "F7", title, name, w.first_ns, Severity.CRITICAL,
            f"{w.comm or 'task'} (tid {w.tid}) {_io(w)} crosses {name}'s reshape "
            f"position ({pos}) and had waited {_waited(w, waited)} when this was "
            f"raised, but the reshape cannot progress ({reason}). Kernel behaviour: "
            f"{kb}.",
            remedy, fix,
            details={"reason": reason, "mode": mode, "wait_s": round(waited / 1e9, 3),
                     "sector": w.sector, "reshape_pos": rpos, "kernel_behaviour": kb})
        w.f7.key = prefix + w.io_id
        out.append(Verdict(w.f7.key, w.f7))
    return out


def _fix(arr: ArrayRec, kernel: str) -> str:
    """41425f96d7aa is a dm-raid456 deadlock fix: on plain md an IO waiting for a frozen or
    read-only reshape is the designed behaviour, and no kernel change makes it move."""
    if not is_dm(arr):
        return ""
    return fix_missing(kernel, (6, 9), "41425f96d7aa md/raid456: fix a deadlock for "
                       "dm-raid456 while io concurrent with reshape (6.9)")


def _io(w: IoWait) -> str:
    """'W of 8 sectors at sector 4000'; a task a snapshot (mdtrace diagnose) saw blocked has
    no known sector: asleep in raid5_make_request by its kernel stack (mode 'stack'), or
    running while the kernel log shows the refusals (mode 'requeue')."""
    if w.mode == "stack":
        return "IO (its kernel stack is in raid5_make_request)"
    if is_task_io(w.io_id):
        return ("IO (running: refused and re-submitted, as the kernel log's 'io across "
                "reshape position' lines show)")
    return f"{w.rw} of {w.sectors} sectors at sector {w.sector}"


def _pos(arr: ArrayRec) -> str:
    # dm-raid publishes no reshape position (dmsetup status has none)
    return "not visible" if arr.reshape_pos is None else str(arr.reshape_pos)


def _waited(w: IoWait, waited: int) -> str:
    if w.mode == "stack" and not waited:
        return "an unknown time"
    return f"{waited / 1e9:.1f}s"


def _remedy(arr: ArrayRec, reason: str) -> str:
    name = arr.dm_name or arr.name
    resume = resume_cmd(arr)
    return {
        "read_only": f"make the array writable: `{readwrite_cmd(arr)}`, so the reshape can "
                     "continue",
        "frozen": f"unfreeze the reshape: `{sync_action_cmd(arr, 'reshape')}`",
        "wait": f"MD_RECOVERY_WAIT is set (dm-raid): resume {name} (`{resume}`) so the "
                "reshape can start",
        "md_thread_dead": f"reboot: {name}'s md thread died in a kernel oops (see F11); "
                          "nothing moves this IO any more",
        "dm_suspended": f"`{resume}`",
        "suspended": f"resume the array (`{resume}`)",
    }.get(reason, f"restart the reshape: `{sync_action_cmd(arr, 'reshape')}`")
