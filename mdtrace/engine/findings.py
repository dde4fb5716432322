"""The engine's findings: kept by key, open ones indexed by array, closed ones forgettable.

Why an index: the engine asks "which findings are open" on every tick and "close those of
array X" on every stop and generation change.  Scanning every finding ever raised made both
O(findings) per call (quadratic over a trace with thousands of blocked IOs or arrays); with
the index each costs O(open findings it touches).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from mdtrace.engine.model import Finding

_NONE: frozenset[str] = frozenset()


@dataclass
class FindingStore:
    by_key: dict[str, Finding] = field(default_factory=dict)
    # array name -> key -> finding, open findings only
    open: dict[str, dict[str, Finding]] = field(default_factory=dict)
    # code -> keys of its open findings (the graph detectors ask for theirs every tick)
    open_by_code: dict[str, dict[str, None]] = field(default_factory=dict)
    # order of first appearance of each key: ties in the findings' sort keep it
    seq: dict[str, int] = field(default_factory=dict)
    # closed findings in the order they closed: (end_ns, key, finding), for :meth:`forget_closed`
    closed_log: deque[tuple[int, str, Finding]] = field(default_factory=deque)
    raised_by_code: dict[str, int] = field(default_factory=dict)   # monotonic
    # key -> the generation of the array record that raised it (per-array detectors): two
    # mddevs live under one dm name during a dm-raid table reload (engine/core.py
    # _other_mddev), so a stop or generation change closes only its own record's findings
    generation: dict[str, int] = field(default_factory=dict)
    # False for a post-mortem engine, which keeps every finding for the report: no log
    forgettable: bool = True
    forgotten: int = 0
    _next: int = 0

    def get(self, key: str) -> Finding | None:
        return self.by_key.get(key)

    def add(self, key: str, f: Finding, generation: int | None = None) -> None:
        """A finding raised (new, or again after it closed: it replaces the closed one);
        ``generation``: of the array record whose detector raised it (None: a graph
        finding, closed with every generation of its array)."""
        f.key = key
        self.by_key[key] = f
        if generation is None:
            self.generation.pop(key, None)
        else:
            self.generation[key] = generation
        if key not in self.seq:
            self.seq[key] = self._next
            self._next += 1
        if f.end_ns is None:
            self.open.setdefault(f.array, {})[key] = f
            self.open_by_code.setdefault(f.code, {})[key] = None
        self.raised_by_code[f.code] = self.raised_by_code.get(f.code, 0) + 1

    def close(self, f: Finding, ts: int) -> None:
        if f.end_ns is not None:
            return
        f.end_ns = ts
        per = self.open.get(f.array)
        if per is not None:
            per.pop(f.key, None)
            if not per:
                del self.open[f.array]
        self._unindex_code(f)
        if self.forgettable:
            self.closed_log.append((ts, f.key, f))

    def close_array(self, name: str, ts: int, generation: int | None = None) -> None:
        """Close the open findings of array ``name``: all of them, or with ``generation``
        those of that record (and the graph findings on the name, which have none)."""
        per = self.open.get(name)
        if not per:
            return
        gens = self.generation
        for key, f in list(per.items()):
            if generation is not None and gens.get(key, generation) != generation:
                continue
            del per[key]
            f.end_ns = ts
            self._unindex_code(f)
            if self.forgettable:
                self.closed_log.append((ts, f.key, f))
        if not per:
            del self.open[name]

    def _unindex_code(self, f: Finding) -> None:
        keys = self.open_by_code.get(f.code)
        if keys is not None:
            keys.pop(f.key, None)
            if not keys:
                del self.open_by_code[f.code]

    def open_keys(self, code: str) -> frozenset[str]:
        keys = self.open_by_code.get(code)
        return frozenset(keys) if keys else _NONE

    def open_findings(self) -> Iterator[Finding]:
        for per in self.open.values():
            yield from per.values()

    def sorted(self) -> list[Finding]:
        """Active first, then by start; ties in the order their keys first appeared."""
        seq = self.seq
        return sorted(self.by_key.values(),
                      key=lambda f: (f.end_ns is not None, f.start_ns, seq[f.key]))

    def forget_closed(self, before_ns: int, keep: int) -> int:
        """Drop closed findings that closed before ``before_ns``, and the oldest beyond the
        newest ``keep`` closed ones.  Returns how many were dropped."""
        log, by_key, n = self.closed_log, self.by_key, 0
        while log and (log[0][0] < before_ns or len(log) > keep):
            _, key, f = log.popleft()
            # a key raised again since has a newer finding (and log entry): skip the stale one
            if by_key.get(key) is f and f.end_ns is not None:
                del by_key[key]
                del self.seq[key]
                self.generation.pop(key, None)
                n += 1
        self.forgotten += n
        return n
