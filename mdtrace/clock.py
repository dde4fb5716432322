"""The one trace clock every front end shows: seconds since the trace start (its first
event's CLOCK_MONOTONIC time), and beside it the UTC wall time, from the header's ``created``
(written as recording began; whole seconds)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def wall_start(created: str) -> datetime | None:
    """The trace start as an aware UTC datetime, or None when the header has none."""
    try:
        t = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def wall_at(start: datetime, rel_s: float, fmt: str = "%H:%M:%S") -> str:
    """``start`` + ``rel_s`` seconds, formatted (UTC)."""
    return (start + timedelta(seconds=rel_s)).strftime(fmt)
