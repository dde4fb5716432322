"""Kernel-log evidence (issue 10/11): oops text -> kernel_log events -> F11 on the right array,
and F7 saying why the IO is stranded once the array's raid5d is dead."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from mdtrace.engine.core import Engine
from mdtrace.events import ArrayState, Event
from mdtrace.sources.kmsg import KmsgParser, parse_record, start_kmsg_reader
from mdtrace.trace import TraceHeader, TraceWriter

# the 6.12.117 guest's console (docs/kernels.md), as the kernel prints it
OOPS_612 = """\
dm-raid456: io across reshape position while reshape can't make progress
kernel BUG at mm/slub.c:550!
Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI
CPU: 1 UID: 0 PID: 951 Comm: md0_raid5 Not tainted 6.12.117+deb12-amd64 #1 Debian 6.12.117-1~deb12u1
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
RIP: 0010:__slab_free+0x152/0x2f0
Code: 48 8b 44 24 28 e9 6c ff ff ff
RSP: 0018:ffffa94c40a1bc58 EFLAGS: 00010246
Call Trace:
 <TASK>
 ? die+0x36/0x90
 ? do_trap+0xda/0x100
 kmem_cache_free+0x2d6/0x3a0
 md_end_clone_io+0x72/0xa0 [md_mod]
 ops_complete_biofill+0xb8/0x100 [raid456]
 handle_stripe+0x9c5/0x1c40 [raid456]
 raid5d+0x3e8/0x5e0 [raid456]
 md_thread+0xa2/0x190 [md_mod]
 kthread+0xcf/0x100
 ret_from_fork+0x31/0x50
 </TASK>
Modules linked in: raid456 async_raid6_recov dm_raid md_mod
---[ end trace 0000000000000000 ]---
systemd-journald[201]: unrelated line
"""

HUNG_61 = """\
INFO: task mdadm:1234 blocked for more than 120 seconds.
      Not tainted 6.1.0-56-amd64 #1 Debian 6.1.192-1
task:mdadm           state:D stack:0     pid:1234  ppid:1 flags:0x00004002
Call Trace:
 <TASK>
 __schedule+0x34d/0x9e0
 schedule+0x5a/0xd0
 stop_sync_thread+0x10a/0x1c0 [md_mod]
 </TASK>
"""

GPF_61_DD = ("general protection fault, probably for non-canonical address "
             "0xdead000000000100: 0000 [#1] PREEMPT SMP NOPTI\n") + """\
CPU: 0 PID: 777 Comm: dd Not tainted 6.1.0-56-amd64 #1 Debian 6.1.192-1
RIP: 0010:raid5_make_request+0x1a2/0xd10 [raid456]
Call Trace:
 <TASK>
 md_handle_request+0x13c/0x220 [md_mod]
 </TASK>
---[ end trace 0000000000000000 ]---
"""


def _parse(text: str, ts: int = 50_000_000_000) -> list[Event]:
    p = KmsgParser(clock=lambda: ts)
    out: list[Event] = []
    for i, line in enumerate(text.splitlines()):
        out += p.feed(1_000_000 + i, line)
    return out + p.flush()


def test_oops_is_one_event_with_task_and_reliable_frames() -> None:
    evs = _parse(OOPS_612)
    md = [e for e in evs if e.args["class"] == "md"]
    bug = [e for e in evs if e.args["class"] == "bug"]
    assert len(md) == 1 and md[0].args["text"].startswith("dm-raid456: io across")
    assert len(bug) == 1 and len(evs) == 2       # the "Oops:" line belongs to the BUG report
    a = bug[0].args
    assert a["text"] == "kernel BUG at mm/slub.c:550!" and a["task"] == "md0_raid5"
    assert bug[0].pid == 951 and a["rip"] == "__slab_free"
    assert a["frames"][:3] == ["kmem_cache_free", "md_end_clone_io [md_mod]",
                               "ops_complete_biofill [raid456]"]
    assert not any(f.startswith("die") or f.startswith("do_trap") for f in a["frames"])


def test_hung_task_and_foreign_oops_reports() -> None:
    (hung,) = _parse(HUNG_61)
    assert hung.args["class"] == "hung_task" and hung.args["task"] == "mdadm"
    assert "stop_sync_thread [md_mod]" in hung.args["frames"]
    (gpf,) = _parse(GPF_61_DD)
    assert gpf.args["class"] == "oops" and gpf.comm == "dd" and gpf.args["rip"] == \
        "raid5_make_request"


def test_parse_record_and_unreadable_log() -> None:
    assert parse_record(b"2,339,5140900,-;kernel BUG at mm/slub.c:550!\n SUBSYSTEM=x\n") == \
        (5140900, "kernel BUG at mm/slub.c:550!")
    assert parse_record(b"garbage") is None
    import threading
    warned: list[str] = []
    assert start_kmsg_reader(threading.Event(), lambda e: None, path="/nonexistent/kmsg",
                             warn=warned.append) is None
    assert warned and "/nonexistent/kmsg" in warned[0] and "not traced" in warned[0]


def _reshape_ro_io(kernel: str, *, name: str = "md0", dm: str = "",
                   tid: int = 951) -> tuple[Engine, list[Event]]:
    """An md raid5 reshape made read-only with a read blocked across its position."""
    eng = Engine(kernel=kernel)
    st = ArrayState(sync_thread=False, ro=1, reshape_pos=4096, rec=0, mdf=0)
    evs = [Event(ts=1_000_000_000, kind="check_recovery_enter", array=name, dm_name=dm,
                 tid=tid, state=st),
           Event(ts=2_000_000_000, kind="io_wait", array=name, dm_name=dm, tid=800, comm="dd",
                 state=st, args={"sector": 4000, "sectors": 2048, "rw": "R",
                                 "wait_ns": 9_000_000_000, "done": False, "mode": "requeue",
                                 "io_id": "x1"})]
    return eng, evs


def test_dead_raid5d_is_f11_and_f7_says_why() -> None:
    eng, evs = _reshape_ro_io("6.12.117+deb12-amd64")
    for ev in evs + _parse(OOPS_612, ts=20_000_000_000):
        eng.feed(ev)
    eng.advance(30_000_000_000)
    f11 = [f for f in eng.findings if f.code == "F11"]
    assert len(f11) == 1 and f11[0].array == "md0" and f11[0].active
    f = f11[0]
    assert f.details["thread"] == "md0_raid5" and f.details["role"] == "raid5"
    assert "reboot" in f.remedy and "md_end_clone_io" in f.explanation
    assert f.fix.startswith("418b3e64e445")
    assert f.evidence and f.evidence[0].kind == "kernel_log"
    assert eng.snapshot().arrays["md0"].findings_active.count("F11") == 1
    from mdtrace.engine.iowait import blocked_reason
    assert blocked_reason(eng._arrays["md0"]) == "md_thread_dead"   # noqa: SLF001


def test_known_fix_only_on_kernels_that_lack_it() -> None:
    from mdtrace.engine.detectors.thread_dead import known_fix
    frames = ("kmem_cache_free", "md_end_clone_io [md_mod]")
    assert known_fix(frames, "6.12.117+deb12-amd64").startswith("418b3e64e445")
    assert known_fix(frames, "7.2.13+deb14-amd64") == ""
    assert known_fix(frames, "6.1.0-56-amd64") == ""
    assert known_fix(("raid5d",), "6.12.117+deb12-amd64") == ""


def test_dm_raid_thread_found_by_pid_or_as_the_only_dm_raid_array() -> None:
    oops = OOPS_612.replace("Comm: md0_raid5", "Comm: mdX_raid5")
    eng, evs = _reshape_ro_io("6.12.117+deb12-amd64", name="dm-6", dm="vg-lv", tid=951)
    eng.feed(Event(ts=500_000_000, kind="check_recovery_enter", array="md3", tid=10,
                   state=ArrayState(rec=0, mdf=0)))
    for ev in evs + _parse(oops, ts=20_000_000_000):
        eng.feed(ev)
    assert [(f.code, f.array) for f in eng.findings if f.code == "F11"] == [("F11", "dm-6")]
    # pid unknown to the trace: still the only dm-raid array
    eng2, evs2 = _reshape_ro_io("6.12.117+deb12-amd64", name="dm-6", dm="vg-lv", tid=5)
    for ev in evs2 + _parse(oops, ts=20_000_000_000):
        eng2.feed(ev)
    assert [f.array for f in eng2.findings if f.code == "F11"] == ["dm-6"]


def test_no_f11_for_hung_tasks_foreign_oopses_or_unknown_arrays() -> None:
    eng, evs = _reshape_ro_io("6.1.0-56-amd64")
    for ev in evs + _parse(HUNG_61 + GPF_61_DD, ts=20_000_000_000):
        eng.feed(ev)
    assert not [f for f in eng.findings if f.code == "F11"]
    eng3 = Engine(kernel="6.12.117+deb12-amd64")
    for ev in _parse(OOPS_612.replace("md0_raid5", "md7_raid5")):
        eng3.feed(ev)
    assert not eng3.findings
    assert any("md7_raid5" in w for w in eng3.snapshot().health.warnings)


def test_report_of_a_trace_with_the_oops(tmp_path: Path) -> None:
    """Through the trace file and the CLI, every format: the event survives the reader."""
    eng, evs = _reshape_ro_io("6.12.117+deb12-amd64")
    trace = tmp_path / "oops.jsonl.gz"
    with TraceWriter(trace, TraceHeader(kernel="6.12.117+deb12-amd64", source="test")) as w:
        for ev in evs + _parse(OOPS_612, ts=20_000_000_000):
            w.write(ev)
    assert b"kernel_log" in gzip.decompress(trace.read_bytes())
    run = [sys.executable, "-m", "mdtrace.cli", "report"]
    res = subprocess.run([*run, "--format", "json", str(trace)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    codes = {f["code"]: f for f in json.loads(res.stdout)["findings"]}
    assert codes["F11"]["array"] == "md0" and codes["F11"]["details"]["thread"] == "md0_raid5"
    for fmt in ("text", "markdown", "html"):
        res = subprocess.run([*run, "--format", fmt, str(trace)], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0 and "F11" in res.stdout, (fmt, res.stderr[-500:])
