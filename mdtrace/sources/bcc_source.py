"""Live events from the kernel through bcc: compile mdtrace/bpf/*.c with BTF-derived ``-D``
constants, attach per the probe plan, poll the ONE ring buffer, decode, hash pointers.

``import bcc`` happens only here (and lazily), so the rest of mdtrace runs without it.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdtrace.errors import EnvironmentProblem
from mdtrace.events import Event
from mdtrace.kernel.offsets import SYS_BTF, KernelOffsets, offsets_for_running_kernel
from mdtrace.kernel.probes import (
    FENTRY_NOTE,
    ProbePlan,
    Symbols,
    make_plan,
    wanted_functions,
)
from mdtrace.pointers import PointerHasher
from mdtrace.sources.bcc_decode import RAW_SIZE, RawDecoder
from mdtrace.sources.bcc_gate import IoGateForce
from mdtrace.sources.bcc_misses import MissCounter, SlotVerifier, clear_slot, untracked_count
from mdtrace.trace import TraceHeader

# inside the package (package data), so an installed wheel can trace
BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"


def bpf_dir() -> Path:
    """Where the BPF C lives: mdtrace/bpf/ beside this package (MDTRACE_BPF_DIR overrides)."""
    env = os.environ.get("MDTRACE_BPF_DIR")
    return Path(env) if env else BPF_DIR


def program_text(files: list[str], root: Path | None = None) -> bytes:
    """common.h followed by the selected files: one compile unit, one ring buffer."""
    root = root or bpf_dir()
    parts = []
    for name in ["common.h", *files]:
        p = root / name
        try:
            parts.append(f"/* ---- {name} ---- */\n".encode() + p.read_bytes())
        except OSError as exc:
            raise EnvironmentProblem(f"{p}: cannot read BPF source ({exc.strerror}); "
                                     "reinstall mdtrace") from None
    return b"\n".join(parts)


def cflags_for(offsets: KernelOffsets, *, locks: bool = False, locks_full: bool = False,
               io_threshold_ms: float = 1000.0, io_stats_s: float = 5.0,
               ringbuf_pages: int = 256, io_alert_s: float = 0.0) -> list[str]:
    flags = offsets.cflags() + [
        f"-DIO_THRESH_NS={int(io_threshold_ms * 1e6)}ULL",
        f"-DIO_ALERT_NS={int(io_alert_s * 1e9)}ULL",
        f"-DIO_STATS_NS={int(io_stats_s * 1e9)}ULL",
        f"-DRINGBUF_PAGES={ringbuf_pages}",
        "-Wno-unused-function",
        "-w",  # clang warnings from the kernel's own headers are noise; errors still print
    ]
    if locks:
        flags.append("-DMDT_LOCKS")
    if locks and locks_full:
        flags.append("-DMDT_LOCKS_FULL")
    return flags


@dataclass
class BpfProgram:
    """What BccSource hands to bcc: one compile unit and its flags, for one probe plan."""

    text: bytes
    cflags: list[str]
    plan: ProbePlan


def build_program(offsets: KernelOffsets, symbols: Symbols, *, locks: bool = False,
                  locks_full: bool = False, io_threshold_ms: float = 1000.0,
                  io_stats_s: float = 5.0, ringbuf_pages: int = 256,
                  io_alert_s: float = 0.0) -> BpfProgram:
    """The program text + cflags for this kernel's layout and symbols: the one path used by
    BccSource to load and by ``--ebpf`` to print."""
    plan = make_plan(symbols, locks=locks, locks_full=locks_full,
                     dm=bool(offsets.defines.get("HAVE_DM_MOD")))
    return BpfProgram(program_text(plan.files()),
                      cflags_for(offsets, locks=locks, locks_full=locks_full,
                                 io_threshold_ms=io_threshold_ms, io_stats_s=io_stats_s,
                                 ringbuf_pages=ringbuf_pages, io_alert_s=io_alert_s), plan)


def import_bcc() -> Any:
    try:
        import bcc  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise EnvironmentProblem(
            "bcc is not importable: install python3-bpfcc (scripts/setup-bcc.sh) and run "
            "scripts/bootstrap.sh so the venv sees it") from None
    return bcc


def read_lost(bpf: Any, seen: dict[int, int]) -> list[tuple[str, int]]:
    """(event kind, newly lost count) from the in-kernel ``lost_count`` array; updates seen."""
    from mdtrace.sources.bcc_decode import KIND_NAMES

    out = []
    for k, v in bpf[b"lost_count"].items():
        idx, val = k.value, v.value
        delta = val - seen.get(idx, 0)
        if delta > 0:
            seen[idx] = val
            out.append((KIND_NAMES.get(idx, str(idx)), delta))
    return out


class RingPoller:
    """Ring-buffer callback + decode path shared by the md programs and the smoke test."""

    def __init__(self, bpf: Any, decoder: RawDecoder, map_name: str = "events") -> None:
        self.bpf = bpf
        self.decoder = decoder
        self.pending: deque[Event] = deque()
        self.records = 0
        self.short = 0
        self._cb_ref = self._callback  # keep a reference: bcc stores a ctypes callback
        bpf[map_name.encode()].open_ring_buffer(self._cb_ref)

    def _callback(self, _ctx: Any, data: Any, size: int) -> int:
        self.records += 1
        if size < RAW_SIZE:
            self.short += 1
            return 0
        ev = self.decoder.decode(ctypes.string_at(data, RAW_SIZE))
        if ev is not None:
            self.pending.append(ev)
        return 0

    def poll(self, timeout_ms: int = 100) -> list[Event]:
        self.bpf.ring_buffer_poll(timeout_ms)
        out = list(self.pending)
        self.pending.clear()
        return out


class BccSource:
    """Live md/dm-raid events.  Construction compiles and attaches; ``events()`` streams."""

    name = "bcc"

    def __init__(self, *, locks: bool = False, locks_full: bool = False,
                 io_threshold_ms: float = 1000.0, io_stats_s: float = 5.0,
                 btf_root: str | Path = SYS_BTF, hasher: PointerHasher | None = None,
                 ringbuf_pages: int = 256, io_scan_hz: int = 10,
                 io_alert_s: float = 5.0) -> None:
        bcc = import_bcc()
        self.release = platform.release()
        self.offsets = offsets_for_running_kernel(btf_root)
        self.symbols = Symbols.read(wanted=wanted_functions())
        if self.symbols.addresses_hidden:
            raise EnvironmentProblem("/proc/kallsyms lists no functions (not root, or "
                                     "kptr_restrict): run mdtrace record/run as root")
        prog = build_program(self.offsets, self.symbols, locks=locks, locks_full=locks_full,
                             io_threshold_ms=io_threshold_ms, io_stats_s=io_stats_s,
                             ringbuf_pages=ringbuf_pages, io_alert_s=io_alert_s)
        self.plan: ProbePlan = prog.plan
        req = self.plan.required_missing()
        if req:
            raise EnvironmentProblem(
                "cannot trace md here: " + "; ".join(p.reason for p in req)
                + " (load md: 'modprobe raid456'; see 'mdtrace doctor')")
        self.hasher = hasher or PointerHasher()
        text, flags = prog.text, prog.cflags
        t0 = time.monotonic()
        try:
            self.bpf = bcc.BPF(text=text, cflags=flags)
        except Exception as exc:  # bcc raises bare Exception on compile errors
            raise EnvironmentProblem(f"BPF compile failed: {exc} (kernel headers for "
                                     f"{self.release}? see 'mdtrace doctor')") from None
        self.compile_s = time.monotonic() - t0
        self.status: dict[str, dict[str, Any]] = {}
        self._attach(bcc, io_scan_hz)
        self.decoder = RawDecoder(self.offsets.flag_table, self.hasher, self._ksym)
        self.poller = RingPoller(self.bpf, self.decoder)
        self._lost_seen: dict[int, int] = {}
        self.lost_total = 0
        exits = {p.spec.func: p.symbol for p in self.plan.probes
                 if p.spec.exit and self.status.get(p.spec.func, {}).get("attached")}
        self.misses = MissCounter(exits, os.getpid())
        self.slots = SlotVerifier(clear=lambda tid: clear_slot(self.bpf, tid))
        self._stale_seen = 0
        self.gate = IoGateForce(self.bpf)
        self.gate.refresh()
        self.header = TraceHeader(
            kernel=self.release, source="bcc", hash_key_id=self.hasher.key_id,
            flag_tables=self.offsets.flag_table,
            meta={"probes": self.status, "btf_missing": self.offsets.missing,
                  "locks": "full" if locks and locks_full else ("contention" if locks else "off"),
                  "io_threshold_ms": io_threshold_ms, "attach_method": FENTRY_NOTE})
        self._closed = False

    # -- attach -------------------------------------------------------------------------
    def _attach(self, bcc: Any, io_scan_hz: int) -> None:
        # kretprobes with maxactive are tracefs events (r64:kprobes/r_<fn>_bcc_<pid>) that a
        # SIGKILLed recorder leaves behind: remove those of dead processes first
        from mdtrace.kernel import reaper
        from mdtrace.kernel.tracefs import remove_stale

        self.stale_removed, self.stale_failed = remove_stale()
        # ... and this process's own, whenever it dies (SIGKILL included): a watcher child
        self._reaper = reaper.start() if any(p.ok and p.spec.exit for p in self.plan.probes) \
            else None
        for p in self.plan.probes:
            st: dict[str, Any] = {"probe": p.spec.func, "attached": False, "method": p.method,
                                  "reason": p.reason, "group": p.spec.group}
            if p.ok:
                # The kretprobe first, then the kprobe: kprobes without a post handler join
                # a probed address at the head of its handler list (kernel/kprobes.c
                # add_new_kprobe: list_add_rcu), so the entry program runs before the
                # kretprobe swaps the return address for its trampoline.  Before 5.14 (the
                # "kprobes: Add kretprobe_find_ret_addr() for searching return address" series
                # and the x86 unwinder fixes on it; hash not checked here) nothing restores
                # that address: the caller read at entry was kretprobe_trampoline (5.10,
                # measured, with the kprobe attached first).
                # Either both programs are attached or neither.
                ret_done = False
                try:
                    if p.spec.exit:
                        self.bpf.attach_kretprobe(event=p.symbol.encode(),
                                                  fn_name=p.spec.exit.encode(),
                                                  maxactive=64)
                        ret_done = True
                    if p.spec.entry:
                        self.bpf.attach_kprobe(event=p.symbol.encode(),
                                               fn_name=p.spec.entry.encode())
                    st["attached"] = True
                    st["symbol"] = p.symbol
                except Exception as exc:  # bcc: "Failed to attach BPF program ..."
                    st["reason"] = f"attach failed: {exc}"
                    if ret_done:
                        try:
                            self.bpf.detach_kretprobe(event=p.symbol.encode())
                        except Exception:  # noqa: BLE001, S110 - best effort: cleanup() too
                            pass
            self.status[p.spec.func] = st
        if "reshape_io" in self.plan.groups():
            st = {"probe": "io_scan", "attached": False, "method": "perf_event",
                  "reason": "", "group": "reshape_io"}
            try:
                self.bpf.attach_perf_event(
                    ev_type=bcc.PerfType.SOFTWARE, ev_config=bcc.PerfSWConfig.CPU_CLOCK,
                    fn_name=b"io_scan", sample_freq=io_scan_hz, cpu=0)
                st["attached"] = True
            except Exception as exc:
                st["reason"] = (f"periodic scan not attached ({exc}); blocked IO is then "
                                "seen only when it completes")
            self.status["io_scan"] = st

    def _ksym(self, addr: int) -> str:
        try:
            name = self.bpf.ksym(addr)
        except Exception:  # noqa: BLE001 - symbolisation is best effort
            return ""
        name = name.decode() if isinstance(name, bytes) else str(name)
        return "" if name.startswith("[unknown") else name

    # -- streaming ------------------------------------------------------------------------
    def probe_events(self) -> list[Event]:
        now = time.monotonic_ns()
        return [Event(ts=now, kind="probe_status", args=dict(st)) for st in self.status.values()]

    def lost_events(self) -> list[Event]:
        """Ring-buffer reservations that failed since last call, per kind, as ``lost``."""
        now = time.monotonic_ns()
        out = []
        for kind, delta in read_lost(self.bpf, self._lost_seen):
            self.lost_total += delta
            out.append(Event(ts=now, kind="lost", args={"count": delta, "probe": kind,
                                                        "cause": "ringbuf"}))
        misses = self.misses.poll(untracked_count(self.bpf))
        if self.slots.stale > self._stale_seen:
            misses.append(("raid5_make_request", "stale_slot",
                           self.slots.stale - self._stale_seen))
            self._stale_seen = self.slots.stale
        for probe, cause, delta in misses:
            self.lost_total += delta
            out.append(Event(ts=now, kind="lost", args={"count": delta, "probe": probe,
                                                        "cause": cause}))
        return out

    def events(self, stop: threading.Event) -> Iterator[Event]:
        yield from self.probe_events()
        # seed: arrays that existed before tracing started, as md publishes them in sysfs
        from mdtrace.sources.sysfs import SysfsSource

        yield from SysfsSource().poll()
        last_lost = time.monotonic()
        keep = self.slots.keep
        while not stop.is_set():
            yield from (ev for ev in self.poller.poll(100) if keep(ev))
            if time.monotonic() - last_lost >= 1.0:
                last_lost = time.monotonic()
                self.gate.refresh()
                yield from self.lost_events()
        # drain what is already in the buffer, then the final loss count
        yield from self.poller.poll(0)
        yield from self.lost_events()

    def health(self) -> dict[str, Any]:
        return {"mode": "bcc", "lost": self.lost_total, "probes": dict(self.status),
                "records": self.poller.records, "undecodable": self.decoder.unknown,
                "compile_s": round(self.compile_s, 2)}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.bpf.cleanup()
            except Exception:  # noqa: BLE001 - detaching is best effort at exit
                pass
            if self._reaper is not None:
                self._reaper.release()
