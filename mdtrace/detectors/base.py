"""What a detector sees.  Per-array detectors get a :class:`Context` (the array record, the
event or None on a tick, time, config); the graph detectors (F8, F9) a :class:`GraphContext`
with what the lock-order and wait-for graphs found.  Detectors return :class:`Verdict` s and
never mutate engine state, so each can be tested on hand-built records."""

from __future__ import annotations

from dataclasses import dataclass, field

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.locks import Inversion
from mdtrace.engine.model import Finding
from mdtrace.engine.waitfor import Cycle
from mdtrace.events import Event


@dataclass
class Context:
    arr: ArrayRec
    ev: Event | None
    now_ns: int
    config: EngineConfig
    kernel: str


@dataclass
class GraphContext:
    now_ns: int
    config: EngineConfig
    kernel: str
    arrays: dict[str, ArrayRec]
    inversions: list[Inversion] = field(default_factory=list)
    cycles: list[Cycle] | None = None   # None: not computed on this call (event, not tick)
    active: frozenset[str] = frozenset()  # keys of active findings (to clear vanished ones)


@dataclass
class Verdict:
    """Raise (``finding`` set) or clear (``finding`` None) the finding with ``key``."""

    key: str
    finding: Finding | None


def sysfs_path(arr: ArrayRec) -> str:
    return f"/sys/block/{arr.name}/md/sync_action"
