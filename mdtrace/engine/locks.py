"""Lock-order graph over md/dm mutex *classes*, lockdep style, plus who holds which instance.

Why classes: lockdep reports an order inversion between two code paths even when they never
ran at the same time, and even on different arrays (reconfig_mutex of md0 then suspend_mutex of
md0 on one path, the reverse on another path is a potential ABBA deadlock for every array).

Holders and lock order need every acquire and release (`mdtrace record --locks --locks-full`).
In contention-only mode (`--locks`) the kernel reports only slow-path waits and their end;
the graph then records who waits on which lock instance (for the wait-for graph) but builds no
order edges and no holders, because without releases a held set would only grow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mdtrace.events import Event

# ops that say a task now holds the lock / no longer waits for it
_GOT = "acquired"
_FULL_OPS = frozenset({"acquire", "release"})


@dataclass
class Held:
    lock_id: str
    cls: str
    array: str
    since_ns: int
    ev: Event


@dataclass
class OrderEdge:
    """``first`` was held when ``second`` was acquired, ``count`` times; ``example`` holds the
    two acquisition events (first's, second's) of the first time it was seen."""

    first: str
    second: str
    count: int
    tid: int
    comm: str
    array: str
    first_ns: int
    example: tuple[Event, Event]


@dataclass
class Inversion:
    """A cycle in the class order graph: ``cycle`` = [A, B, ..., A] with one edge per step."""

    cycle: list[str]
    edges: list[OrderEdge]


@dataclass
class LockGraph:
    max_edges: int = 4096
    full: bool = False
    held: dict[int, list[Held]] = field(default_factory=dict)
    owner: dict[str, int] = field(default_factory=dict)          # lock_id -> tid
    lock_class: dict[str, str] = field(default_factory=dict)     # lock_id -> class
    waiting: dict[int, tuple[str, int, Event]] = field(default_factory=dict)  # tid -> lock
    edges: dict[tuple[str, str], OrderEdge] = field(default_factory=dict)

    def on_lock(self, ev: Event) -> list[Inversion]:
        """Apply one ``lock`` event; return order cycles closed by it (new edges only)."""
        a = ev.args
        op = str(a.get("op", ""))
        lock_id = str(a.get("lock_id", ""))
        cls = str(a.get("lock", "?"))
        tid = ev.tid
        if not lock_id:
            return []
        self.lock_class[lock_id] = cls
        if op in _FULL_OPS:
            self.full = True
        if op in ("acquire", "contend"):
            self.waiting[tid] = (lock_id, ev.ts, ev)
            return []
        if op == "trylock_fail":
            self._stop_waiting(tid, lock_id)
            return []
        if op == "release":
            self._stop_waiting(tid, lock_id)
            stack = self.held.get(tid, [])
            for i in range(len(stack) - 1, -1, -1):
                if stack[i].lock_id == lock_id:
                    del stack[i]
                    break
            if not stack:
                self.held.pop(tid, None)
            if self.owner.get(lock_id) == tid:
                del self.owner[lock_id]
            return []
        if op != _GOT:
            return []
        self._stop_waiting(tid, lock_id)
        if not self.full:
            return []
        stack = self.held.setdefault(tid, [])
        found: list[Inversion] = []
        for h in stack:
            if h.cls == cls:
                continue  # same class nested: lockdep needs annotations; not an order edge
            inv = self._add_edge(h, cls, ev)
            if inv is not None:
                found.append(inv)
        stack.append(Held(lock_id, cls, ev.array, ev.ts, ev))
        self.owner[lock_id] = tid
        return found

    def _stop_waiting(self, tid: int, lock_id: str) -> None:
        w = self.waiting.get(tid)
        if w is not None and w[0] == lock_id:
            del self.waiting[tid]

    def _add_edge(self, held: Held, cls: str, ev: Event) -> Inversion | None:
        key = (held.cls, cls)
        edge = self.edges.get(key)
        if edge is not None:
            edge.count += 1
            return None
        if len(self.edges) >= self.max_edges:
            return None
        edge = OrderEdge(held.cls, cls, 1, ev.tid, ev.comm, ev.array, ev.ts, (held.ev, ev))
        self.edges[key] = edge
        path = self._path(cls, held.cls)
        if path is None:
            return None
        cycle = [held.cls, *path]
        return Inversion(cycle, [edge] + [self.edges[(path[i], path[i + 1])]
                                          for i in range(len(path) - 1)])

    def _path(self, src: str, dst: str) -> list[str] | None:
        """Shortest class path src -> ... -> dst over existing order edges (BFS)."""
        if src == dst:
            return [src]
        succ: dict[str, list[str]] = {}
        for a, b in self.edges:
            succ.setdefault(a, []).append(b)
        prev: dict[str, str] = {src: src}
        queue = [src]
        while queue:
            nxt: list[str] = []
            for node in queue:
                for b in succ.get(node, ()):
                    if b in prev:
                        continue
                    prev[b] = node
                    if b == dst:
                        out = [b]
                        while out[-1] != src:
                            out.append(prev[out[-1]])
                        return out[::-1]
                    nxt.append(b)
            queue = nxt
        return None

    def held_by(self, tid: int) -> list[Held]:
        return list(self.held.get(tid, ()))

    def forget_task(self, tid: int) -> None:
        self.held.pop(tid, None)
        self.waiting.pop(tid, None)
