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
    max_waits: int = 8192
    waits: dict[int, dict[str, Wait]] = field(default_factory=dict)  # tid -> key -> Wait

    def begin(self, key: str, resource: str, ev: Event, since_ns: int | None = None) -> None:
        per = self.waits.setdefault(ev.tid, {})
        if key in per:
            return
        if sum(len(v) for v in self.waits.values()) >= self.max_waits:
            return
        per[key] = Wait(ev.tid, ev.comm, resource,
                        ev.ts if since_ns is None else since_ns, ev)

    def end(self, tid: int, key: str) -> None:
        per = self.waits.get(tid)
        if per is not None and per.pop(key, None) is not None and not per:
            del self.waits[tid]

    def end_resource(self, resource: str, key_prefix: str = "") -> None:
        """End every wait on ``resource`` (optionally only those whose key has a prefix)."""
        for tid in list(self.waits):
            per = self.waits[tid]
            for key in [k for k, w in per.items()
                        if w.resource == resource and k.startswith(key_prefix)]:
                del per[key]
            if not per:
                del self.waits[tid]

    def cycles(self, providers: Callable[[str], list[int]]) -> list[Cycle]:
        """Every elementary task cycle reachable through current waits (small graphs)."""
        if not self.waits:
            return []
        succ: dict[int, list[tuple[Wait, int]]] = {}
        provided: dict[str, list[int]] = {}   # many waiters share a resource (blocked IO)
        for tid, per in self.waits.items():
            out = []
            for w in per.values():
                provs = provided.get(w.resource)
                if provs is None:
                    provs = provided[w.resource] = providers(w.resource)
                for prov in provs:
                    if prov in self.waits or prov == tid:
                        out.append((w, prov))
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
