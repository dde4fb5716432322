"""The kernel's own view of each mddev through a small BPF probe: kcore.py's fallback.

Where /proc/kcore cannot be read (absent: CONFIG_PROC_KCORE=n; masked by a container runtime;
CAP_SYS_RAWIO dropped) BPF may still be allowed.  mdtrace/bpf/mddev_state.c probes two
functions a harmless read triggers -- md's ``array_state_show`` (reading
/sys/block/mdX/md/array_state) and dm-raid's ``raid_status`` (``dmsetup status``) -- and
copies, per mddev, the bytes the kcore reader would read: the struct, the name chain, the
percpu_ref counts, each with its address.  User space decodes them with the same
:func:`kcore.read_mddev` over :class:`kcore.Captured` memory, so both paths feed one model.

Costs one bcc compile (a few seconds on hardware, 60-130 s under TCG), hence a fallback only.
Failure is a reason, never an exception.  ``import bcc`` happens only in :func:`_run`.
"""

from __future__ import annotations

import glob
import os
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdtrace.kernel.headers import headers_problem
from mdtrace.kernel.offsets import BtfSet
from mdtrace.sources.snapshot.kcore import (
    BadAddress,
    Captured,
    KernelLayout,
    KernelStateResult,
    MddevState,
    load_layout,
    read_mddev,
)

SOURCE = "bpf probe (array_state_show, raid_status)"
PROGRAM = "mddev_state.c"
# mddev_state.c R_* order: (name, length); the C struct mdt_snap mirrors HEAD + these
REGIONS = (("gendisk_name", 32), ("rs_ti", 8), ("ti_table", 8), ("table_md", 8),
           ("md_disk", 8), ("dm_disk_name", 32), ("dm_name", 16), ("active_io", 8),
           ("writes_pending", 8))
NREG, REG_MAX = len(REGIONS), 32
_HEAD = struct.Struct(f"<QII{NREG}Q{NREG}I{NREG}I")
BODY_AT = _HEAD.size + NREG * REG_MAX          # offset of body[] in struct mdt_snap
PROBES = (("array_state_show", "array_state_show_enter"), ("raid_status", "raid_status_enter"))
DMSETUP_TIMEOUT_S = 10


@dataclass(frozen=True)
class Snap:
    """One ``mddev_snaps`` entry: the mddev's address and the regions the probe copied."""

    mddev: int
    probe: int
    regions: dict[int, bytes]

    def memory(self) -> Captured:
        return Captured(self.regions)


def decode_snap(raw: bytes, mddev_size: int) -> Snap | None:
    """A ``struct mdt_snap`` as bytes; None when it is short or the struct copy failed."""
    if len(raw) < BODY_AT + mddev_size:
        return None
    head = _HEAD.unpack_from(raw)
    mddev, probe, body_ok = head[0], head[1], head[2]
    addrs = head[3:3 + NREG]
    lens = head[3 + NREG:3 + 2 * NREG]
    oks = head[3 + 2 * NREG:3 + 3 * NREG]
    if not body_ok or not mddev:
        return None
    regions = {mddev: bytes(raw[BODY_AT:BODY_AT + mddev_size])}
    for i in range(NREG):
        if oks[i] and addrs[i] and 0 < lens[i] <= REG_MAX:
            at = _HEAD.size + i * REG_MAX
            regions.setdefault(addrs[i], bytes(raw[at:at + lens[i]]))
    return Snap(mddev, probe, regions)


def states_from_snaps(raws: list[bytes], kl: KernelLayout) -> tuple[list[MddevState], str]:
    """Decode every entry with kcore's reader; (states, why some were skipped)."""
    out: list[MddevState] = []
    skipped = 0
    seen: set[int] = set()
    for raw in raws:
        s = decode_snap(raw, kl.lay.mddev_size)
        if s is None or s.mddev in seen:
            skipped += s is None
            continue
        seen.add(s.mddev)
        try:
            out.append(read_mddev(s.memory(), kl.lay, s.mddev))
        except BadAddress:
            skipped += 1
    out.sort(key=lambda m: m.name)
    return out, (f"{skipped} probe entries not decodable" if skipped else "")


def cflags(kl: KernelLayout) -> list[str]:
    """The FIELDS offsets plus the struct size and which counters are percpu_refs."""
    lay = kl.lay
    ref_ok = lay.has("PERCPU_REF_COUNT_PTR", "PERCPU_REF_DATA", "PERCPU_REF_DATA_COUNT")
    extra = {"MDDEV_SIZE": lay.mddev_size}
    for define, name in (("MDDEV_ACTIVE_IO", "REF_ACTIVE_IO"),
                         ("MDDEV_WRITES_PENDING", "REF_WRITES_PENDING")):
        extra[name] = int(ref_ok and lay.size.get(define, 0) > 4)
    return kl.offsets.cflags() + [f"-D{k}={v}" for k, v in sorted(extra.items())] + [
        "-Wno-unused-function", "-w"]


def program_text() -> bytes:
    from mdtrace.sources.bcc_source import bpf_dir  # noqa: PLC0415 - only on this path

    return (bpf_dir() / PROGRAM).read_bytes()


# -- triggering -----------------------------------------------------------------------------


def md_state_files(sys_root: Path) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(sys_root / "block" / "md*" / "md" /
                                                    "array_state")))


def has_dm(sys_root: Path) -> bool:
    return any((sys_root / "block").glob("dm-*"))


def trigger(sys_root: Path) -> list[str]:
    """Read every md array_state and run `dmsetup status --target raid` (both read-only);
    what failed, one line each."""
    problems: list[str] = []
    for p in md_state_files(sys_root):
        try:
            p.read_bytes()
        except OSError as exc:
            problems.append(f"{p}: {exc.strerror}")
    if has_dm(sys_root):
        try:
            r = subprocess.run(["dmsetup", "status", "--target", "raid"], capture_output=True,
                               timeout=DMSETUP_TIMEOUT_S)
            if r.returncode:
                problems.append(f"dmsetup status: exit {r.returncode}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"dmsetup status: {exc}")
    return problems


# -- the reader -----------------------------------------------------------------------------

Runner = Callable[[bytes, list[str], tuple[tuple[str, str], ...], Callable[[], list[str]]],
                  tuple[list[bytes], list[str]]]
Announce = Callable[[str], None]


def _run(text: bytes, flags: list[str], probes: tuple[tuple[str, str], ...],
         fire: Callable[[], list[str]]) -> tuple[list[bytes], list[str]]:
    """Compile, attach the probes, fire, read the map, detach (bcc's cleanup, also on an
    error).  Raises RuntimeError with a one-line reason."""
    import ctypes  # noqa: PLC0415

    from mdtrace.errors import EnvironmentProblem  # noqa: PLC0415
    from mdtrace.sources.bcc_source import import_bcc  # noqa: PLC0415

    try:
        bcc = import_bcc()
    except EnvironmentProblem as exc:
        raise RuntimeError(str(exc)) from None
    try:
        bpf = bcc.BPF(text=text, cflags=flags)
    except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception on compile/load errors
        raise RuntimeError(f"BPF compile failed: {str(exc).splitlines()[0][:200]}") from None
    try:
        attached, notes = [], []
        for func, fn in probes:
            try:
                bpf.attach_kprobe(event=func.encode(), fn_name=fn.encode())
                attached.append(func)
            except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception
                notes.append(f"{func}: not attached ({str(exc).splitlines()[0][:120]})")
        if not attached:
            raise RuntimeError("no probe attached: " + "; ".join(notes))
        notes += fire()
        raws = [ctypes.string_at(ctypes.addressof(v), ctypes.sizeof(v))
                for _k, v in bpf[b"mddev_snaps"].items()]
        return raws, notes
    finally:
        bpf.cleanup()


def refusal(sys_root: Path, proc_root: Path, euid: int | None = None) -> str:
    """Why the probe must not run here ('' = it may): it reads the running kernel, so only
    for the live trees, as root, with some array to fire it on."""
    if (sys_root, proc_root) != (Path("/sys"), Path("/proc")):
        return "a copied tree (the probe would read the running kernel, not the tree's)"
    if (os.geteuid() if euid is None else euid) != 0:
        return "not root (BPF needs CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN)"
    if not md_state_files(sys_root) and not has_dm(sys_root):
        return "no md array or dm device to probe"
    return ""


def read_by_probe(sys_root: Path | str = "/sys", proc_root: Path | str = "/proc", *,
                  runner: Runner = _run, fire: Callable[[Path], list[str]] = trigger,
                  load_btf: Callable[[Path], BtfSet] = BtfSet.from_dir,
                  announce: Announce | None = None, check: bool = True) -> KernelStateResult:
    """Every mddev the reads reach, through mddev_state.c; a result with a reason when not."""
    sys_root, proc_root = Path(sys_root), Path(proc_root)
    if check:
        why = refusal(sys_root, proc_root) or headers_problem() or ""
        if why:
            return KernelStateResult(reason=f"BPF probe not run: {why}", source=SOURCE)
    t0 = time.monotonic()
    kl = load_layout(sys_root, load_btf)
    if isinstance(kl, str):
        return KernelStateResult(reason=kl, source=SOURCE)
    t_btf = round(time.monotonic() - t0, 3)
    if announce is not None:
        announce("reading the kernel state through a BPF probe (one compile: seconds, "
                 "1-2 min in a slow VM)")
    try:
        text = program_text()
    except OSError as exc:
        return KernelStateResult(reason=f"{PROGRAM}: cannot read BPF source ({exc.strerror}); "
                                 "reinstall mdtrace", source=SOURCE)
    # raid_status lives in dm_raid: without its BTF the module is not loaded (no dm-raid array)
    probes = tuple(p for p in PROBES if p[0] != "raid_status" or "dm_raid" in kl.btfs.modules)
    t1 = time.monotonic()
    try:
        raws, notes = runner(text, cflags(kl), probes, lambda: fire(sys_root))
    except RuntimeError as exc:
        return KernelStateResult(reason=f"BPF probe: {exc}", source=SOURCE)
    t_probe = round(time.monotonic() - t1, 3)
    states, skipped = states_from_snaps(raws, kl)
    stopped = "; ".join(x for x in [skipped, *notes] if x)
    if not states and not stopped:
        stopped = "the probes saw no mddev (no array answered the reads)"
    return KernelStateResult(states, "", stopped, kl.offsets.flag_table, kl.sb_names,
                             timings={"btf": t_btf, "bpf": t_probe}, source=SOURCE)


def snap_layout() -> dict[str, Any]:
    """Offsets of struct mdt_snap's fields as this module reads them (the contract test)."""
    return {"probe": 8, "body_ok": 12, "reg_addr": 16, "reg_len": 16 + 8 * NREG,
            "reg_ok": 16 + 12 * NREG, "reg_data": _HEAD.size, "body": BODY_AT}


__all__ = ["PROBES", "REGIONS", "SOURCE", "Snap", "cflags", "decode_snap", "read_by_probe",
           "refusal", "snap_layout", "states_from_snaps", "trigger"]
