"""F7 detection latency (vmtest.detect) counts from the reported IO's own start, not from an
earlier slow IO of the same array that completed (a real 6.1 guest run: udev's probe read)."""

from __future__ import annotations

from pathlib import Path

from tests.scenarios.builder import Scenario, Sim
from vmtest.detect import first_detection


def _build(sim: Sim) -> None:
    mdadm, udev, dd = sim.task("mdadm"), sim.task("udev-worker"), sim.task("dd")
    md = sim.array("md0")
    md.create(mdadm)
    md.reshape_pos = 24_576
    md.set("RESHAPE")
    md.io_blocked(udev, 520, 1.2, done=True)       # slow but done: not the blocked IO
    sim.idle(md, 4)
    md.ro = 1
    md.set("INTR")
    for i in range(1, 10):
        sim.sleep(1.0)
        md.io_blocked(dd, 24_576, float(i))


def test_latency_is_from_the_blocked_io(tmp_path: Path) -> None:
    sc = Scenario("detect", "6.1.0-56-amd64", "", frozenset({"F7"}), _build)
    d = first_detection(sc.write_trace(tmp_path / "t.jsonl"), "F7")
    assert d is not None and d.array == "md0"
    assert d.latency_s is not None
    assert 5.0 <= d.latency_s <= 5.0 + 1.0, d.latency_s
