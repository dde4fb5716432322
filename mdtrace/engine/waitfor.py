"""Wait-for graph: tasks blocked on resources, resources provided by tasks; a cycle is a deadlock.

Resources are strings ``kind:name``:

- ``lock:<lock_id>``   a mutex instance; provided by its holder (needs --locks-full).
- ``reshape:<array>``  reshape progress (IO across the reshape position waits on it); provided
  by whoever is suspending the array right now (a suspend freezes the reshape until resume),
  else by the sync thread when the reshape can progress, else by nobody (that is F7, not F9).
- ``io:<array>``       in-flight IO draining (mddev_suspend, dm_suspend wait for it); provided
  by every task with IO blocked in raid5_make_request on that array.
- ``thread:<array>``   the sync thread stopping (md_unregister_thread, stop_sync_thread via
  dm-raid's suspend hooks); provided by the sync thread while md_do_sync runs, then by the md
  daemon that must reap it.
- ``suspend:<array>``  an array suspended (sb_wait in md_handle_request); provided by the task
  suspending it.

The engine tells the graph when waits begin and end; who provides a resource is asked of the
engine at check time (``providers``), because that changes with array state, not with the
waiter.  Cycles are searched among tasks only: task -> resource -> provider task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mdtrace.events import Event


@dataclass
class Wait:
    tid: int
    comm: str
    resource: str
    since_ns: int
    ev: Event


@dataclass
class Cycle:
    """``steps``: (waiting task's Wait, provider tid) around the loop; ``since_ns``: the cycle
    exists since its newest wait began."""

    steps: list[tuple[Wait, int]]
    since_ns: int

    @property
    def key(self) -> str:
        return "|".join(sorted(f"{w.tid}>{w.resource}" for w, _ in self.steps))

    def describe(self) -> str:
        parts = []
        for w, prov in self.steps:
            parts.append(f"{w.comm or 'task'}/{w.tid} waits for {w.resource} held by task {prov}")
        return "; ".join(parts)


@dataclass
class WaitForGraph:
    """Waits by task and by resource.  Every operation costs O(waits it touches), never
    O(all waits): ``begin``/``end`` are O(1), ``end_resource`` O(waits on that resource), and
    ``cycles`` looks only at tasks that both wait and provide a resource someone waits on
    (only those can be on a cycle).  At most ``max_waits`` waits are kept; ``work`` counts
    the wait entries each call visited (the scale tests assert linear growth on it)."""

    max_waits: int = 8192
    waits: dict[int, dict[str, Wait]] = field(default_factory=dict)  # tid -> key -> Wait
    by_resource: dict[str, dict[tuple[int, str], None]] = field(default_factory=dict)
    count: int = 0
    dropped: int = 0      # waits refused at the cap
    work: int = 0

    def begin(self, key: str, resource: str, ev: Event, since_ns: int | None = None) -> None:
        per = self.waits.get(ev.tid)
        if per is not None and key in per:
            return
        if self.count >= self.max_waits:
            self.dropped += 1
            return
        if per is None:
            per = self.waits[ev.tid] = {}
        per[key] = Wait(ev.tid, ev.comm, resource,
                        ev.ts if since_ns is None else since_ns, ev)
        self.by_resource.setdefault(resource, {})[(ev.tid, key)] = None
        self.count += 1

    def end(self, tid: int, key: str) -> None:
        per = self.waits.get(tid)
        if per is None:
            return
        w = per.pop(key, None)
        if w is None:
            return
        self._unindex(w.resource, tid, key)
        if not per:
            del self.waits[tid]

    def _unindex(self, resource: str, tid: int, key: str) -> None:
        self.count -= 1
        idx = self.by_resource.get(resource)
        if idx is not None:
            idx.pop((tid, key), None)
            if not idx:
                del self.by_resource[resource]

    def end_resource(self, resource: str, key_prefix: str = "") -> None:
        """End every wait on ``resource`` (optionally only those whose key has a prefix)."""
        idx = self.by_resource.get(resource)
        if not idx:
            return
        for tid, key in [tk for tk in idx if tk[1].startswith(key_prefix)]:
            self.work += 1
            self.end(tid, key)

    def cycles(self, providers: Callable[[str], list[int]]) -> list[Cycle]:
        """Every elementary task cycle through current waits.

        A task on a cycle waits (it is in ``waits``) and provides a resource someone waits on,
        so the search starts from those candidates only: with thousands of IOs blocked on a
        reshape nobody waits for, a check is O(resources), not O(waits).  The result (cycles
        and their order) is the same as searching every task."""
        if not self.waits:
            return []
        provided: dict[str, list[int]] = {}   # many waiters share a resource (blocked IO)
        waits = self.waits
        cand: set[int] = set()
        for resource in self.by_resource:
            self.work += 1
            provs = provided[resource] = providers(resource)
            cand.update(p for p in provs if p in waits)
        succ: dict[int, list[tuple[Wait, int]]] = {}
        for tid in cand:
            out: list[tuple[Wait, int]] = []
            for w in waits[tid].values():
                self.work += 1
                out.extend((w, prov) for prov in provided[w.resource] if prov in cand)
            if out:
                succ[tid] = out
        found: dict[str, Cycle] = {}
        for start in sorted(succ):
            self._dfs(start, start, succ, [], set(), found)
        return list(found.values())

    def _dfs(self, start: int, node: int, succ: dict[int, list[tuple[Wait, int]]],
             path: list[tuple[Wait, int]], seen: set[int], found: dict[str, Cycle]) -> None:
        if len(path) > 16:
            return
        seen.add(node)
        for w, prov in succ.get(node, ()):
            step = [*path, (w, prov)]
            if prov == start:
                cyc = Cycle(step, max(s[0].since_ns for s in step))
                found.setdefault(cyc.key, cyc)
            elif prov not in seen and prov > start:
                self._dfs(start, prov, succ, step, seen, found)
        seen.discard(node)

    def waiting_tasks(self) -> int:
        return len(self.waits)
