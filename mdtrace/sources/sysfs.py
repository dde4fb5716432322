"""Poll ``/sys/block/md*/md/*``, ``/proc/mdstat`` and ``dmsetup status --target raid``: array
names, level, sync action, progress (md and dm-raid).

Used to seed state at start-up, to name arrays, and as the degraded mode when BPF cannot
attach.  It sees what md publishes, not the lifecycle inside the kernel: no flags, no thread
registration, no lock or IO waits.  Roots are injectable so tests run on a fake tree.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdtrace.events import Event
from mdtrace.kernel.offsets import flag_table_for
from mdtrace.trace import TraceHeader

ATTRS = ("level", "array_state", "sync_action", "sync_completed", "degraded", "raid_disks",
         "reshape_position", "sync_speed")
_MDSTAT_LINE = re.compile(r"^(md\w+)\s*:\s*(\S+)\s+(?:\((\S+)\)\s+)?(\S+)?")
SAMPLE_NS = 10_000_000_000  # re-sample an unchanged sync position this often


@dataclass(frozen=True)
class MdSnapshot:
    """What sysfs says about one md array at one moment."""

    name: str
    level: str = ""
    array_state: str = ""
    sync_action: str = ""
    done: int | None = None
    total: int | None = None
    degraded: int | None = None
    raid_disks: int | None = None
    reshape_position: int | None = None
    speed_kbs: int | None = None


def read_attr(p: Path) -> str:
    """A sysfs/procfs value, stripped; '' when it cannot be read (gone, no access, binary)."""
    try:
        return p.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def parse_int(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


def read_array(md_dir: Path, name: str) -> MdSnapshot:
    vals = {a: read_attr(md_dir / a) for a in ATTRS}
    done = total = None
    sc = vals["sync_completed"]
    if "/" in sc:
        a, _, b = sc.partition("/")
        done, total = parse_int(a.strip()), parse_int(b.strip())
    rp = vals["reshape_position"]
    return MdSnapshot(
        name=name, level=vals["level"], array_state=vals["array_state"],
        sync_action=vals["sync_action"], done=done, total=total,
        degraded=parse_int(vals["degraded"]), raid_disks=parse_int(vals["raid_disks"]),
        reshape_position=None if rp in ("", "none") else parse_int(rp),
        speed_kbs=parse_int(vals["sync_speed"].split()[0]) if vals["sync_speed"] else None)


def parse_mdstat(text: str) -> dict[str, str]:
    """``/proc/mdstat`` -> {array name: level} (level '' for inactive arrays)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _MDSTAT_LINE.match(line)
        if m:
            state, level = m.group(2), m.group(4) or ""
            out[m.group(1)] = level if state == "active" and level.startswith(("raid", "linear")) \
                else ""
    return out


def scan(sys_root: Path, proc_root: Path) -> dict[str, MdSnapshot]:
    """Every md array sysfs or mdstat knows about."""
    arrays: dict[str, MdSnapshot] = {}
    block = sys_root / "block"
    if block.is_dir():
        for d in sorted(block.glob("md*")):
            if (d / "md").is_dir():
                arrays[d.name] = read_array(d / "md", d.name)
    mdstat = read_attr(proc_root / "mdstat")
    for name, level in parse_mdstat(mdstat).items():
        if name not in arrays:
            arrays[name] = MdSnapshot(name=name, level=level)
    return arrays


def parse_dmsetup_status(text: str) -> dict[str, MdSnapshot]:
    """``dmsetup status --target raid`` -> {dm name: snapshot} (dm-raid arrays are in neither
    /proc/mdstat nor /sys/block/md*).  Line: ``NAME: start len raid TYPE NDEVS HEALTH
    DONE/TOTAL ACTION MISMATCH ...``; health chars: A alive, a alive-not-in-sync, D dead."""
    out: dict[str, MdSnapshot] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(": ")
        f = rest.split()
        if not sep or len(f) < 8 or f[2] != "raid":
            continue
        done = total = None
        if "/" in f[6]:
            a, _, b = f[6].partition("/")
            done, total = parse_int(a), parse_int(b)
        out[name] = MdSnapshot(name=name, level=f[3], array_state="", sync_action=f[7],
                               done=done, total=total, degraded=f[5].count("D"),
                               raid_disks=parse_int(f[4]))
    return out


def run_dmsetup() -> str:
    """``dmsetup status --target raid`` output, '' where dmsetup is absent or refuses."""
    exe = shutil.which("dmsetup")
    if exe is None:
        return ""
    try:
        r = subprocess.run([exe, "status", "--target", "raid"], capture_output=True,
                           text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout if r.returncode == 0 else ""


def dm_disks(sys_root: Path) -> dict[str, str]:
    """dm name -> kernel disk name (``vg-lv`` -> ``dm-3``) from /sys/block/dm-*/dm/name."""
    out = {}
    for d in (sys_root / "block").glob("dm-*"):
        name = read_attr(d / "dm" / "name")
        if name:
            out[name] = d.name
    return out


def _ro(array_state: str) -> int:
    return {"readonly": 1, "read-auto": 2}.get(array_state, 0)


class SysfsSource:
    """Emits ``sysfs_state`` when an array's published state changes and ``progress`` when
    its sync position moves; ``array_stop`` when it disappears."""

    name = "sysfs"

    def __init__(self, sys_root: str | Path = "/sys", proc_root: str | Path = "/proc",
                 interval: float = 1.0,
                 dmsetup: Callable[[], str] | None = run_dmsetup) -> None:
        self.sys_root = Path(sys_root)
        self.dmsetup = dmsetup
        self.proc_root = Path(proc_root)
        self.interval = interval
        release = platform.release()
        self.header = TraceHeader(kernel=release, source="sysfs",
                                  flag_tables=flag_table_for(release),
                                  meta={"mode": "sysfs polling (no BPF)"})
        self._last: dict[str, MdSnapshot] = {}
        self._sampled: dict[str, int] = {}
        self.polls = 0

    def progress_only(self, now_ns: int | None = None) -> list[Event]:
        """The progress samples of one scan (``mdtrace run`` adds them to a bcc source)."""
        return [e for e in self.poll(now_ns) if e.kind == "progress"]

    def poll(self, now_ns: int | None = None) -> list[Event]:
        """One scan: events for whatever changed since the previous one."""
        ts = now_ns if now_ns is not None else time.monotonic_ns()
        cur = scan(self.sys_root, self.proc_root)
        dm_of: dict[str, str] = {}
        if self.dmsetup is not None:
            disks = dm_disks(self.sys_root)
            for dm_name, snap in parse_dmsetup_status(self.dmsetup()).items():
                key = disks.get(dm_name, dm_name)
                cur[key] = snap
                dm_of[key] = dm_name
        self.polls += 1
        out: list[Event] = []
        for name, snap in cur.items():
            old = self._last.get(name)
            if old is None or (snap.level, snap.array_state, snap.sync_action, snap.degraded,
                               snap.raid_disks, snap.reshape_position) != (
                    old.level, old.array_state, old.sync_action, old.degraded,
                    old.raid_disks, old.reshape_position):
                args: dict[str, Any] = {"level": snap.level, "array_state": snap.array_state,
                                        "sync_action": snap.sync_action, "ro": _ro(
                                            snap.array_state)}
                if snap.degraded is not None:
                    args["degraded"] = snap.degraded
                if snap.raid_disks is not None:
                    args["raid_disks"] = snap.raid_disks
                if snap.reshape_position is not None:
                    args["reshape_position"] = snap.reshape_position
                if name in dm_of:
                    args["kind"] = "dm-raid"
                out.append(Event(ts=ts, kind="sysfs_state", array=name,
                                 dm_name=dm_of.get(name, ""), args=args))
            moved = old is None or (old.done, old.total) != (snap.done, snap.total)
            # while a sync runs, an unchanged position is evidence too (stall detection, F10):
            # re-sample it every SAMPLE_NS even when nothing moved
            due = snap.sync_action not in ("", "idle", "frozen") and \
                ts - self._sampled.get(name, ts) >= SAMPLE_NS
            if snap.done is not None and snap.total is not None and (moved or due):
                self._sampled[name] = ts
                out.append(Event(ts=ts, kind="progress", array=name,
                                 dm_name=dm_of.get(name, ""), args={
                    "done": snap.done, "total": snap.total, "action": snap.sync_action,
                    "speed_kbs": snap.speed_kbs or 0}))
        for name in set(self._last) - set(cur):
            out.append(Event(ts=ts, kind="array_stop", array=name, args={"source": "sysfs"}))
        self._last = cur
        return out

    def events(self, stop: threading.Event) -> Iterator[Event]:
        yield Event(ts=time.monotonic_ns(), kind="probe_status", args={
            "probe": "sysfs", "attached": True, "method": "poll",
            "reason": f"polling {self.sys_root}/block/md*/md every {self.interval:g} s"})
        while not stop.is_set():
            yield from self.poll()
            stop.wait(self.interval)

    def health(self) -> dict[str, Any]:
        return {"mode": "sysfs", "lost": 0, "probes": {}, "polls": self.polls,
                "arrays": sorted(self._last)}

    def close(self) -> None:
        pass
