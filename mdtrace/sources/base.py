"""The contract every event source meets, so engine and front ends never care which it is."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Protocol

from mdtrace.events import Event
from mdtrace.trace import TraceHeader


class Source(Protocol):
    """A stream of canonicalised :class:`Event` objects.

    ``events(stop)`` blocks and yields until the source is exhausted (replay) or ``stop`` is
    set (live).  ``header`` names the kernel and its flag tables (what a recording writes).
    ``health()`` reports lost events and probe status for the tracer-health views.
    """

    name: str
    header: TraceHeader

    def events(self, stop: threading.Event) -> Iterator[Event]: ...

    def health(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
