"""Helpers shared by the exporter tests (no tests here): traces, a subprocess exporter,
scrape parsing.  Expected values always come from running the engine, never from constants."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mdtrace.engine.core import Engine
from mdtrace.engine.model import Snapshot
from mdtrace.sources.replay import ReplaySource
from mdtrace.trace import TraceReader, TraceWriter

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden" / "6.1.0-56-amd64"
FROZEN = GOLDEN / "reshape_frozen_io.jsonl.gz"
HEALTHY = (GOLDEN / "resync_raid5.jsonl.gz", GOLDEN / "recovery_raid1.jsonl.gz")
MDTRACE = [sys.executable, "-m", "mdtrace.cli"]


def replay_snapshot(path: Path) -> Snapshot:
    """What the exporter's replay mode ends with: every event fed, then finish()."""
    src = ReplaySource(str(path))
    eng = Engine(mode="replay", kernel=str(src.header.kernel or ""))
    for ev in src.events():
        eng.feed(ev)
    eng.finish()
    src.close()
    return eng.snapshot()


def write_prefix_until_active(src: Path, dst: Path, codes: set[str]) -> Path:
    """The real trace cut right after the engine first has all ``codes`` active, so a
    replay holds them active at its end (the full trace stops the array and clears them)."""
    reader = TraceReader(str(src))
    eng = Engine(mode="replay", kernel=reader.header.kernel)
    with TraceWriter(dst, reader.header) as w:
        for ev in reader:
            w.write(ev)
            eng.feed(ev)
            if codes <= {f.code for f in eng.findings if f.active}:
                break
        else:
            raise AssertionError(f"{src.name}: {codes} never all active together")
    return dst


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Exposition text -> {(sample name, labels): value}."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels`` (None if none)."""
    hits = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(hits) <= 1, f"{name}{labels}: {len(hits)} samples match"
    return hits[0] if hits else None


def declared_names(text: str) -> set[str]:
    """Metric names a scrape declares (# TYPE lines; counters with _total, info with _info)."""
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))


def sample_names(text: str) -> set[str]:
    return {n for (n, _l) in parse(text)}


def http_get(url: str, timeout: float = 10.0, headers: dict[str, str] | None = None,
             context: Any = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(fn: Callable[[], Any], timeout: float, what: str, step: float = 0.2) -> Any:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except OSError as exc:
            last = exc
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@contextmanager
def exporter_proc(*args: str, timeout: float = 20.0) -> Iterator[str]:
    """`mdtrace exporter --listen 127.0.0.1:0 ARGS` as a real process; yields its /metrics
    URL (read from its startup line) and checks it stops cleanly on SIGTERM."""
    p = subprocess.Popen([*MDTRACE, "exporter", "--listen", "127.0.0.1:0", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        lines: list[str] = []
        url = ""
        end = time.monotonic() + timeout
        while time.monotonic() < end and p.stderr is not None:
            line = p.stderr.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"serving (https?://\S+/metrics)", line)
            if m:
                url = m.group(1)
                break
        assert url, f"exporter did not start: rc={p.poll()} stderr={''.join(lines)!r}"
        yield url
    finally:
        p.terminate()
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        assert "Traceback" not in err, err
