"""bcc smoke test on this host: a raw tracepoint (sys_enter; kprobes do not exist here) fills
the SAME ring buffer (mdtrace/bpf/common.h: struct mdt_event, ev_new/read_state/ev_submit) and the
events come back through the SAME RingPoller + RawDecoder the md programs use."""

from __future__ import annotations

import os
import re

import pytest
from bcc_util import bcc_or_skip, env, headers_env_or_skip

from mdtrace.kernel.offsets import BtfSet, compute_offsets
from mdtrace.pointers import PointerHasher
from mdtrace.sources.bcc_decode import RawDecoder
from mdtrace.sources.bcc_source import RingPoller, cflags_for, program_text, read_lost

pytestmark = pytest.mark.bcc

SMOKE_C = b"""
RAW_TRACEPOINT_PROBE(sys_enter)
{
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET_PID || ctx->args[1] != TARGET_NR)
        return 0;
    struct mdt_event *e = ev_new(EV_CHECK_RECOVERY_ENTER);
    if (!e)
        return 0;
    /* a real kernel pointer (our task_struct) read as if it were an mddev: proves the state
     * reader is memory-safe and that the pointer comes out hashed, never raw */
    read_state(e, bpf_get_current_task());
    e->a0 = 42;
    ev_submit(ctx, e);
    return 0;
}
"""


def test_tracepoint_events_through_the_md_ring_buffer_path() -> None:
    bcc = bcc_or_skip()
    extra = headers_env_or_skip()
    from pathlib import Path

    data = Path(__file__).parent / "data" / "btf" / "6.12.117+deb12-amd64"
    if not (data / "md_mod.btf.zst").exists():
        pytest.skip("no captured guest BTF for the md offsets")
    off = compute_offsets(BtfSet.from_dir(data))
    nr_getppid = 110  # x86-64 __NR_getppid (os.getppid issues it directly)
    text = program_text([]) + SMOKE_C
    flags = cflags_for(off, ringbuf_pages=8) + [f"-DTARGET_PID={os.getpid()}",
                                                f"-DTARGET_NR={nr_getppid}"]
    with env(extra):
        b = bcc.BPF(text=text, cflags=flags)
    try:
        hasher = PointerHasher(key=b"k" * 16)
        dec = RawDecoder(off.flag_table, hasher, dm_names=lambda d: "")
        poller = RingPoller(b, dec)
        for _ in range(5):
            os.getppid()
        got = []
        for _ in range(20):
            got += poller.poll(50)
            if len(got) >= 5:
                break
        assert len(got) == 5, f"expected 5 events, got {len(got)}"
        ev = got[0]
        assert ev.kind == "check_recovery_enter"
        assert ev.pid == os.getpid() and ev.comm
        assert ev.state is not None and ev.state.rec >= 0        # canonicalised
        assert re.fullmatch(r"p:[0-9a-f]{12}", ev.mddev)          # hashed pointer
        assert len({e.mddev for e in got}) == 1                   # same task -> same token
        assert poller.short == 0 and dec.unknown == 0
        assert read_lost(b, {}) == []
    finally:
        b.cleanup()


def test_ring_buffer_overflow_is_counted_as_lost() -> None:
    """A one-page ring buffer, 300 events, nobody polling: the kernel counts what it could
    not reserve, and received + lost == sent."""
    bcc = bcc_or_skip()
    extra = headers_env_or_skip()
    from pathlib import Path

    data = Path(__file__).parent / "data" / "btf" / "6.12.117+deb12-amd64"
    if not (data / "md_mod.btf.zst").exists():
        pytest.skip("no captured guest BTF for the md offsets")
    off = compute_offsets(BtfSet.from_dir(data))
    text = program_text([]) + SMOKE_C
    flags = cflags_for(off, ringbuf_pages=1) + [f"-DTARGET_PID={os.getpid()}",
                                                "-DTARGET_NR=110"]
    with env(extra):
        b = bcc.BPF(text=text, cflags=flags)
    try:
        poller = RingPoller(b, RawDecoder(off.flag_table, PointerHasher(), dm_names=lambda d: ""))
        for _ in range(300):
            os.getppid()
        got = []
        for _ in range(5):
            got += poller.poll(20)
        seen: dict[int, int] = {}
        lost = read_lost(b, seen)
        assert lost and lost[0][0] == "check_recovery_enter"
        assert 0 < len(got) < 300
        assert len(got) + lost[0][1] == 300
        assert read_lost(b, seen) == []            # deltas, not totals
    finally:
        b.cleanup()
