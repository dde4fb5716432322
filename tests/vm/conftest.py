"""Guest lanes: the vm tier's boots of different kernels run side by side.

One boot after another, the tier took 71.5 min on the 2-core CI machine (CI 2026-12-02: 4293 s
of its 4867 s), over CI's 60 min; a guest spends most of its time in one vCPU (bcc's clang
compile, md's own threads), so two guests on two cores take about the time of one.

A test module that boots guests says so with ``GUEST_JOB = (fixture, job)``: ``job(kernel)``
does the module's boot(s) for that kernel short name (or for None, in a module whose fixture
is not parametrized by kernel: then ``GUEST_LANE`` names the lane) and returns what the
fixture checks.  A job runs in a worker thread: no pytest calls in it, only work and its
result (or its exception, which the fixture re-raises).  When the first vm fixture asks, every
(module, kernel) pair that was collected is queued, in collection order, on its kernel's lane;
each fixture then waits for its own result.  MDTRACE_VM_LANES=1 runs everything in one lane
(one guest at a time, the old order); the default is one lane per kernel, at most 2.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

Job = Callable[[Any], Any]
_PLAN = pytest.StashKey[list[tuple[str, Any, Job, str]]]()


def _max_lanes() -> int:
    raw = os.environ.get("MDTRACE_VM_LANES", "2")
    try:
        n = int(raw)
    except ValueError:
        raise pytest.UsageError(f"MDTRACE_VM_LANES={raw!r}: expected a number of guests "
                                "at once (1 or 2 on a 2-core machine)") from None
    # each guest needs its memory (vmtest.scenarios.NEED_MEM_GB): fewer lanes where it is short
    from vmtest.scenarios import NEED_MEM_GB, mem_available_gb

    return max(1, min(n, int(mem_available_gb() // NEED_MEM_GB)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """The guest jobs the collected tests need: (module, kernel param, job, lane name)."""
    plan: list[tuple[str, Any, Job, str]] = []
    seen: set[tuple[str, Any]] = set()
    for item in session.items:
        mod = getattr(item, "module", None)
        spec = getattr(mod, "GUEST_JOB", None)
        if mod is None or spec is None:
            continue
        fixture, job = spec
        callspec = getattr(item, "callspec", None)
        kernel = callspec.params.get(fixture) if fixture and callspec else None
        key = (mod.__name__, kernel)
        if key in seen:
            continue
        seen.add(key)
        plan.append((mod.__name__, kernel, job, kernel or getattr(mod, "GUEST_LANE", "")))
    session.config.stash[_PLAN] = plan


@dataclass
class GuestLanes:
    """The queued guest jobs and their futures: ``result(module, kernel)`` waits for one."""

    plan: list[tuple[str, Any, Job, str]]
    lanes: int
    futures: dict[tuple[str, Any], Future[Any]] = field(default_factory=dict)
    _pools: list[ThreadPoolExecutor] = field(default_factory=list)
    _started = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _start(self) -> None:
        from vmtest.scenarios import tier_problem

        if os.environ.get("MDTRACE_VM_RECHECK") == "1":   # no boot: the fixtures re-check
            self.plan = []
        # a kernel no guest can run here: its fixture skips loudly, nothing is queued
        self.plan = [p for p in self.plan if not tier_problem(p[3] or "6.12")]
        self._images()
        names = list(dict.fromkeys(lane for *_, lane in self.plan))
        n = max(1, min(self.lanes, len(names)))
        self._pools = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vm-lane{i}")
                       for i in range(n)]
        for module, kernel, job, lane in self.plan:
            pool = self._pools[names.index(lane) % n]
            self.futures[(module, kernel)] = pool.submit(job, kernel)
        print(f"\nmdtrace vm: {len(self.plan)} guest jobs on {n} lane(s): "
              + "; ".join(f"lane {i}: " + ", ".join(
                  f"{m.rsplit('.', 1)[-1]}[{k or '-'}]" for m, k, _j, ln in self.plan
                  if names.index(ln) % n == i) for i in range(n)), file=sys.stderr)
        self._started = True

    def _images(self) -> None:
        """Build (or find) each distro image once, here, before two lanes could race on it."""
        from mdtrace.errors import MdtraceError
        from vmtest import image_for

        for lane in dict.fromkeys(p[3] for p in self.plan):
            try:
                image_for(lane or "6.12")
            except MdtraceError as e:   # each job meets it again and fails its own tests
                print(f"\nmdtrace vm: image for {lane}: {e}", file=sys.stderr)

    def result(self, module: str, kernel: Any) -> Any:
        with self._lock:
            if not self._started:
                self._start()
        fut = self.futures.get((module, kernel))
        if fut is None:    # not in the collected plan (a test selected afterwards): run here
            job = next((j for m, _k, j, _l in self.plan if m == module), None)
            if job is None:
                raise RuntimeError(f"{module}: no GUEST_JOB for kernel {kernel!r}")
            return job(kernel)
        return fut.result()

    def close(self) -> None:
        for p in self._pools:
            p.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def guest_lanes(request: pytest.FixtureRequest):  # -> GuestLanes
    lanes = GuestLanes(request.config.stash.get(_PLAN, []), _max_lanes())
    yield lanes
    lanes.close()
