"""Flag tables: the 6.11 reorder must decode differently, and round-trip raw<->canonical."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdtrace.kernel.btf import load_blob
from mdtrace.kernel.flags import (
    FlagTable,
    Recovery,
    fallback_tables,
    parse_release,
    recovery_names,
    reshape_interrupted,
)
from mdtrace.kernel.offsets import flag_table_for


def test_same_raw_word_decodes_differently_across_6_11() -> None:
    raw = 0b1  # bit 0: RUNNING before 6.11, NEEDED from 6.11
    assert recovery_names(FlagTable.for_release("6.1.0-56-amd64").recovery_canon(raw)) == [
        "RUNNING"]
    assert recovery_names(FlagTable.for_release("6.12.117+deb12-amd64").recovery_canon(raw)) == [
        "NEEDED"]


@pytest.mark.parametrize("release", ["5.10.0-32-amd64", "6.1.0-56-amd64", "6.8.0",
                                     "6.12.117+deb12-amd64", "6.18.1", "7.2.13+deb14-amd64"])
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
    rec, _ = fallback_tables("7.2.13+deb14-amd64")
    assert "ERROR" not in rec and rec["RESHAPE"] == 10 and rec["LAZY_RECOVER"] == 12


BTF = Path(__file__).parent / "data" / "btf"


@pytest.mark.parametrize("rel", ["6.12.117+deb12-amd64", "7.2.13+deb14-amd64"])
def test_for_release_prefers_btf(rel: str) -> None:
    """With BTF at hand the table is the kernel's, not the release's guess: 6.12.117 has
    LAZY_RECOVER (a stable backport) that the 6.11 fallback table lacks."""
    t = flag_table_for(rel, btf_root=str(BTF / rel))
    vm = load_blob(BTF / rel / "vmlinux.btf.zst")
    enum = load_blob(BTF / rel / "md_mod.btf.zst", base=vm).enum("recovery_flags")
    assert enum is not None
    assert t.recovery == {k.removeprefix("MD_RECOVERY_").removeprefix("MD_"): v
                          for k, v in enum.items()}
    assert "LAZY_RECOVER" in t.recovery
    if rel.startswith("6.12"):
        assert "LAZY_RECOVER" not in fallback_tables(rel)[0]


def test_for_release_of_another_kernel_uses_the_table(tmp_path: Path) -> None:
    # not the running kernel and no btf_root: the per-version table, even if BTF is broken
    assert flag_table_for("7.2.13+deb14-amd64").recovery == \
        fallback_tables("7.2.13+deb14-amd64")[0]
    (tmp_path / "vmlinux").write_bytes(b"junk")
    assert flag_table_for("6.1.0-56-amd64", btf_root=str(tmp_path)).recovery == \
        fallback_tables("6.1.0-56-amd64")[0]


def test_reshape_interrupted_mirrors_kernel() -> None:
    assert not reshape_interrupted(Recovery.RUNNING, None)
    assert not reshape_interrupted(Recovery.RUNNING | Recovery.RESHAPE, 1024)
    assert reshape_interrupted(Recovery.NONE, 1024)
    for extra in (Recovery.WAIT, Recovery.INTR, Recovery.FROZEN):
        assert reshape_interrupted(Recovery.RUNNING | extra, 0)
