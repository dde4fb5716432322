"""User space's half of the per-IO gate (``io_gate`` in mdtrace/bpf/common.h).

The in-kernel in-flight table of raid5 requests is filled only while some array has a reshape
position, so a healthy array's IO costs next to nothing (issue 17).  The programs learn of a
reshape position from md_check_recovery; an array whose daemon does not run (a frozen reshape
on a quiet array, found after mdtrace started) is seen here instead, in sysfs, and forces the
gate open.  dm-raid arrays have no md sysfs directory: for them the kernel side alone decides.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path
from typing import Any


def reshape_positions(sys_root: Path = Path("/sys")) -> dict[str, str]:
    """{md array: its reshape_position} for every md array that has one (not ``none``)."""
    out: dict[str, str] = {}
    for f in sorted((sys_root / "block").glob("md*/md/reshape_position")):
        try:
            v = f.read_text().strip()
        except OSError:
            continue
        if v and v != "none":
            out[f.parent.parent.name] = v
    return out


class IoGateForce:
    """Keeps ``io_gate_user`` (force, on_since) in step with what sysfs shows."""

    def __init__(self, bpf: Any, sys_root: Path = Path("/sys")) -> None:
        self._bpf = bpf
        self._sys = sys_root
        self.forced = False

    def refresh(self) -> bool:
        """Re-read sysfs and open or shut the forced gate; returns whether it is forced."""
        want = bool(reshape_positions(self._sys))
        if want == self.forced:
            return self.forced
        try:
            table = self._bpf[b"io_gate_user"]
        except KeyError:
            return self.forced
        key = ctypes.c_int(0)
        leaf = table.Leaf()
        leaf.force = int(want)
        leaf.on_since = int(table[key].on_since)
        if want and self._kernel_count() <= 0:
            # the gate opens now: slots older than this are not trusted (already open through
            # the kernel's count: its opening time stands)
            leaf.on_since = time.monotonic_ns()
        table[key] = leaf
        self.forced = want
        return self.forced

    def _kernel_count(self) -> int:
        try:
            return int(self._bpf[b"io_gate"][ctypes.c_int(0)].count)
        except (KeyError, IndexError):
            return 0
