"""Golden traces: real-kernel scenario recordings kept in tests/data/golden/ for the fast tier.

``collect()`` copies each recorded scenario trace of a guest run to
``tests/data/golden/<release>/<scenario>.jsonl.gz`` with ``<scenario>.expected.json`` beside it:
the findings the guest's ``mdtrace report`` gave, and the per-array lifecycle sequence the
engine decodes from the trace.  Before anything is kept, the trace is scanned for raw kernel
pointers (KASLR): any 0xffff... value, in hex or decimal, refuses the file.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path
from typing import Any

from mdtrace.errors import MdtraceError
from vmtest.scenarios import ScenarioResult

# kernel addresses on x86_64: 0xffff800000000000 and up; as hex text or as decimal integers
_HEX_PTR = re.compile(rb"(?i)\b(?:0x)?ffff[89a-f][0-9a-f]{11}\b")
_DEC = re.compile(rb"\b1844\d{16}\b")
_KERNEL_LO = 0xFFFF800000000000
# the top page is never mapped: ERR_PTR values, small negative numbers stored as u64 and
# MaxSector (~0ULL) live there, not pointers
_KERNEL_HI = 0xFFFFFFFFFFFFF000


def raw_pointers(path: Path) -> list[str]:
    """Raw kernel-pointer-looking values in a (gzip/zstd/plain) trace; [] when clean."""
    data = _decompress(path)
    hits = [m.group().decode() for m in _HEX_PTR.finditer(data)]
    for m in _DEC.finditer(data):
        v = int(m.group())
        if _KERNEL_LO <= v < _KERNEL_HI:
            hits.append(m.group().decode())
    return hits[:10]


def _decompress(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if raw[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    return raw


def event_kinds(trace: Path) -> dict[str, int]:
    """Events per kind, decoded by the trace reader (strict: a bad line raises)."""
    from mdtrace.trace import TraceReader

    kinds: dict[str, int] = {}
    for ev in TraceReader(trace):
        kinds[ev.kind] = kinds.get(ev.kind, 0) + 1
    return dict(sorted(kinds.items()))


def engine_summary(trace: Path) -> dict[str, Any]:
    """Replay ``trace`` through the engine: finding codes and lifecycle sequence per array."""
    from mdtrace.engine.core import Engine
    from mdtrace.trace import TraceReader

    reader = TraceReader(trace)
    eng = Engine(mode="replay", kernel=reader.header.kernel)
    for ev in reader:
        eng.feed(ev)
    eng.finish()
    snap = eng.snapshot()
    lifecycle: dict[str, list[str]] = {}
    for name, view in snap.arrays.items():
        seq: list[str] = []
        for _ts, state in view.history:
            if not seq or seq[-1] != str(state):
                seq.append(str(state))
        lifecycle[name] = seq
    return {
        "findings": sorted({f.code for f in eng.findings}),
        "lifecycle": lifecycle,
    }


def collect(results: dict[str, ScenarioResult], dest: Path, *,
            max_bytes: int = 400_000) -> list[str]:
    """Keep every recorded scenario of one guest run as a golden trace; returns what it did."""
    done = []
    for name, r in sorted(results.items()):
        if not r.recorded or not r.trace.is_file():
            done.append(f"skip {name}: not recorded")
            continue
        if r.rc != 0:
            done.append(f"skip {name}: the scenario failed (rc {r.rc}): not a reference")
            continue
        bad = raw_pointers(r.trace)
        if bad:
            raise MdtraceError(f"{r.trace}: raw kernel pointer values {bad[:3]} in the trace: "
                               "refusing to keep it (pointers must be hashed by the recorder)")
        size = r.trace.stat().st_size
        if size > max_bytes:
            done.append(f"skip {name}: trace is {size} bytes (> {max_bytes})")
            continue
        kdir = dest / r.kernel
        kdir.mkdir(parents=True, exist_ok=True)
        out = kdir / f"{name}.jsonl.gz"
        shutil.copyfile(r.trace, out)
        codes = r.finding_codes()
        expected: dict[str, Any] = {
            "scenario": name, "kernel": r.kernel,
            # None: the guest had no `mdtrace report` when this was recorded
            "guest_report_findings": sorted(codes) if codes is not None else None,
            "event_kinds": event_kinds(out),
            "observations": r.obs,
        }
        expected["engine"] = engine_summary(out)
        (kdir / f"{name}.expected.json").write_text(json.dumps(expected, indent=1,
                                                               sort_keys=True) + "\n")
        done.append(f"kept {out} ({size} bytes, {sum(expected['event_kinds'].values())} "
                    f"events, report findings {expected['guest_report_findings']})")
    return done
