"""Stale bcc kprobe events of dead processes are found and removed; live ones stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdtrace.kernel.environment import Paths, check_stale_probes
from mdtrace.kernel.tracefs import remove_stale, stale_bcc_events

EVENTS = """\
r64:kprobes/r_md_do_sync_bcc_4242 md_do_sync
r64:kprobes/r_raid5_make_request_bcc_4242 raid5_make_request
r64:kprobes/r_md_do_sync_bcc_77 md_do_sync
p:kprobes/my_own_probe do_sys_open
"""


def test_stale_events_are_those_of_dead_pids() -> None:
    alive = {77}.__contains__
    assert stale_bcc_events(EVENTS, alive) == ["kprobes/r_md_do_sync_bcc_4242",
                                               "kprobes/r_raid5_make_request_bcc_4242"]
    assert stale_bcc_events(EVENTS, lambda pid: True) == []
    assert stale_bcc_events("", lambda pid: False) == []


def test_remove_writes_one_delete_per_stale_event(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from mdtrace.kernel import tracefs

    tr = tmp_path / "sys" / "kernel" / "tracing"
    tr.mkdir(parents=True)
    (tr / "kprobe_events").write_text(EVENTS)
    opened: list[int] = []
    written: list[bytes] = []
    real_open = os.open

    def spy_open(path, flags, *a):  # noqa: ANN001, ANN002, ANN202
        opened.append(flags)
        return real_open(path, flags, *a)

    monkeypatch.setattr(tracefs.os, "open", spy_open)
    monkeypatch.setattr(tracefs.os, "write", lambda fd, b: written.append(b) or len(b))
    removed, failed = remove_stale(tmp_path / "sys", alive=lambda pid: pid == 77)
    assert failed == [] and len(removed) == 2
    assert written == [b"-:kprobes/r_md_do_sync_bcc_4242\n",
                       b"-:kprobes/r_raid5_make_request_bcc_4242\n"]
    # never O_TRUNC (it would delete every kprobe event) nor append mode (tracefs refuses
    # the seek to the end with EINVAL: seen on the 6.1 guest)
    assert all(f & os.O_TRUNC == 0 and f & os.O_APPEND == 0 for f in opened)


def test_doctor_reports_stale_events(tmp_path: Path) -> None:
    tr = tmp_path / "sys" / "kernel" / "debug" / "tracing"
    tr.mkdir(parents=True)
    (tr / "kprobe_events").write_text("r64:kprobes/r_md_do_sync_bcc_999999999 md_do_sync\n")
    c = check_stale_probes(Paths(sys=tmp_path / "sys"))
    assert not c.ok and not c.blocking and "r_md_do_sync_bcc_999999999" in c.detail
    assert "-:kprobes/r_md_do_sync_bcc_999999999" in c.fix
    assert check_stale_probes(Paths(sys=tmp_path / "none")).ok
