"""Fuzz target (issue 13): bytes -> trace reader -> engine -> every report renderer.

Inputs are real-shaped traces (lines of the golden recordings, and events of every kind)
with values swapped for hostile ones (strings for numbers, negative and 2**64+ numbers,
floats, NUL in names, deep nesting, lists as versions and flag bits), byte damage (cuts,
garbage, overlong lines) and each encoding (plain, gzip, zstd; cut or whole).  The property:
``mdtrace report`` either renders all four formats or raises the project's own one-line
error -- never anything else -- and with ``--skip-bad`` only an unreadable header or file
stops it.  The fast tier runs a bounded number of examples; ``-m slow`` runs for
``MDTRACE_FUZZ_S`` seconds (default 600).
"""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdtrace.errors import MdtraceError
from mdtrace.events import KINDS, describe
from mdtrace.frontends.report import FORMATS, build_report, render
from mdtrace.trace import TraceReader

GOLDEN = Path(__file__).parent / "data" / "golden"
_CORPUS = [ln for p in sorted(GOLDEN.glob("*/*.jsonl.gz"))[:4]
           for ln in gzip.decompress(p.read_bytes()).split(b"\n")[1:400] if ln.strip()]
_HEADER = {"format": "mdtrace-trace", "version": 2, "kernel": "6.12.117+deb12-amd64",
           "source": "fuzz", "flag_tables": {"recovery": {"NEEDED": 0, "RUNNING": 1, "INTR": 2,
                                                          "DONE": 3, "FROZEN": 4, "WAIT": 5,
                                                          "RESHAPE": 11},
                                             "mddev": {"CLOSING": 1}}}
_ARG_KEYS = ["sector", "sectors", "wait_ns", "done", "total", "count", "io_id", "rw", "mode",
             "requests", "slow", "blocked", "max_wait_ns", "lock", "lock_id", "op", "what",
             "target", "name", "caller", "sync", "level", "kind", "action", "threads",
             "frames", "blocked_s", "class", "task", "task_pid", "rc", "hook", "phase",
             "probe", "attached", "mutex_owned", "suspend_lo", "suspend_hi", "dm_suspended",
             "source", "raid_disks", "degraded", "reshape_position", "speed_kbs", "state"]
_STATE_KEYS = ["r", "f", "ro", "su", "st", "rp", "cr", "rm", "lv", "rc", "fc"]

_hostile = st.one_of(
    st.integers(-2**70, 2**70), st.integers(-3, 10**6), st.sampled_from([0, 1, 2**63, 2**64]),
    st.floats(allow_nan=False), st.booleans(), st.none(),
    st.text(max_size=12), st.sampled_from(["md0", "md\x000", "x" * 300, "\x1b[31m", "dm-6"]),
    st.lists(st.integers(-5, 5), max_size=3), st.dictionaries(st.text(max_size=3),
                                                              st.integers(), max_size=2),
    st.just("DEEP"),
)


def _undeep(line: bytes) -> bytes:
    """json.dumps cannot nest 1,000 deep: DEEP<n> placeholders become n nested lists."""
    while b'"DEEP' in line:
        i = line.index(b'"DEEP')
        j = line.index(b'"', i + 1)
        n = int(line[i + 5:j])
        line = line[:i] + b"[" * n + b"1" + b"]" * n + line[j + 1:]
    return line


@st.composite
def _event(draw: st.DrawFn) -> Any:
    """One line: a golden line or a fresh event, possibly with hostile values."""
    if _CORPUS and draw(st.booleans()):
        obj = json.loads(draw(st.sampled_from(_CORPUS)))
    else:
        obj = {"t": draw(st.integers(0, 10**11)), "k": draw(st.sampled_from(KINDS)),
               "a": draw(st.sampled_from(["md0", "md1", "dm-6", ""]))}
        if draw(st.booleans()):
            obj["s"] = {k: draw(st.integers(0, 1 << 12)) for k in
                        draw(st.lists(st.sampled_from(_STATE_KEYS), max_size=5))}
        if draw(st.booleans()):
            obj["x"] = {k: draw(st.integers(0, 10**10)) for k in
                        draw(st.lists(st.sampled_from(_ARG_KEYS), max_size=4))}
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 1, 2, 3]))):
        where = draw(st.sampled_from(["top", "state", "args"]))
        value = draw(_hostile)
        if value == "DEEP":
            value = f"DEEP{draw(st.sampled_from([5, 20, 200, 1000, 3000]))}"
        if where == "top":
            obj[draw(st.sampled_from(["t", "k", "a", "c", "p", "i", "m", "dn", "md", "s",
                                      "x"]))] = value
        else:
            key = "s" if where == "state" else "x"
            if not isinstance(obj.get(key), dict):
                obj[key] = {}
            names = _STATE_KEYS if where == "state" else _ARG_KEYS
            obj[key][draw(st.sampled_from(names))] = value
    return obj


@st.composite
def _trace(draw: st.DrawFn) -> tuple[bytes, str]:
    header: Any = dict(_HEADER, version=draw(st.sampled_from([1, 2] * 6 + [[1], "2", 3])))
    if draw(st.integers(0, 19)) == 0:
        header["flag_tables"] = {"recovery": {"RUNNING": draw(_hostile)}}
    lines = [json.dumps(header).encode()]
    for ev in draw(st.lists(_event(), min_size=draw(st.sampled_from([0, 10, 30])),
                            max_size=60)):
        lines.append(_undeep(json.dumps(ev).encode()))
    data = b"\n".join(lines) + b"\n"
    damage = draw(st.sampled_from(["none"] * 4 + ["cut", "garbage", "overlong", "nul"]))
    if damage == "cut":
        data = data[:draw(st.integers(len(lines[0]), len(data)))]
    elif damage == "garbage":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=40)) + data[at:]
    elif damage == "overlong":
        data += b'{"t":1,"k":"lost","x":{"p":"' + b"y" * (1 << 20) + b'"}}\n'
    elif damage == "nul":
        data = data.replace(b"md0", b"md\x000", 1)
    enc = draw(st.sampled_from(["plain", "gz", "zst"]))
    if enc == "gz":
        data = gzip.compress(data, compresslevel=1)
    elif enc == "zst":
        data = zstandard.ZstdCompressor(level=1).compress(data)
    if enc != "plain" and draw(st.booleans()):
        data = data[:draw(st.integers(len(data) // 4, len(data)))]
    return data, enc


def _check(path: Path, skip_bad: bool) -> None:
    try:
        model = build_report(path, skip_bad=skip_bad)
    except MdtraceError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith(str(path)), msg
        if skip_bad:     # only the header or the file itself can stop a --skip-bad report
            assert getattr(exc, "line", None) in (None, 1), msg
        return
    for fmt in FORMATS:
        out = render(model, fmt)
        assert out
        if fmt == "json":
            data = json.loads(out)
            assert data["abrupt_end"] == (model.abrupt_end or None)
        if model.abrupt_end:
            assert "trace ends abruptly" in out, fmt
    try:
        for ev in TraceReader(path, skip_bad=skip_bad):   # what `mdtrace replay` prints
            json.dumps(describe(ev), default=str)
    except MdtraceError:
        pass


def _target(case: tuple[bytes, str], skip_bad: bool, tmp: Path) -> None:
    data, enc = case
    path = tmp / f"fuzz.jsonl{'' if enc == 'plain' else '.' + enc}"
    path.write_bytes(data)
    _check(path, skip_bad)


_SETTINGS = dict(deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.function_scoped_fixture])


@settings(max_examples=int(os.environ.get("MDTRACE_FUZZ_EXAMPLES", "120")), **_SETTINGS)
@given(case=_trace(), skip_bad=st.booleans())
def test_fuzz_reader_engine_renderers(case: tuple[bytes, str], skip_bad: bool,
                                      tmp_path: Path) -> None:
    _target(case, skip_bad, tmp_path)


@pytest.mark.slow
def test_fuzz_long_run(tmp_path: Path) -> None:
    """At least MDTRACE_FUZZ_S seconds (600) of fresh examples, batch after batch."""
    budget = float(os.environ.get("MDTRACE_FUZZ_S", "600"))
    end = time.monotonic() + budget
    batches = 0

    @settings(max_examples=500, **_SETTINGS)
    @given(case=_trace(), skip_bad=st.booleans())
    def batch(case: tuple[bytes, str], skip_bad: bool) -> None:
        _target(case, skip_bad, tmp_path)

    while time.monotonic() < end:
        batch()
        batches += 1
    print(f"fuzz: {batches} batches of 500 examples in {budget:.0f} s: no crash")
