"""Missed probe hits are counted (sources/bcc_misses.py) and reach health, reports and the TUI."""

from __future__ import annotations

from mdtrace.engine.core import Engine
from mdtrace.events import Event
from mdtrace.frontends.tui.render import degraded_notes
from mdtrace.sources.bcc_misses import (
    MissCounter,
    SlotVerifier,
    kretprobe_event,
    parse_kprobe_profile,
)

PROFILE = """\
  r_raid5_make_request_bcc_4242                          1523               7
  r_md_do_sync_bcc_4242                                    12               0
  r_raid5_make_request_bcc_77                              99              50
"""


def test_kretprobe_event_names_follow_bcc() -> None:
    assert kretprobe_event("raid5_make_request", 9) == "r_raid5_make_request_bcc_9"
    assert kretprobe_event("md_do_sync.cold", 9) == "r_md_do_sync_cold_bcc_9"
    assert parse_kprobe_profile(PROFILE)["r_raid5_make_request_bcc_4242"] == 7


def test_miss_counter_reports_new_misses_of_our_events_only() -> None:
    text = [PROFILE]
    mc = MissCounter({"raid5_make_request": "raid5_make_request", "md_do_sync": "md_do_sync"},
                     4242, profile=lambda: text[0])
    assert mc.poll(untracked=3) == [("raid5_make_request", "kretprobe_missed", 7),
                                    ("raid5_make_request", "io_untracked", 3)]
    assert mc.poll(untracked=3) == []
    text[0] = PROFILE.replace("  7\n", " 10\n")
    assert mc.poll(untracked=None) == [("raid5_make_request", "kretprobe_missed", 3)]


def _scan(tid: int, io_id: str = "p:1/100") -> Event:
    return Event(ts=1, kind="io_wait", array="md0", pid=0, tid=tid,
                 args={"done": False, "mode": "sleep", "io_id": io_id, "wait_ns": 2_000_000_000})


def test_a_slot_whose_task_left_the_function_is_dropped_and_cleared() -> None:
    stacks = {10: "[<0>] wait_woken+0x50/0x70\n[<0>] raid5_make_request+0x4bc/0x12e0 [raid456]\n",
              11: "[<0>] do_nanosleep+0x1/0x2\n", 12: ""}
    cleared: list[int] = []
    v = SlotVerifier(stack=stacks.get, clear=cleared.append, comm={10: "dd"}.get)
    first = _scan(10)
    assert v.keep(first) is True and first.comm == "dd"   # the scan cannot know it
    again = _scan(10)
    assert v.keep(again) is True and again.comm == "dd"
    assert v.keep(_scan(11)) is False          # back in user space: its return was missed
    assert v.keep(_scan(12)) is False          # the task is gone
    assert cleared == [11, 12] and v.stale == 2
    # the IO's own completion and the kretprobe's reports (pid set) are never second-guessed
    done = Event(ts=2, kind="io_wait", array="md0", pid=11, tid=11,
                 args={"done": True, "mode": "sleep", "io_id": "x"})
    assert v.keep(done) is True
    unreadable = SlotVerifier(stack=lambda tid: None)
    assert unreadable.keep(_scan(11)) is True


def test_misses_are_health_and_said_in_tui_and_report_notes() -> None:
    eng = Engine(kernel="6.1.0-56-amd64")
    eng.feed(Event(ts=1, kind="lost", args={"count": 4, "probe": "md_check_recovery",
                                            "cause": "ringbuf"}))
    eng.feed(Event(ts=2, kind="lost", args={"count": 2, "probe": "raid5_make_request",
                                            "cause": "kretprobe_missed"}))
    eng.feed(Event(ts=3, kind="lost", args={"count": 5, "probe": "check_recovery_enter"}))
    h = eng.snapshot().health
    assert h.lost_total == 11
    assert h.lost_by_probe["raid5_make_request:kretprobe_missed"] == 2
    summary = h.lost_summary()
    assert summary == "11 events lost (kretprobe misses 2, ring buffer overrun 9)"
    assert f"DEGRADED: {summary}" in degraded_notes(h)


def test_lost_counts_reach_every_report_format_and_the_end_record(tmp_path) -> None:  # noqa: ANN001
    import json

    from mdtrace.frontends.report import render
    from mdtrace.frontends.report.build import build_report
    from mdtrace.trace import TraceHeader, TraceWriter

    path = tmp_path / "t.jsonl.gz"
    w = TraceWriter(path, TraceHeader(kernel="6.12.117+deb12-amd64", source="bcc"))
    w.write(Event(ts=1_000, kind="lost", args={"count": 12, "probe": "check_recovery_enter",
                                               "cause": "ringbuf"}))
    w.write(Event(ts=2_000, kind="lost", args={"count": 3, "probe": "raid5_make_request",
                                               "cause": "kretprobe_missed"}))
    w.close(summary={"lost_since_start": 15})
    model = build_report(path)
    assert model.recorder_end == {"events": 2, "lost_since_start": 15}
    for fmt in ("text", "markdown", "html"):
        out = render(model, fmt)
        assert "15 events lost (kretprobe misses 3, ring buffer overrun 12)" in out, fmt
        assert "15 lost since recording started" in out, fmt
    j = json.loads(render(model, "json"))
    assert j["health"]["lost"] == 15 and j["recorder_end"]["lost_since_start"] == 15
