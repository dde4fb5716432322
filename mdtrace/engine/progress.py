"""Sync position tracking of one array: the F10 stall evidence (when the position was last
seen, when it last changed) and the sync speed.

One observation at a time, from any event that carries a position: a state's curr_resync
and reshape position, or the sysfs poller's sync_completed sample.  Values may be any int
(a kernel's MaxSector is 2**64 - 1).
"""

from __future__ import annotations

from mdtrace.engine.arrays import ArrayRec

_SPEED_WINDOW_NS = 1_000_000_000


def observe(arr: ArrayRec, ts: int, curr: int, reshape: int | None,
            sysfs_done: int | None = None) -> None:
    """``curr`` (curr_resync) and ``reshape`` (None: no reshape) seen at ``ts``; a sysfs
    sample also sets the token's sysfs part (``sysfs_done``), other observations keep it.

    The token is (curr, reshape or -1, sysfs done); any change of it is a move.  The speed
    is measured over windows of >= 1 s on curr_resync where BPF reads it (> 3: md's
    curr_resync holds 0..3 as markers), else on the sysfs sample; a position going back or
    to 0 starts a new window (and 0 resets the speed).
    """
    rp = -1 if reshape is None else reshape
    arr.prog_seen_ns = ts
    tok = arr.prog_token
    if sysfs_done is None:
        sysfs = tok[2] if tok is not None else 0
        alt = 0
    else:
        sysfs = alt = sysfs_done
    if tok is not None and tok[0] == curr and tok[1] == rp and tok[2] == sysfs:
        return
    arr.prog_token = (curr, rp, sysfs)
    arr.prog_changed_ns = ts
    pos = curr if curr > 3 else alt
    ref = arr.speed_ref
    if ref is None or pos < ref[1] or pos == 0:
        arr.speed_ref = (ts, pos)
        if pos == 0:
            arr.speed = 0.0
    elif ts - ref[0] >= _SPEED_WINDOW_NS:
        arr.speed = (pos - ref[1]) * 1e9 / (ts - ref[0])
        arr.speed_ref = (ts, pos)
