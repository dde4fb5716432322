"""What a detector sees: the array record, the event (or None on a tick), time and config."""

from __future__ import annotations

from dataclasses import dataclass

from mdtrace.config import EngineConfig
from mdtrace.engine.arrays import ArrayRec
from mdtrace.engine.model import Finding
from mdtrace.events import Event


@dataclass
class Context:
    arr: ArrayRec
    ev: Event | None
    now_ns: int
    config: EngineConfig
    kernel: str


@dataclass
class Verdict:
    """Raise (``finding`` set) or clear (``finding`` None) the finding with ``key``."""

    key: str
    finding: Finding | None


def sysfs_path(arr: ArrayRec) -> str:
    return f"/sys/block/{arr.name}/md/sync_action"
