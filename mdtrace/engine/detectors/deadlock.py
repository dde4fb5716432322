"""F9: a wait-for cycle - tasks blocked on each other through locks, thread stops, IO drains,
array suspends and reshape progress (mdtrace.engine.waitfor): an actual deadlock, not a risk.

The cycle must persist ``cycle_s`` before it is reported (transient cycles resolve themselves
when a wake-up was merely in flight).  The classic one (41425f96d7aa, 6.9): dm_suspend waits for
in-flight IO, the IO waits in raid5_make_request for the reshape to cross its sector, and the
reshape stays frozen until the suspending task resumes the array.
"""

from __future__ import annotations

from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.detectors.base import (
    GraphContext,
    Verdict,
    fix_missing,
    is_dm,
    resume_cmd,
    sync_action_cmd,
)
from mdtrace.engine.locks import Inversion
from mdtrace.engine.model import Finding, Severity
from mdtrace.engine.waitfor import Cycle
from mdtrace.kernel.flags import parse_release

CODE = "F9"

def _dm_message_idle(arr: ArrayRec) -> str:
    lv = arr.dm_name or arr.name
    return f"dmsetup message {lv} 0 idle"


def _remedy(kind: str, arr: ArrayRec, kernel: str = "") -> str:
    """What breaks a cycle through a resource of ``kind`` on ``arr``."""
    if kind == "reshape":
        if is_dm(arr) and kernel and parse_release(kernel) < (6, 9):
            # measured on 6.1.0-56 (tests/vm/guest/diagnose_hangs.sh, chain): dm-raid's
            # raid_message takes no suspend lock; "idle" clears MD_RECOVERY_FROZEN and wakes
            # the daemon, the reshape passes the IO, __dm_suspend's synchronize_srcu returns,
            # the suspend completes and queues the IO's next bio until resume
            return (f"from another shell: `{_dm_message_idle(arr)}` (dm-raid's message needs "
                    "no suspend lock: it unfreezes the reshape, the IO passes it and the "
                    f"suspend completes), then `{resume_cmd(arr)}`")
        if is_dm(arr):
            return ("resume/unfreeze the reshape so the IO can pass: dm-raid has no safe way "
                    f"out on this kernel except `{resume_cmd(arr)}` from another shell (if the "
                    "suspend was not yet entered), or a reboot")
        return ("resume/unfreeze the reshape so the IO can pass: "
                f"`{sync_action_cmd(arr, 'reshape')}`")
    if kind == "thread":
        return ("the sync thread cannot stop while its stopper blocks it: "
                f"`{sync_action_cmd(arr, 'idle')}` from another shell may break the loop")
    if kind == "suspend":
        return f"`{resume_cmd(arr)}`"
    if kind == "io" and is_dm(arr) and kernel and parse_release(kernel) < (6, 9):
        return ""             # the reshape's remedy above drains it
    return {"lock": "the tasks hold mutexes each other needs: only a reboot frees them",
            "io": "the IO cannot drain: see the IO waits above"}.get(kind, "")


def _arrays(cyc: Cycle) -> list[str]:
    out: list[str] = []
    for w, _ in cyc.steps:
        kind, _, name = w.resource.partition(":")
        cand = w.ev.array if kind == "lock" else name
        if cand and cand not in out:
            out.append(cand)
    return out


def wanted(inversions: list[Inversion] | None, cycles: list[Cycle] | None,
           active: frozenset[str]) -> bool:
    """Worth a check: on ticks (cycles computed), with a cycle now or one to clear."""
    return cycles is not None and bool(cycles or active)


def check(ctx: GraphContext) -> list[Verdict]:
    if ctx.cycles is None:
        return []
    out: list[Verdict] = []
    live: set[str] = set()
    limit = ctx.config.cycle_s * 1e9
    for cyc in ctx.cycles:
        key = "F9:" + cyc.key
        live.add(key)
        if ctx.now_ns - cyc.since_ns < limit:
            continue
        arrays = _arrays(cyc)
        array = arrays[0] if arrays else ""
        kinds = [w.resource.partition(":")[0] for w, _ in cyc.steps]
        rec = ctx.arrays.get(array) or ArrayRec(name=array)
        remedy = " ".join(dict.fromkeys(r for r in (_remedy(k, rec, ctx.kernel)
                                                    for k in kinds) if r))
        # __dm_suspend's synchronize_srcu(&md->io_barrier) (6.1) waits uninterruptibly for
        # a submitter still inside dm's map under the SRCU read lock: here the IO asleep in
        # raid5_make_request (raid_map -> md_handle_request); dm_wait_for_completion, the
        # later drain, waits interruptibly
        srcu = any(any(str(f).split(" ", 1)[0].lstrip("_") == "synchronize_srcu"
                       for f in (w.ev.args.get("frames") or ())[:3]) for w, _ in cyc.steps)
        how = ("the suspend waits in synchronize_srcu, uninterruptibly (the IO sleeps inside "
               "dm's map holding dm's SRCU read lock): killing it does nothing, and hung_task "
               "reports it" if srcu else
               "dm_suspend waits interruptibly, so hung_task never reports it")
        out.append(Verdict(key, Finding(
            code="F9", title=f"deadlock: {len(cyc.steps)} tasks wait for each other "
                             f"({' -> '.join(kinds)})",
            array=array, start_ns=cyc.since_ns, severity=Severity.CRITICAL,
            explanation=("A wait-for cycle: " + cyc.describe() + ". None of them can move "
                         f"until another does, so all stay blocked ({how})."),
            fix=fix_missing(ctx.kernel, (6, 9), "41425f96d7aa dm-raid456, md/raid456: fix a "
                            "deadlock for dm-raid456 while io concurrent with reshape (6.9)")
            if "reshape" in kinds else "",
            remedy=remedy + "; upgrade to a kernel with the fix.",
            evidence=[w.ev for w, _ in cyc.steps],
            details={"arrays": arrays, "tasks": [w.tid for w, _ in cyc.steps],
                     "resources": [w.resource for w, _ in cyc.steps]})))
    out += [Verdict(k, None) for k in ctx.active - live]
    return out
