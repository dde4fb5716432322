"""Scenario library: synthetic event streams following the kernel's code paths for each failure
class, on a buggy and a fixed kernel, plus healthy runs (tests/scenarios/catalog.py).

``SCENARIOS[name]``: ``.events()`` (canonicalised Events), ``.write_trace(path)`` (a trace file
with the kernel's flag table), ``.expected`` (finding codes the engine must raise, no more).
"""

from tests.scenarios.builder import Scenario, Sim
from tests.scenarios.catalog import ALL

SCENARIOS: dict[str, Scenario] = {s.name: s for s in ALL}

__all__ = ["SCENARIOS", "Scenario", "Sim"]
