"""`mdtrace report --format text|markdown|html|json` over the bundled real 6.1 example (F7,
F4) and a real-kernel golden trace (dm-raid LV on 6.1: F6, F4), plus escaping, bounded series
and the command's -o / bad-input behaviour."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest

from mdtrace.events import ArrayState, Event
from mdtrace.frontends.report import FORMATS, ReportModel, build_report, render
from mdtrace.frontends.report import build as build_mod
from mdtrace.frontends.report.markdown import _cell, _prose
from mdtrace.kernel.flags import FlagTable
from mdtrace.trace import TraceHeader, TraceWriter

EXAMPLE = str(resources.files("mdtrace") / "data" / "example.jsonl.gz")
GOLDEN = Path(__file__).parent / "data" / "golden"
LVM_61 = GOLDEN / "6.1.0-56-amd64" / "lvm_raid5_reshape.jsonl.gz"
MDTRACE = [sys.executable, "-m", "mdtrace.cli"]


@pytest.fixture(scope="module")
def example() -> ReportModel:
    return build_report(EXAMPLE)


@pytest.fixture(scope="module")
def lvm() -> ReportModel:
    return build_report(LVM_61)


class _Html(HTMLParser):
    """Collects tags, svg nesting and finding markers (data-code inside an <svg>)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.svgs: list[dict[str, list[str]]] = []
        self.depth = 0
        self.sections: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(a.get("id") or "")
        if tag == "svg":
            self.depth += 1
            self.svgs.append({"markers": [], "classes": []})
        elif self.depth:
            cls = a.get("class") or ""
            self.svgs[-1]["classes"].append(cls)
            if cls == "finding-marker":
                self.svgs[-1]["markers"].append(a.get("data-code") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.depth -= 1


def _parse(text: str) -> _Html:
    p = _Html()
    p.feed(text)
    p.close()
    return p


# -- every format over the bundled example ------------------------------------------------------
def test_text_has_findings_and_timeline(example: ReportModel) -> None:
    out = render(example, "text")
    assert "[F7]" in out and "[F4]" in out and "sync_action" in out
    life = [ln for ln in out.splitlines() if ln.startswith("lifecycle ")]
    assert life and "S" in life[0], out       # the reshape's syncing phase shows
    assert any(ln.startswith("F7 ") and "*" in ln for ln in out.splitlines())


def test_markdown_findings_table_and_sections(example: ReportModel) -> None:
    out = render(example, "markdown")
    lines = out.splitlines()
    head = lines.index("| code | severity | state | array | start | end | duration | title |")
    rows = [ln for ln in lines[head + 2:] if ln.startswith("| F")]
    assert {r.split("|")[1].strip() for r in rows} >= {"F7", "F4"}
    assert "### md0" in lines and "```text" in lines
    # remedy keeps its shell command readable inside the code span
    assert "`echo reshape > /sys/block/md0/md/sync_action`" in out


def test_html_svg_per_array_with_finding_markers(example: ReportModel) -> None:
    out = render(example, "html")
    p = _parse(out)
    assert out.startswith("<!DOCTYPE html>") and "script" not in p.tags
    assert len(p.svgs) == len(example.shown_arrays()) == 1
    assert sorted(p.svgs[0]["markers"]) == ["F4", "F7"]
    classes = p.svgs[0]["classes"]
    assert any(c.startswith("state state-syncing") for c in classes)
    assert "io-wait" in classes and "lane" in classes
    # self-contained: no external resources
    assert "src=" not in out and "<link" not in out and "@import" not in out


def test_json_keeps_schema_1_keys(example: ReportModel) -> None:
    data = json.loads(render(example, "json"))
    assert data["schema_version"] == 1 and data["kernel"] == "6.1.0-56-amd64"
    for key in ("trace", "source", "events", "bad_lines", "findings", "arrays", "health"):
        assert key in data
    f7 = [f for f in data["findings"] if f["code"] == "F7"]
    assert f7 and f7[0]["details"]["reason"] == "frozen"
    old = {"code", "title", "array", "severity", "start_s", "start_ns", "end_ns", "active",
           "explanation", "fix", "remedy", "details"}
    assert old <= set(f7[0])
    assert {"kind", "dm_name", "level", "lifecycle", "history", "recovery"} <= set(
        data["arrays"]["md0"])
    assert "syncing" in data["arrays"]["md0"]["history"]
    tl = data["timelines"]["md0"]
    assert any(state == "syncing" for _, _, state in tl["lifecycle"])
    assert tl["flags"]["FROZEN"] and tl["blocked_io"]


# -- a golden dm-raid trace --------------------------------------------------------------------
def test_golden_lvm_trace_all_formats(lvm: ReportModel) -> None:
    codes = {f.code for f in lvm.findings}
    assert {"F6", "F4"} <= codes
    p = _parse(render(lvm, "html"))
    assert len(p.svgs) == len(lvm.shown_arrays()) and "array-dm-6" in p.sections
    dm6 = p.svgs[p.sections.index("array-dm-6")]
    assert set(dm6["markers"]) >= {"F6", "F4"} and "dm-suspend" in dm6["classes"]
    md = render(lvm, "markdown")
    assert "| F6 |" in md and "### dm-6 (mdtvg-r5)" in md
    data = json.loads(render(lvm, "json"))
    assert data["timelines"]["dm-6"]["dm_suspended"]
    assert "dm suspended" in render(lvm, "text")


# -- escaping ----------------------------------------------------------------------------------
EVIL = '<script>alert("x")</script>'


def _evil_trace(tmp: Path) -> Path:
    p = tmp / "evil.jsonl"
    st = ArrayState(recovery=1 << 0, sync_thread=True)
    hdr = TraceHeader(kernel="6.1.0<b>", source="<i>t</i>",
                      flag_tables=FlagTable.for_release("6.1"))
    with TraceWriter(p, hdr) as w:
        w.write(Event(ts=1_000, kind="array_create", array=EVIL, comm=EVIL, state=st,
                      args={"level": "raid5"}))
        w.write(Event(ts=2_000, kind="check_recovery_exit", array=EVIL, comm=EVIL, state=st))
        w.write(Event(ts=9_000_000_000, kind="io_wait", array=EVIL, comm=EVIL,
                      state=ArrayState(recovery=1 << 9 | 1, sync_thread=True, reshape_pos=8),
                      # 6.1 bits: FROZEN=9, RUNNING=0
                      args={"sector": 8, "sectors": 8, "rw": "W", "wait_ns": 8_000_000_000,
                            "io_id": EVIL}))
    return p


def test_html_and_markdown_escape_trace_strings(tmp_path: Path) -> None:
    model = build_report(_evil_trace(tmp_path))
    assert any(f.code == "F7" for f in model.findings)   # the evil name reaches a finding
    html_out = render(model, "html")
    p = _parse(html_out)
    assert "script" not in p.tags
    assert "&lt;script&gt;" in html_out and "6.1.0&lt;b&gt;" in html_out
    assert "&lt;i&gt;t&lt;/i&gt;" in html_out
    md = render(model, "markdown")
    # raw only inside code spans (rendered literally there), escaped everywhere else
    assert "<script>" not in re.sub(r"`[^`]*`", "", md) and "&lt;script&gt;" in md
    assert "\x1b" not in render(model, "text")


def test_markdown_escapers() -> None:
    assert _cell("a|b<c>") == "a\\|b&lt;c&gt;"
    assert _prose("run `echo a > b` now <x>") == "run `echo a > b` now &lt;x&gt;"
    assert _prose("odd ` tick <x>") == "odd \\` tick &lt;x&gt;"


def test_text_neutralises_control_characters(tmp_path: Path) -> None:
    p = tmp_path / "ansi.jsonl"
    with TraceWriter(p, TraceHeader(kernel="6.12.1", source="t")) as w:
        w.write(Event(ts=1, kind="check_recovery_exit", array="md0\x1b[31m",
                      state=ArrayState(sync_thread=False)))
    out = render(build_report(p), "text")
    assert "\x1b" not in out and "md0?[31m" in out


# -- bounded series ----------------------------------------------------------------------------
def test_series_are_bounded_and_keep_their_span(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_mod, "MAX_POINTS", 64)
    p = tmp_path / "flap.jsonl.zst"
    n = 2000
    with TraceWriter(p, TraceHeader(kernel="6.12.1", source="t")) as w:
        for i in range(n):
            w.write(Event(ts=1_000 + i * 1_000_000, kind="check_recovery_exit", array="md0",
                          state=ArrayState(recovery=(i % 2) << 4)))   # FROZEN flapping
    model = build_report(p)
    tl = model.timelines["md0"]
    assert tl.thinned and 32 <= len(tl.mask) <= 65
    assert tl.mask[0][0] == 1_000 and tl.mask[-1][0] == 1_000 + (n - 1) * 1_000_000
    assert model.events_read == n


# -- the command -------------------------------------------------------------------------------
def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MDTRACE, *args], capture_output=True, text=True, timeout=120)


def test_output_file_option(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = _run("report", "--format", "html", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and "report written to" in res.stderr
    assert len(_parse(out.read_text()).svgs) == 1


def test_output_file_unwritable_is_one_line_exit_2(tmp_path: Path) -> None:
    res = _run("report", "-o", str(tmp_path / "no" / "such" / "dir" / "r.md"))
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "bundled" not in ln]
    assert len(lines) == 1 and "cannot write report" in lines[0], res.stderr


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_input_one_line_exit_2_every_format(tmp_path: Path, fmt: str) -> None:
    bad = tmp_path / "garbage"
    bad.write_bytes(b"\x00\x01garbage\n")
    res = _run("report", str(bad), "--format", fmt)
    assert res.returncode == 2 and res.stdout == ""
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
