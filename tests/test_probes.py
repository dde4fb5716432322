"""Probe plan from fake kallsyms: clones, fragments, missing functions, traceability."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdtrace.kernel.probes import Symbols, make_plan

KALLSYMS = """\
0000000000000000 T md_check_recovery\t[md_mod]
0000000000000000 t md_do_sync\t[md_mod]
0000000000000000 t md_do_sync.cold\t[md_mod]
0000000000000000 T md_reap_sync_thread\t[md_mod]
0000000000000000 t raid5_make_request.isra.0\t[raid456]
0000000000000000 t mddev_suspend.part.0\t[md_mod]
0000000000000000 t raid_postsuspend\t[dm_raid]
0000000000000000 d md_run\t[md_mod]
0000000000000000 T __mutex_lock_slowpath
"""


def _plan(traceable: list[str] | None = None, **kw: bool):  # noqa: ANN202
    return make_plan(Symbols.parse(KALLSYMS.splitlines(), traceable), **kw)


def test_plan_picks_symbols_and_reports_missing() -> None:
    plan = _plan()
    by = {p.spec.func: p for p in plan.probes}
    assert by["md_check_recovery"].symbol == "md_check_recovery"
    assert by["md_do_sync"].symbol == "md_do_sync"             # not the .cold fragment
    assert by["raid5_make_request"].symbol == "raid5_make_request.isra.0"  # GCC clone
    assert not by["mddev_suspend"].ok                          # only a .part fragment
    assert not by["md_run"].ok                                 # 'd' = data, not a function
    assert "raid_presuspend" in by and "6.9+" in by["raid_presuspend"].reason
    assert "dm_raid" in by["raid_presuspend"].reason
    assert not plan.required_missing()
    assert plan.files() == ["lifecycle.c", "reshape_io.c", "dm_suspend.c"]
    assert "__mutex_lock_slowpath" not in by                   # locks off by default


def test_locks_and_required() -> None:
    plan = _plan(locks=True)
    assert "locks.c" in plan.files()
    assert {p.spec.func for p in plan.attachable()} >= {"__mutex_lock_slowpath"}
    empty = make_plan(Symbols.parse(["0000000000000000 T schedule"]))
    assert {p.spec.func for p in empty.required_missing()} == {
        "md_check_recovery", "md_do_sync", "md_reap_sync_thread"}


def test_available_filter_functions_gate() -> None:
    plan = _plan(traceable=["md_check_recovery [md_mod]", "md_do_sync [md_mod]"])
    by = {p.spec.func: p for p in plan.probes}
    assert by["md_do_sync"].ok
    assert not by["md_reap_sync_thread"].ok and "not traceable" in by["md_reap_sync_thread"].reason


# kernel -> does it have dm-raid's raid_presuspend hook (6.9+: ProbeSpec note)
HAS_PRESUSPEND = {"5.10.0-32-amd64": False, "6.1.0-56-amd64": False,
                  "6.12.117+deb12-amd64": True, "7.2.13+deb14-amd64": True}


@pytest.mark.parametrize("rel", sorted(HAS_PRESUSPEND))
def test_plan_on_captured_guest_kallsyms(rel: str) -> None:
    """5.10 and 7.2 kallsyms/traceable come from the packages (tests/data/btf/README.md)."""
    d = Path(__file__).parent / "data" / "btf" / rel
    syms = Symbols.read(d / "kallsyms.txt", traceable=d / "traceable.txt")
    plan = make_plan(syms)
    ok = {p.spec.func for p in plan.attachable()}
    assert {"md_check_recovery", "md_do_sync", "md_reap_sync_thread", "raid5_make_request",
            "dm_suspend", "raid_message", "md_register_thread", "md_unregister_thread",
            "mddev_suspend", "mddev_resume", "raid5_start_reshape", "raid_postsuspend",
            "raid_preresume", "raid_resume", "dm_resume"} <= ok
    assert not plan.required_missing()
    assert ("raid_presuspend" in ok) == HAS_PRESUSPEND[rel]
    # every probe attaches to the plain name: no .isra/.constprop clone on these builds
    assert all(p.symbol == p.spec.func for p in plan.attachable())
    # md_wakeup_thread: a function up to 6.1 (and in 5.10), a macro over __md_wakeup_thread
    # from 0dc76205549b (in 6.12.117 through stable, and 7.x)
    names = {ln.split()[2] for ln in (d / "kallsyms.txt").read_text().splitlines()}
    assert ("md_wakeup_thread" in names) == rel.startswith(("5.", "6.1.")), rel


def test_absent_by_design_is_one_rule_for_tui_record_and_doctor() -> None:
    from mdtrace.kernel.probes import absent_by_design

    assert absent_by_design("raid_presuspend", "6.1.0-56-amd64") == "6.9+"
    assert absent_by_design("raid_presuspend", "6.12.117+deb12-amd64") == ""
    assert absent_by_design("md_do_sync", "6.1.0-56-amd64") == ""
    assert absent_by_design("raid_presuspend", "") == ""      # unknown kernel: say missing
