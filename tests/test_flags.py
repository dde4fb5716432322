"""Flag tables: the 6.11 reorder must decode differently, and round-trip raw<->canonical."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdtrace.kernel.flags import (
    FlagTable,
    Recovery,
    fallback_tables,
    parse_release,
    recovery_names,
    reshape_interrupted,
)


def test_same_raw_word_decodes_differently_across_6_11() -> None:
    raw = 0b1  # bit 0: RUNNING before 6.11, NEEDED from 6.11
    assert recovery_names(FlagTable.for_release("6.1.0-56-amd64").recovery_canon(raw)) == [
        "RUNNING"]
    assert recovery_names(FlagTable.for_release("6.12.117+deb12-amd64").recovery_canon(raw)) == [
        "NEEDED"]


@pytest.mark.parametrize("release", ["6.1.0-56-amd64", "6.8.0", "6.12.117+deb12-amd64", "6.18.1"])
@given(canon=st.integers(min_value=0, max_value=(1 << 13) - 1))
def test_round_trip(release: str, canon: int) -> None:
    table = FlagTable.for_release(release)
    known = 0
    for name in table.recovery:
        known |= Recovery[name]
    assert table.recovery_canon(table.recovery_raw(canon)) == canon & known


def test_btf_enumerator_names_are_stripped() -> None:
    t = FlagTable.from_enums({"MD_RECOVERY_RUNNING": 1, "MD_RECOVERY_NEEDED": 0},
                             {"MD_BROKEN": 9})
    assert t.recovery == {"RUNNING": 1, "NEEDED": 0}
    assert t.mddev == {"BROKEN": 9}


def test_release_parsing_and_tables() -> None:
    assert parse_release("6.12.117+deb12-amd64") == (6, 12)
    assert parse_release("garbage") == (0, 0)
    rec, mdf = fallback_tables("6.1.0-56-amd64")
    assert rec["WAIT"] == 11 and mdf["DELETED"] == 12
    rec, mdf = fallback_tables("6.12.117")
    assert rec["WAIT"] == 5 and mdf["DELETED"] == 10
    assert "LAZY_RECOVER" in fallback_tables("6.18.0")[0]


def test_reshape_interrupted_mirrors_kernel() -> None:
    assert not reshape_interrupted(Recovery.RUNNING, None)
    assert not reshape_interrupted(Recovery.RUNNING | Recovery.RESHAPE, 1024)
    assert reshape_interrupted(Recovery.NONE, 1024)
    for extra in (Recovery.WAIT, Recovery.INTR, Recovery.FROZEN):
        assert reshape_interrupted(Recovery.RUNNING | extra, 0)
