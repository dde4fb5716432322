"""Trace integrity (issue 13 rows 1, 4-9): the reproducers of the report, as regression tests.

Row 1: a cut trace reports without flags, recovers every complete record, says so in every
format.  Rows 4-5: every bad value is a bad line (file:line without --skip-bad, counted and
shown with it), never a crash; thresholds and --duration checked.  Row 6: one flag-decoding
rule.  Row 7: line cap, devices, FIFOs, OS errors.  Rows 8-9: a full disk, file modes and
symlinks.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import subprocess
import sys
import threading
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest

from mdtrace.commands.record import TraceOutput
from mdtrace.config import EngineConfig, load_config
from mdtrace.errors import MdtraceError
from mdtrace.events import ArrayState, Event
from mdtrace.frontends.report import FORMATS, build_report, render
from mdtrace.kernel.flags import Recovery
from mdtrace.trace import MAX_LINE, TraceError, TraceHeader, TraceReader, TraceWriter

GOLDEN = Path(__file__).parent / "data" / "golden"
BIG = GOLDEN / "6.12.117+deb12-amd64" / "lvm_raid5_reshape.jsonl.gz"
SMALL = GOLDEN / "6.1.0-56-amd64" / "recovery_raid1.jsonl.gz"
HDR = {"format": "mdtrace-trace", "version": 1, "kernel": "6.12.117+deb12-amd64",
       "source": "t"}
CREATE = {"t": 1000, "k": "array_create", "a": "md0", "x": {"level": "raid5", "kind": "md"}}
MDTRACE = [sys.executable, "-m", "mdtrace.cli"]


def _lines(path: Path, lines: list[Any], header: dict[str, Any] = HDR) -> Path:
    with open(path, "w") as fh:
        fh.write(json.dumps(header) + "\n")
        for ln in lines:
            fh.write((ln if isinstance(ln, str) else json.dumps(ln)) + "\n")
    return path


def _complete_lines_in(cut: bytes) -> int:
    """Independently: the newline-ended lines zlib can get out of a cut gzip file."""
    d = zlib.decompressobj(31)
    data = d.decompress(cut)
    return data.count(b"\n") - 1        # minus the header


# -- row 1: cut traces ----------------------------------------------------------------------

@pytest.mark.parametrize(("trace", "frac"), [(BIG, 0.6), (BIG, 0.25), (SMALL, 0.5)])
def test_cut_old_trace_reports_without_flags_and_recovers_every_complete_line(
        tmp_path: Path, trace: Path, frac: float) -> None:
    raw = trace.read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(raw[: int(len(raw) * frac)])
    want = _complete_lines_in(cut.read_bytes())
    assert want > 0
    model = build_report(cut)                             # no --skip-bad
    assert model.events_read == want and model.bad_lines == 0
    assert model.abrupt_end.startswith("trace ends abruptly at +")
    assert f": {want} records recovered, the rest lost" in model.abrupt_end
    for fmt in FORMATS:
        assert model.abrupt_end in render(model, fmt).replace("&#x27;", "'"), fmt
    assert json.loads(render(model, "json"))["abrupt_end"] == model.abrupt_end
    whole = build_report(trace)
    assert whole.abrupt_end == "" and not [n for n in whole.notes if "abrupt" in n]


def test_cli_report_on_a_cut_trace_exits_0(tmp_path: Path) -> None:
    raw = BIG.read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(raw[: len(raw) * 6 // 10])
    res = subprocess.run([*MDTRACE, "report", str(cut)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "trace ends abruptly at" in res.stdout and "records recovered" in res.stdout


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst", ".jsonl"])
def test_v2_writer_cut_anywhere_keeps_every_flushed_frame(tmp_path: Path, suffix: str) -> None:
    """Cut the file at ~200 places (an odd step: inside frames, lines, headers): the events
    of every frame ended before the cut are read, as a gap-free prefix, and the end record
    tells a whole file from a cut one."""
    path = tmp_path / f"w{suffix}"
    w = TraceWriter(path, TraceHeader(kernel="6.12.117+deb12-amd64", source="t"))
    bounds: list[tuple[int, int]] = []          # (bytes of whole frames, events in them)
    for i in range(3000):
        w.write(Event(ts=10**9 + i, kind="io_stats", array="md0", args={"requests": i}))
        if i % 300 == 299:
            w.flush()
            bounds.append((w._good, i + 1))
    w.close()
    data = path.read_bytes()
    whole = TraceReader(path)
    assert [e.args["requests"] for e in whole] == list(range(3000))
    assert whole.ended and whole.abrupt is None
    for cut in range(bounds[0][0], len(data) - 1, max(97, len(data) // 200) | 1):
        p = tmp_path / f"c{suffix}"
        p.write_bytes(data[:cut])
        r = TraceReader(p)
        got = [e.args["requests"] for e in r]
        assert got == list(range(len(got))), cut
        assert len(got) >= max(n for b, n in bounds if b <= cut), cut
        assert r.abrupt is not None and r.bad_lines == 0, cut


def test_garbage_in_the_middle_is_still_a_bad_line(tmp_path: Path) -> None:
    p = _lines(tmp_path / "g.jsonl", [CREATE, "not json", CREATE])
    with pytest.raises(TraceError, match=r"g\.jsonl:3: line is not valid JSON"):
        build_report(p)
    assert build_report(p, skip_bad=True).bad_lines == 1


# -- rows 4-5: bad values are bad lines -----------------------------------------------------

BAD_LINES = {
    "lost_count_str": {"t": 2000, "k": "lost", "x": {"count": "x"}},
    "progress_total_str": {"t": 2000, "k": "progress", "a": "md0", "x": {"done": 1,
                                                                       "total": "x"}},
    "wait_ns_str": {"t": 2000, "k": "io_wait", "a": "md0", "x": {"wait_ns": "x", "sector": 1}},
    "nul_name": {"t": 2000, "k": "check_recovery_enter", "a": "md\u00000", "s": {"r": 1}},
    "deep": '{"t":2000,"k":"progress","a":"md0","x":{"y":' + "[" * 1000 + "]" * 1000 + "}}",
    "negative_sector": {"t": 4000, "k": "io_wait", "a": "md0",
                        "x": {"wait_ns": 6_000_000_000, "sector": -100, "sectors": -5,
                              "io_id": "a"}},
    "negative_time": {"t": -5, "k": "lost", "x": {"count": 1}},
    "negative_count": {"t": 2000, "k": "lost", "x": {"count": -1}},
    "huge_time": {"t": 10**30, "k": "lost", "x": {"count": 1}},
    "nan_blocked": {"t": 2000, "k": "task_blocked", "x": {"blocked_s": 1e308 * 10}},
    "negative_state": {"t": 2000, "k": "check_recovery_exit", "a": "md0",
                       "s": {"r": 1, "rp": -100}},
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_bad_value_is_a_bad_line(tmp_path: Path, case: str) -> None:
    line = BAD_LINES[case]
    if case == "nan_blocked":
        line = '{"t":2000,"k":"task_blocked","x":{"blocked_s":1e400}}'
    # amid re-reads, so the block decoder meets it too
    reread = {"t": 1500, "k": "check_recovery_enter", "a": "md0", "s": {"r": 1}}
    p = _lines(tmp_path / f"{case}.jsonl", [CREATE] + [reread] * 50 + [line] + [reread] * 50)
    with pytest.raises(TraceError) as exc:
        build_report(p)
    msg = str(exc.value)
    assert f"{case}.jsonl:53: " in msg and "--skip-bad" in msg and "\n" not in msg, msg
    model = build_report(p, skip_bad=True)
    assert model.bad_lines == 1 and model.events_read == 101
    for fmt in FORMATS:
        assert f"{case}.jsonl:53" in render(model, fmt), fmt


def test_cli_bad_value_exit_2_one_line_and_skip_bad_exit_0(tmp_path: Path) -> None:
    p = _lines(tmp_path / "neg.jsonl", [CREATE, BAD_LINES["negative_sector"]])
    res = subprocess.run([*MDTRACE, "report", str(p)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "neg.jsonl:3:" in res.stderr and "sector" in res.stderr
    res = subprocess.run([*MDTRACE, "report", "--skip-bad", str(p), "--format", "json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["bad_lines"] == 1 and data["findings"] == []      # no F7 "-5 sectors"
    assert any("neg.jsonl:3" in e for e in data["errors"])


@pytest.mark.parametrize(("header", "what"), [
    ({**HDR, "version": [1]}, "unsupported trace format version [1]"),
    ({**HDR, "version": True}, "unsupported trace format version True"),
    ({**HDR, "flag_tables": {"recovery": {"RUNNING": -1}, "mddev": {}}}, "not 0..63"),
    ({**HDR, "flag_tables": {"recovery": {"RUNNING": "1"}}}, "not 0..63"),
    ({**HDR, "kernel": ["6.1"]}, "'kernel' is not a short string"),
])
def test_a_bad_header_is_a_one_line_error(tmp_path: Path, header: dict[str, Any],
                                          what: str) -> None:
    p = _lines(tmp_path / "h.jsonl", [CREATE], header)
    for skip_bad in (False, True):
        with pytest.raises(TraceError, match=r"h\.jsonl:1: ") as exc:
            build_report(p, skip_bad=skip_bad)
        assert what in str(exc.value)


@pytest.mark.parametrize("spec", ["io_wait_s=-1", "io_wait_s=nan", "io_wait_s=inf",
                                  "stall_s=0", "io_wait_s=1e300", "max_evidence=inf",
                                  "max_evidence=2.5", "max_history=0"])
def test_thresholds_must_be_finite_and_positive(spec: str) -> None:
    with pytest.raises(MdtraceError, match=spec.partition("=")[0]) as exc:
        load_config(None, [spec])
    assert "\n" not in str(exc.value)


def test_config_file_values_are_checked_too(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[thresholds]\nio_wait_s = -2\n")
    with pytest.raises(MdtraceError, match=r"c\.toml: threshold io_wait_s=-2"):
        load_config(str(p))
    p.write_text("[thresholds]\nio_wait_s = true\n")
    with pytest.raises(MdtraceError, match="must be a number"):
        load_config(str(p))
    p.write_text("[thresholds]\nio_wait_s = 2\nmax_evidence = 8\n")
    cfg = load_config(str(p), ["stall_s=30"])
    assert (cfg.io_wait_s, cfg.max_evidence, cfg.stall_s) == (2.0, 8, 30.0)
    assert EngineConfig(io_wait_s=0.0).io_wait_s == 0.0     # diagnose's own zero stays


@pytest.mark.parametrize("value", ["1e300", "nan", "inf", "-1", "0"])
def test_duration_out_of_range_is_one_line(tmp_path: Path, value: str) -> None:
    res = subprocess.run([*MDTRACE, "record", "-o", str(tmp_path / "t.gz"), "--duration",
                          value], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and "--duration" in res.stderr, res.stderr
    assert not (tmp_path / "t.gz").exists()


# -- row 6: one flag-decoding rule ----------------------------------------------------------

def test_stored_decoded_flags_never_override_the_raw_word(tmp_path: Path) -> None:
    """The line says raw FROZEN (6.11+ bit 4) but stores a decoded mask of 0: block path,
    per-line path (a bad line in the same block) and replay all decode FROZEN."""
    frozen = {"t": 2000, "k": "check_recovery_exit", "a": "md0", "s": {"r": 1 << 4, "rc": 0}}
    good = _lines(tmp_path / "a.jsonl", [CREATE, frozen])
    mixed = _lines(tmp_path / "b.jsonl", [CREATE, "garbage", frozen])
    for path, skip in ((good, False), (mixed, True)):
        evs = [e for e in TraceReader(path, skip_bad=skip) if e.state is not None]
        assert [e.state.rec for e in evs] == [int(Recovery.FROZEN)], path
        res = subprocess.run([*MDTRACE, "replay", *(["--skip-bad"] if skip else []),
                              str(path)], capture_output=True, text=True, timeout=60)
        assert "[FROZEN]" in res.stdout, (res.stdout, res.stderr)
        model = build_report(path, skip_bad=skip)
        assert model.snapshot.arrays["md0"].recovery == ["FROZEN"]


# -- row 7: what the reader opens -----------------------------------------------------------

def test_overlong_line_is_a_bad_line_read_in_bounded_memory(tmp_path: Path) -> None:
    p = tmp_path / "long.jsonl"
    with open(p, "w") as fh:
        fh.write(json.dumps(HDR) + "\n" + json.dumps(CREATE) + "\n")
        fh.write('{"t":2000,"k":"lost","x":{"p":"' + "y" * (24 * MAX_LINE) + '"}}\n')
        fh.write(json.dumps({"t": 3000, "k": "lost", "x": {"count": 2}}) + "\n")
    with pytest.raises(TraceError, match=r"long\.jsonl:3: line longer than"):
        list(TraceReader(p))
    tracemalloc.start()
    try:
        evs = list(TraceReader(p, skip_bad=True))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [e.ts for e in evs] == [1000, 3000]
    assert peak < 6 * MAX_LINE, f"peak {peak / 2**20:.1f} MiB for a 24 MiB line"


def test_devices_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="not a regular file"):
        TraceReader("/dev/zero")


def test_a_fifo_without_writer_does_not_hang(tmp_path: Path, monkeypatch: Any) -> None:
    import mdtrace.trace as trace_mod

    monkeypatch.setattr(trace_mod, "FIFO_WAIT_S", 0.5)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[BaseException] = []
    th = threading.Thread(target=lambda: _catch(got, lambda: TraceReader(fifo)), daemon=True)
    th.start()
    th.join(10)
    assert not th.is_alive(), "TraceReader hung on a FIFO"
    assert got and isinstance(got[0], TraceError) and "nothing wrote to" in str(got[0])


def _catch(out: list[BaseException], fn: Any) -> None:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - handed to the test
        out.append(exc)


def test_a_fifo_with_a_writer_reads(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    src = _lines(tmp_path / "src.jsonl", [CREATE])
    feeder = subprocess.Popen(["sh", "-c", f"cat {src} > {fifo}"])
    try:
        assert [e.kind for e in TraceReader(fifo)] == ["array_create"]
    finally:
        feeder.wait(10)


@pytest.mark.parametrize(("make", "what"), [
    ("notdir", "a component of the path is not a directory"),
    ("loop", "too many levels of symbolic links"),
    ("dir", "is a directory"),
])
def test_path_errors_are_one_line(tmp_path: Path, make: str, what: str) -> None:
    if make == "notdir":
        (tmp_path / "f").write_text("x")
        path = tmp_path / "f" / "t.jsonl"
    elif make == "loop":
        os.symlink(tmp_path / "b", tmp_path / "a")
        os.symlink(tmp_path / "a", tmp_path / "b")
        path = tmp_path / "a"
    else:
        path = tmp_path
    res = subprocess.run([*MDTRACE, "report", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and what in res.stderr, \
        res.stderr


def test_eio_while_reading_is_one_line_after_the_events_before(tmp_path: Path,
                                                               monkeypatch: Any) -> None:
    import mdtrace.trace as trace_mod

    p = _lines(tmp_path / "eio.jsonl", [CREATE] * 3)
    real = trace_mod._open_raw

    class Failing:
        def __init__(self, fh: Any) -> None:
            self.fh, self.calls = fh, 0

        def read(self, n: int) -> bytes:
            self.calls += 1
            if self.calls > 1:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return self.fh.read(n)

        def close(self) -> None:
            self.fh.close()

    monkeypatch.setattr(trace_mod, "_open_raw", lambda path: Failing(real(path)))
    seen = []
    with pytest.raises(TraceError, match="eio.jsonl: read error: Input/output error"):
        for ev in TraceReader(p):
            seen.append(ev)
    assert len(seen) == 3


# -- rows 8-9: the writer -------------------------------------------------------------------

class _FullDisk:
    """``os`` for mdtrace.trace with a disk that fills after ``room`` bytes."""

    def __init__(self, room: int) -> None:
        self.room = room

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: Any) -> int:
        if len(data) > self.room:
            n = self.room
            if n == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room = 0
            return os.write(fd, bytes(data[:n]))
        self.room -= len(data)
        return os.write(fd, data)


def test_full_disk_names_the_path_and_leaves_the_file_valid(tmp_path: Path,
                                                          monkeypatch: Any) -> None:
    import mdtrace.trace as trace_mod

    path = tmp_path / "full.jsonl.gz"
    monkeypatch.setattr(trace_mod, "os", _FullDisk(20_000))
    errors: list[TraceError] = []
    out = TraceOutput(str(path), TraceHeader(kernel="6.12.117+deb12-amd64", source="t"),
                      flush_s=3600, on_error=errors.append)
    st = ArrayState(recovery=3)
    n = 0
    while not errors and n < 200_000:
        out.write(Event(ts=10**9 + n, kind="io_stats", array="md0", state=st,
                        args={"requests": n}))
        n += 1
        if n % 500 == 0:
            out.flush()
    out.close()
    monkeypatch.undo()
    assert errors and out.error is errors[0]
    msg = str(errors[0])
    assert msg.startswith(f"{path}: cannot write the trace: No space left on device")
    assert "\n" not in msg and path.stat().st_size <= 20_000
    data = gzip.decompress(path.read_bytes())           # whole gzip members only
    assert data.count(b"\n") > 1
    r = TraceReader(path)
    seqs = [e.args["requests"] for e in r]
    assert seqs == list(range(len(seqs))) and len(seqs) >= 500
    assert r.abrupt is not None                         # no end record: says so
    out.write(Event(ts=1, kind="lost"))                 # after the error: dropped quietly


def test_trace_files_are_private_even_under_umask_0(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        out = TraceOutput(str(tmp_path / "t.jsonl.gz"), TraceHeader())
        out.close()
    finally:
        os.umask(old)
    assert (tmp_path / "t.jsonl.gz").stat().st_mode & 0o777 == 0o600


def test_existing_files_and_symlinks_are_refused_unless_force(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "planted.jsonl.gz"
    os.symlink(victim, link)
    with pytest.raises(TraceError, match="already exists"):
        TraceOutput(str(link), TraceHeader())
    existing = tmp_path / "old.jsonl.gz"
    existing.write_text("old")
    with pytest.raises(TraceError, match=r"old\.jsonl\.gz: already exists .*--force"):
        TraceOutput(str(existing), TraceHeader())
    for target in (link, existing):
        TraceOutput(str(target), TraceHeader(), force=True).close()
        assert not target.is_symlink() and target.stat().st_mode & 0o777 == 0o600
        assert TraceReader(target).header.version == 2
    assert victim.read_text() == "precious"


def test_record_refuses_an_existing_output_before_attaching(tmp_path: Path) -> None:
    existing = tmp_path / "t.jsonl.gz"
    existing.write_text("keep")
    res = subprocess.run([*MDTRACE, "record", "-o", str(existing)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "already exists" in res.stderr and "--force" in res.stderr
    assert existing.read_text() == "keep"


def test_sighup_without_rename_keeps_writing_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    out = TraceOutput(str(path), TraceHeader())
    out.write(Event(ts=1, kind="lost", args={"count": 1}))
    assert out.reopen() is False and out.files == 1
    out.write(Event(ts=2, kind="lost", args={"count": 2}))
    out.close()
    assert [e.ts for e in TraceReader(path)] == [1, 2]
