"""What the engine forgets, and when: stopped arrays and closed findings (issue 13, row 3).

A live engine runs for months; arrays come and go (dm-raid table reloads create a new mddev
each time).  Without forgetting, every stopped array's record and every closed finding stays
in memory, in every tick and in every scrape.  The rule, in one place:

- a stopped array leaves the working set ``retention_s`` (EngineConfig, default 300 s) of
  engine time after its stop, or earlier when more than :data:`MAX_STOPPED` stopped arrays
  are kept; what stays of it is a *tombstone* (name, generation, stop time, last state), so a
  new array of the same name continues the generation count and F3's stop-time rule;
- a closed finding is forgotten ``retention_s`` after it closed, or earlier beyond
  :data:`MAX_CLOSED` closed findings (live engines only: see below);
- tombstones themselves: at most :data:`MAX_TOMBSTONES`, oldest first.

A post-mortem engine (``archive``: the report, which must list every array and finding of
the trace) forgets nothing: retired arrays move out of the per-tick loop into the archive,
whole, and closed findings stay.  Its snapshot marks archived arrays ``retired`` so a
front end that serves live series (the exporter) drops them like a live engine would.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.model import Lifecycle

MAX_STOPPED = 64          # stopped arrays kept in the working set at once
MAX_CLOSED = 1024         # closed findings kept (live engines)
MAX_TOMBSTONES = 4096     # names whose generation count is remembered


@dataclass
class Retention:
    retention_ns: int
    archive: bool = False
    # stopped arrays in the order they stopped: (stop ts, name, generation)
    stopped: deque[tuple[int, str, int]] = field(default_factory=deque)
    # name -> its last retired generation (the whole record when archiving, else slim)
    retired: dict[str, ArrayRec] = field(default_factory=dict)
    retired_total: int = 0

    def array_stopped(self, arr: ArrayRec, ts: int) -> None:
        self.stopped.append((ts, arr.name, arr.generation))

    def expire(self, now_ns: int, arrays: dict[str, ArrayRec]) -> int:
        """Move stopped arrays past retention (or beyond the cap) out of ``arrays``."""
        q, n = self.stopped, 0
        before = now_ns - self.retention_ns
        while q and (q[0][0] <= before or len(q) > MAX_STOPPED):
            _, name, gen = q.popleft()
            arr = arrays.get(name)
            if arr is None or arr.generation != gen or arr.lifecycle is not Lifecycle.STOPPED:
                continue      # the name lives again (a newer generation): nothing to retire
            del arrays[name]
            self.retired.pop(name, None)      # re-insert: newest last, for the FIFO below
            self.retired[name] = arr if self.archive else _tombstone(arr)
            n += 1
        if not self.archive:
            while len(self.retired) > MAX_TOMBSTONES:
                del self.retired[next(iter(self.retired))]
        self.retired_total += n
        return n

    def revive(self, name: str) -> ArrayRec | None:
        """The retired record of ``name`` (it is seen again): the new generation follows it."""
        return self.retired.pop(name, None)


def _tombstone(arr: ArrayRec) -> ArrayRec:
    """What a live engine keeps of a retired array: identity and the per-name stop time."""
    return ArrayRec(name=arr.name, generation=arr.generation, mddev=arr.mddev, kind=arr.kind,
                    dm_name=arr.dm_name, level=arr.level, lifecycle=arr.lifecycle,
                    lifecycle_since=arr.lifecycle_since, stop_ns=arr.stop_ns,
                    last_ns=arr.last_ns, last_state=arr.last_state)
