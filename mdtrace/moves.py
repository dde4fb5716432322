"""Position moves of a skimmed run (mdtrace.skim), packed, and the two folds over them.

A run of skimmed lines can carry hundreds of thousands of sync position moves in a long
resync; as Python tuples each would be built in the scanner, pickled across the read-ahead
pipe and looped over twice (engine progress tracking, report progress series).  So a run
carries them packed -- little-endian int64 ``(ts, curr_resync, reshape_pos or -1, code,
sysfs done, sysfs total)`` per move, :data:`MOVE` -- and the two loops are pure functions
with a C twin in ``mdtrace._skimc`` (same results, tested against each other):

* :func:`fold_py` -- the engine's progress tracking (F10 stall evidence and sync speed);
* :func:`points_py` -- the report's bounded progress series.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

MOVE = struct.Struct("<6q")
MOVE_REREAD = 0     # a md_check_recovery re-read whose position moved
MOVE_STATE = 1      # a folded io_stats/progress line's state
MOVE_SYSFS = 2      # a folded progress line's (done, total) sample: a sysfs sync_completed

# (prog_token, speed_ref, speed, prog_changed_ns, prog_seen_ns) of an engine array record
Progress = tuple["tuple[int, int, int] | None", "tuple[int, int] | None", float, int, int]


def pack(moves: Iterable[tuple[int, int, int, int, int, int]]) -> bytes:
    return b"".join(MOVE.pack(*m) for m in moves)


def fold_py(moves: bytes, token: tuple[int, int, int] | None, ref: tuple[int, int] | None,
            speed: float, changed: int, seen: int) -> Progress:
    """:func:`fold_seq` over packed moves."""
    return fold_seq(MOVE.iter_unpack(moves), token, ref, speed, changed, seen)


def fold_seq(moves: Iterable[tuple[int, ...]], token: tuple[int, int, int] | None,
             ref: tuple[int, int] | None, speed: float, changed: int,
             seen: int) -> Progress:
    """Progress observations in order: what changed last (F10: last seen / last changed)
    and the sync speed over windows of >= 1 s (curr_resync when BPF reads it, else the
    sysfs sample).  A MOVE_SYSFS move also sets the sysfs part of the token; the others keep
    it (0 before any token).  Values may be any int (a kernel's MaxSector is 2**64 - 1)."""
    have = token is not None
    o_curr, o_reshape, o_sysfs = token if token is not None else (-1, -2, -1)
    changed_token = False
    for ts, curr, reshape, code, done, _ in moves:
        seen = ts
        if code == MOVE_SYSFS:
            sysfs = alt = done
        else:
            sysfs = o_sysfs if have else 0
            alt = 0
        if curr != o_curr or reshape != o_reshape or sysfs != o_sysfs:
            o_curr, o_reshape, o_sysfs = curr, reshape, sysfs
            have = changed_token = True
            changed = ts
            pos = curr if curr > 3 else alt
            if ref is None or pos < ref[1] or pos == 0:
                ref = (ts, pos)
                if pos == 0:
                    speed = 0.0
            elif ts - ref[0] >= 1_000_000_000:
                speed = (pos - ref[1]) * 1e9 / (ts - ref[0])
                ref = (ts, pos)
    if changed_token:
        token = (o_curr, o_reshape, o_sysfs)
    return token, ref, speed, changed, seen


def thin(points: list[Any]) -> None:
    """Halve a change-point list in place, keeping the first and last points."""
    last = points[-1]
    del points[1::2]
    if points[-1] is not last:
        points.append(last)


def points_py(points: list[Any], moves: bytes, resync_max: int, max_points: int) -> None:
    """:func:`points_seq` over packed moves."""
    points_seq(points, MOVE.iter_unpack(moves), resync_max, max_points)


def points_seq(points: list[Any], moves: Iterable[tuple[int, ...]], resync_max: int,
               max_points: int) -> None:
    """Append the report's progress points for ``moves`` to ``points`` (ts, done, total):
    a re-read or state move's curr_resync (with the state's resync_max) when it differs from
    the last point's, a sysfs sample unless equal to the last point; thinned past
    ``max_points``.  Values may be any int, as in :func:`fold_seq`."""
    for ts, cr, _, code, done, total in moves:
        if code == MOVE_SYSFS:
            if points and points[-1][1] == done and points[-1][2] == total:
                continue
            points.append((ts, done, total))
        elif cr > 3 and resync_max and (not points or points[-1][1] != cr):
            points.append((ts, cr, resync_max))
        else:
            continue
        if len(points) > max_points:
            thin(points)


def _load_c() -> tuple[Any, Any]:
    import os
    if os.environ.get("MDTRACE_PURE"):
        return None, None
    try:
        from mdtrace import _skimc  # type: ignore[attr-defined]
    except ImportError:
        return None, None
    return _skimc.fold, _skimc.points


fold_c, points_c = _load_c()


def fold(moves: bytes, token: tuple[int, int, int] | None, ref: tuple[int, int] | None,
         speed: float, changed: int, seen: int) -> Progress:
    """:func:`fold_py`, in C where built (packed moves fit int64; the state they continue
    may not: then in Python)."""
    if fold_c is not None:
        try:
            return fold_c(moves, token, ref, speed, changed, seen)
        except OverflowError:
            pass
    return fold_py(moves, token, ref, speed, changed, seen)


def points(pts: list[Any], moves: bytes, resync_max: int, max_points: int) -> None:
    """:func:`points_py`, in C where built (in Python past int64, as :func:`fold`)."""
    if points_c is not None:
        try:
            points_c(pts, moves, resync_max, max_points)
            return
        except OverflowError:
            pass
    points_py(pts, moves, resync_max, max_points)
