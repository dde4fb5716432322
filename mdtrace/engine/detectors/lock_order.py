"""F8: lock-order inversion between md/dm mutex classes (a potential ABBA deadlock).

lockdep's rule on a kernel without lockdep: once class A was held while B was taken on one
path, taking A while holding B on another path can deadlock when both run at once.  Known md
orders: dm ``suspend_lock`` -> ``reconfig_mutex`` (dm-raid resume path, 95009ae904b1 for
raid_resume's hot_add_disk), ``suspend_mutex`` -> ``reconfig_mutex`` (6.7+,
mddev_suspend_and_lock).  Needs `mdtrace record --locks --locks-full` (every acquire/release).
"""

from __future__ import annotations

from mdtrace.engine.detectors.base import GraphContext, Verdict
from mdtrace.engine.locks import Inversion
from mdtrace.engine.model import Finding, Severity
from mdtrace.engine.waitfor import Cycle

CODE = "F8"


def wanted(inversions: list[Inversion] | None, cycles: list[Cycle] | None,
           active: frozenset[str]) -> bool:
    """Worth a check: it judges only inversions just found (findings stay once raised)."""
    return bool(inversions)


def check(ctx: GraphContext) -> list[Verdict]:
    out: list[Verdict] = []
    for inv in ctx.inversions:
        classes = inv.cycle[:-1]
        key = "F8:" + "->".join(sorted(classes))
        paths = "; ".join(
            f"{e.comm or 'task'}/{e.tid} on {e.array or '?'} took {e.second} while holding "
            f"{e.first}" for e in inv.edges)
        evidence = [ev for e in inv.edges for ev in e.example]
        array = inv.edges[0].array or (inv.edges[-1].array if inv.edges else "")
        out.append(Verdict(key, Finding(
            code="F8", title="lock-order inversion: " + " -> ".join(inv.cycle),
            array=array, start_ns=inv.edges[0].first_ns, severity=Severity.WARNING,
            explanation=(
                "Two code paths take the same md/dm mutexes in opposite orders ("
                + paths + "). Each path alone works; if they run at the same time each holds "
                "the lock the other needs and both hang forever (lockdep would print 'possible "
                "circular locking dependency'). No hang has to have happened yet."),
            fix="known md orders: dm suspend_lock -> reconfig_mutex (95009ae904b1, 6.9); "
                "suspend_mutex -> reconfig_mutex (mddev_suspend_and_lock, 6.7+)",
            remedy=("avoid running the two operations concurrently (serialise lvm/mdadm "
                    "commands on this array); report the two paths with this evidence to "
                    "linux-raid@vger.kernel.org; a lockdep kernel (CONFIG_PROVE_LOCKING) "
                    "confirms it."),
            evidence=evidence,
            details={"cycle": inv.cycle, "paths": [
                {"first": e.first, "second": e.second, "tid": e.tid, "comm": e.comm,
                 "array": e.array, "count": e.count} for e in inv.edges]})))
    return out
