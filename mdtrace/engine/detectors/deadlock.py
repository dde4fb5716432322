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

CODE = "F9"

def _remedy(kind: str, arr: ArrayRec) -> str:
    """What breaks a cycle through a resource of ``kind`` on ``arr``."""
    if kind == "reshape":
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
        remedy = " ".join(dict.fromkeys(r for r in (_remedy(k, rec) for k in kinds) if r))
        out.append(Verdict(key, Finding(
            code="F9", title=f"deadlock: {len(cyc.steps)} tasks wait for each other "
                             f"({' -> '.join(kinds)})",
            array=array, start_ns=cyc.since_ns, severity=Severity.CRITICAL,
            explanation=("A wait-for cycle: " + cyc.describe() + ". None of them can move "
                         "until another does, so all stay blocked (dm_suspend waits "
                         "interruptibly, so hung_task never reports it)."),
            fix=fix_missing(ctx.kernel, (6, 9), "41425f96d7aa dm-raid456, md/raid456: fix a "
                            "deadlock for dm-raid456 while io concurrent with reshape (6.9)")
            if "reshape" in kinds else "",
            remedy=remedy + "; upgrade to a kernel with the fix.",
            evidence=[w.ev for w, _ in cyc.steps],
            details={"arrays": arrays, "tasks": [w.tid for w, _ in cyc.steps],
                     "resources": [w.resource for w, _ in cyc.steps]})))
    out += [Verdict(k, None) for k in ctx.active - live]
    return out
