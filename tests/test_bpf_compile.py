"""Every mdtrace/bpf/*.c compiles with bcc against real kernel headers (Debian 6.12.117),
with offsets computed from the REAL BTF captured in the 6.1 and 6.12 guests; the programs then
pass this host kernel's verifier (load, not attach)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bcc_util import bcc_or_skip, env, headers_env_or_skip

from mdtrace.kernel.offsets import BtfSet, compute_offsets
from mdtrace.kernel.probes import GROUP_FILES, SPECS
from mdtrace.sources.bcc_source import bpf_dir, cflags_for, program_text

pytestmark = pytest.mark.bcc

DATA = Path(__file__).parent / "data" / "btf"
# 5.10 and 7.2: BTF made offline from the Debian packages (5.10's module BTF from its -dbg
# DWARF, dwarf/): their offsets, flag bits and prototypes (UNREGISTER_NARGS,
# MDDEV_SUSPEND_RETURNS_INT) go through the same C, compiled against this host's headers
KERNELS = ["5.10.0-32-amd64", "6.1.0-56-amd64", "6.12.117+deb12-amd64", "7.2.13+deb14-amd64"]
# the diagnose fallback's probe is compiled alone, not with common.h (tests/test_bpf_state.py)
STANDALONE = {"mddev_state.c"}
FILES = sorted(p.name for p in bpf_dir().glob("*.c") if p.name not in STANDALONE)


def _offsets(release: str):  # noqa: ANN202
    d = DATA / release
    if not (d / "md_mod.btf.zst").exists() and not (d / "dwarf" / "md_mod.btf.zst").exists():
        pytest.skip(f"no captured BTF for {release} in {d} (mdtrace vm: capture_btf.sh)")
    return compute_offsets(BtfSet.from_dir(d, fallback=[d / "dwarf"]))


def test_every_bpf_file_is_covered_by_the_plan() -> None:
    assert set(FILES) == set(GROUP_FILES.values())


@pytest.mark.parametrize("name", FILES)
def test_each_file_compiles_alone(name: str) -> None:
    bcc = bcc_or_skip()
    extra = headers_env_or_skip()
    off = _offsets("6.12.117+deb12-amd64")
    flags = cflags_for(off, locks=name == "locks.c", locks_full=name == "locks.c")
    with env(extra):
        b = bcc.BPF(text=program_text([name]), cflags=flags)
    b.cleanup()


@pytest.mark.parametrize("release", KERNELS)
def test_all_programs_compile_and_verify(release: str) -> None:
    bcc = bcc_or_skip()
    extra = headers_env_or_skip()
    off = _offsets(release)
    with env(extra):
        b = bcc.BPF(text=program_text(FILES), cflags=cflags_for(off, locks=True,
                                                                 locks_full=True))
    try:
        names = {fn for s in SPECS for fn in (s.entry, s.exit) if fn}
        for fn in sorted(names):
            b.load_func(fn.encode(), bcc.BPF.KPROBE)      # runs the kernel verifier
        b.load_func(b"io_scan", bcc.BPF.PERF_EVENT)
    finally:
        b.cleanup()
