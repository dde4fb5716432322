"""Real-kernel tier: the zoo (vmtest/zoo/), 6.12.117 with one seed fix reverted per variant.

Per variant one 6.12 boot: the variant's md_mod/raid456/dm_raid (built out of tree from
Debian's linux-source-6.12, cached by recipe key) are loaded in place of the stock modules, the
guest proves which modules it loaded, and the reproducers run under `mdtrace record`; the
host's `mdtrace report --format json` of each trace must hold the variant's class on the LV,
with its reason and remedy (vmtest/zoo/run.py EXPECT), and nothing unexpected.

Default vm tier (CI): ``ZOO_CI``, empty for now: the p3 boot took 10.4 min (host load 5-6) and
14.1 min (load 10), over the ~8 min the zoo may add to CI (docs/vm.md, "The zoo").
``make vm-zoo`` (MDTRACE_ZOO=all) runs every variant with an expectation, and the stock kernel
under the same reproducer.  MDTRACE_VM_RECHECK=1 re-checks the saved runs under
$MDTRACE_ZOO_OUT instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("MDTRACE_ZOO_OUT", ROOT / "out" / "vm-zoo"))
ZOO_CI: tuple[str, ...] = ()
ZOO_ALL = ("stock", "p1", "p3")
RUNS = ZOO_ALL if os.environ.get("MDTRACE_ZOO") == "all" else ZOO_CI
NOT_IN_CI = ("the zoo runs under `make vm-zoo` (MDTRACE_ZOO=all): one 6.12 boot per variant, "
             "10-14 min each under TCG here (docs/vm.md, The zoo)")


def _skip_loudly(why: str) -> None:
    msg = f"!! vm zoo SKIPPED (zoo variants NOT run): {why}"
    print(msg, file=sys.stderr)
    pytest.skip(msg)


def _zoo_problem() -> str | None:
    from mdtrace.errors import MdtraceError
    from vmtest.scenarios import tier_problem

    why = tier_problem()
    if why:
        return why
    from vmtest.zoo.build import ensure_build

    try:
        for v in RUNS:
            if v != "stock":
                ensure_build(v)
    except MdtraceError as e:      # EnvironmentProblem included: no source package, no root
        return f"zoo modules cannot be built here: {e}"
    return None


@pytest.fixture(scope="module", params=RUNS or ("none",))
def zoo_run(request: pytest.FixtureRequest):  # -> ZooRun
    from vmtest.zoo.run import load_run, run_variant

    name = request.param
    if name == "none":
        pytest.skip(NOT_IN_CI)
    if os.environ.get("MDTRACE_VM_RECHECK") == "1":
        saved = load_run(OUT / name, name)
        if not saved.results:
            pytest.fail(f"MDTRACE_VM_RECHECK=1 but {OUT / name} holds no saved zoo run")
        return saved
    why = _zoo_problem()
    if why:
        _skip_loudly(why)
    run = run_variant(name, OUT, timeout_s=float(os.environ.get("MDTRACE_ZOO_TIMEOUT", 1500)))
    print(f"\nvm zoo {name}: {run.figures}", file=sys.stderr)
    for sname, r in sorted(run.results.items()):
        print(f"  {sname}: rc={r.rc} {r.time_s} s outcome={r.obs.get('outcome')}",
              file=sys.stderr)
    return run


def test_variant_loaded_and_reproduced(zoo_run) -> None:
    """The guest loaded exactly this variant (marker parameter, out-of-tree taint), and every
    reproducer gave the expected outcome and findings."""
    assert zoo_run.results, f"no results: {zoo_run.figures}"
    assert zoo_run.problems() == []


def test_stock_does_not_show_the_variant_classes(zoo_run) -> None:
    """The class a variant raises is absent from the stock kernel's run of the same reproducer
    (the committed stock golden trace when stock did not run in this session)."""
    from vmtest.zoo.golden import stock_codes
    from vmtest.zoo.variants import VARIANTS

    if zoo_run.variant == "stock":
        codes = {f.get("code") for r in zoo_run.results.values() for f in (r.findings() or [])}
        assert codes == set()
        return
    stock = stock_codes()
    assert stock is not None, "no stock zoo golden trace committed"
    assert VARIANTS[zoo_run.variant].expect not in stock
