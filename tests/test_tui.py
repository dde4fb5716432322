"""TUI tests: Textual pilot over hand-made snapshots shaped like the scenario outcomes
(healthy resync, F7 stuck reshape IO, F1 DONE-not-reaped), plus pure render checks."""

from __future__ import annotations

import asyncio

from textual.widgets import DataTable, RichLog, Static

from mdtrace.engine.model import (
    ArrayView,
    Finding,
    IoWaitView,
    Lifecycle,
    LockEdgeView,
    Severity,
    Snapshot,
    TracerHealth,
)
from mdtrace.events import Event
from mdtrace.frontends.tui import render
from mdtrace.frontends.tui.app import DetailScreen, HelpScreen, TopApp


def healthy_resync() -> Snapshot:
    a = ArrayView(name="md0", level="raid1", lifecycle=Lifecycle.SYNCING,
                  recovery=["RUNNING", "SYNC"], sync_action="resync", progress_done=500,
                  progress_total=1000, speed_sectors_per_s=2048 * 10, eta_s=125.0,
                  history=[(1_000_000_000, "needed"), (1_200_000_000, "running"),
                           (1_300_000_000, "syncing")])
    return Snapshot(now_ns=2_000_000_000, arrays={"md0": a}, findings=[],
                    health=TracerHealth(mode="replay", kernel="6.12", events_total=42))


def f7_stuck_reshape() -> Snapshot:
    io = IoWaitView(io_id="io1", tid=321, comm="fio", sector=4096, sectors=8, rw="W",
                    since_ns=1_000_000_000, wait_ns=31_000_000_000, mode="reshape_wait",
                    across_reshape=True)
    a = ArrayView(name="md5", level="raid5", lifecycle=Lifecycle.IDLE, recovery=["FROZEN"],
                  sync_action="frozen", reshape_pos=123456, blocked_io=[io], oldest_wait_s=31.0,
                  findings_active=["F7"])
    f = Finding(code="F7", title="IO waits on a frozen reshape", array="md5",
                start_ns=1_000_000_000, severity=Severity.CRITICAL,
                explanation="write waits in raid5 make_request for a reshape that is frozen",
                remedy="echo idle > /sys/block/md5/md/sync_action", fix="abc123 (6.9)")
    lock = LockEdgeView(first="reconfig_mutex", second="suspend_mutex", count=3, example_tid=7)
    return Snapshot(now_ns=32_000_000_000, arrays={"md5": a}, findings=[f],
                    health=TracerHealth(mode="replay", events_total=9, lost_total=4,
                                        probes={"raid5_wait": {"attached": False}}),
                    lock_order=[lock])


def f1_done_not_reaped() -> Snapshot:
    a = ArrayView(name="dm-3", kind="dm-raid", dm_name="vg-lv", level="raid1",
                  lifecycle=Lifecycle.DONE, recovery=["DONE", "RUNNING"], suspended=1,
                  dm_suspended=True, findings_active=["F1"])
    b = ArrayView(name="md1", level="raid1", lifecycle=Lifecycle.IDLE)
    f = Finding(code="F1", title="sync thread DONE but never reaped while suspended",
                array="dm-3", start_ns=5, severity=Severity.CRITICAL,
                explanation="mddev suspended with MD_RECOVERY_DONE set; md_check_recovery skips",
                remedy="dmsetup resume vg-lv")
    return Snapshot(now_ns=10, arrays={"dm-3": a, "md1": b}, findings=[f],
                    health=TracerHealth(mode="sysfs"))


class Feed:
    """Stands in for the Feeder: a fixed snapshot plus some events, counting polls."""

    def __init__(self, snap: Snapshot, events: list[Event] | None = None) -> None:
        self.snap = snap
        self.events = events or []
        self.polls = 0

    def __call__(self, since: int) -> tuple[Snapshot, list[Event], int]:
        self.polls += 1
        return self.snap, self.events[since:], len(self.events)


def run_app(feed: Feed, body) -> None:  # noqa: ANN001 - async callback
    async def go() -> None:
        app = TopApp(feed, interval=0.05)
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause()
            await body(app, pilot)
    asyncio.run(go())


def cells(app: TopApp) -> list[list[str]]:
    t = app.query_one("#arrays", DataTable)
    return [[str(c) for c in t.get_row_at(i)] for i in range(t.row_count)]


def text(app: TopApp, sel: str) -> str:
    return str(app.query_one(sel, Static).render())


def test_healthy_resync_row_and_no_findings() -> None:
    async def body(app: TopApp, pilot) -> None:  # noqa: ANN001
        rows = cells(app)
        assert len(rows) == 1
        name, kind, level, state, rec, action, prog, reshape, blocked = rows[0]
        assert (name, kind, level, state, action) == ("md0", "md", "raid1", "syncing", "resync")
        assert rec == "RUNNING,SYNC"
        assert "50.0%" in prog and "10.0MB/s" in prog and "eta 2m05s" in prog
        assert blocked == "" and reshape == ""
        assert "No findings." in text(app, "#findings")
        assert text(app, "#degraded") == ""
    run_app(Feed(healthy_resync()), body)


def test_f7_row_findings_degraded_and_detail() -> None:
    async def body(app: TopApp, pilot) -> None:  # noqa: ANN001
        row = cells(app)[0]
        assert row[0] == "md5" and row[4] == "FROZEN" and row[7] == "123456"
        assert row[8] == "1 oldest 31.0s"
        f = text(app, "#findings")
        assert "F7 CRITICAL md5" in f and "ACTIVE" in f
        assert "echo idle > /sys/block/md5/md/sync_action" in f and "abc123" in f
        d = text(app, "#degraded")
        assert "4 events lost" in d and "probes missing: raid5_wait" in d
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        det = str(app.screen.query_one("#detail-text", Static).render())
        assert "reconfig_mutex -> suspend_mutex  x3" in det
        assert "fio[321] W sector 4096+8 waiting 31.0s" in det and "across reshape" in det
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, DetailScreen)
    run_app(Feed(f7_stuck_reshape()), body)


def test_f1_dm_raid_row_sysfs_banner_search() -> None:
    async def body(app: TopApp, pilot) -> None:  # noqa: ANN001
        rows = cells(app)
        assert [r[0] for r in rows] == ["dm-3 (vg-lv)", "md1"]
        assert rows[0][1] == "dm-raid" and rows[0][3] == "done" and rows[0][4] == "DONE,RUNNING"
        assert "F1 CRITICAL dm-3" in text(app, "#findings")
        assert "dmsetup resume vg-lv" in text(app, "#findings")
        assert "sysfs polling only" in text(app, "#degraded")
        await pilot.press("slash")
        await pilot.press(*"md1")
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, DetailScreen)
        assert [r[0] for r in cells(app)] == ["md1"]
        assert "No findings." in text(app, "#findings")
        await pilot.press("escape")
        await pilot.pause()
        assert len(cells(app)) == 2
    run_app(Feed(f1_done_not_reaped()), body)


def test_pause_stops_polling_and_help_and_log_filter() -> None:
    evs = [Event(ts=i * 1000, kind="progress" if i % 2 else "lock", array="md0",
                 args={"n": i}) for i in range(10)]
    feed = Feed(healthy_resync(), evs)

    async def body(app: TopApp, pilot) -> None:  # noqa: ANN001
        log = app.query_one("#log", RichLog)
        assert len(log.lines) == 10
        await pilot.press("f")
        await pilot.press(*"progress")
        await pilot.press("enter")
        await pilot.pause()
        assert len(log.lines) == 5
        await pilot.press("p")
        n = feed.polls
        await asyncio.sleep(0.3)
        assert feed.polls == n
        assert "PAUSED" in text(app, "#status")
        await pilot.press("p")
        await asyncio.sleep(0.2)
        assert feed.polls > n
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
    run_app(feed, body)


def test_render_helpers() -> None:
    assert render.progress_bar(0, 0) == ""
    assert render.progress_bar(1, 4, width=4) == "[#...]  25.0%"
    assert render.fmt_eta(3725) == "1h02m"
    assert render.fmt_eta(None) == ""
    assert render.degraded_notes(TracerHealth(mode="bcc")) == []
