"""The Textual application behind `mdtrace top`.

It only renders: a ``poll(since) -> (Snapshot, new events, seq)`` callable supplies data (the
Feeder in production, hand-made snapshots in tests), so the UI never touches BPF or the engine.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, RichLog, Static

from mdtrace.engine.model import Snapshot
from mdtrace.events import Event
from mdtrace.frontends.tui import render

# At full replay speed only the newest lines can be read anyway; writing more costs frame time.
LOG_PER_FRAME = 120

Poll = Callable[[int], tuple[Snapshot, list[Event], int]]

HELP = """mdtrace top - keys

  q        quit (terminal restored)
  p        pause / resume screen updates (data keeps flowing underneath)
  /        search: show only arrays and findings whose text contains the term
  f        event-log filter: only events whose kind/array/args contain the term
  enter    detail view of the selected array (state history, lock graph, blocked IO)
  escape   clear search and filter / close a view
  ?        this help

Rows: lifecycle state (idle/needed/running/syncing/done/reaped), decoded MD_RECOVERY_* flags,
sync action, progress with speed and ETA, reshape position, blocked IO count + oldest wait.
A DEGRADED line means the picture is incomplete (sysfs only, lost events, probes missing).
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_screen", "Close")]

    def compose(self) -> ComposeResult:
        yield VerticalScroll(Static(HELP, id="help-text"), id="help-box")

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)


class DetailScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss_screen", "Close")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def compose(self) -> ComposeResult:
        yield VerticalScroll(Static(self._text, id="detail-text", markup=False), id="detail-box")

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)


class TopApp(App[None]):
    """Array table, degraded-mode banner, findings pane, event log."""

    TITLE = "mdtrace top"
    CSS = """
    #status { height: 1; background: $primary-background; }
    #degraded { color: $error; text-style: bold; height: auto; }
    #info { color: $text-muted; height: auto; }
    #arrays { height: auto; max-height: 40%; }
    #findings { height: auto; max-height: 35%; border-top: solid $secondary; }
    #log { height: 1fr; border-top: solid $secondary; }
    #prompt { display: none; }
    #prompt.visible { display: block; }
    HelpScreen, DetailScreen { align: center middle; }
    #help-box, #detail-box { width: 90%; height: 90%; border: round $accent;
                             background: $surface; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("p", "pause", "Pause"),
        Binding("slash", "search", "Search"),
        Binding("f", "filter", "Filter log"),
        Binding("enter", "detail", "Detail"),
        Binding("escape", "clear", "Clear", show=False),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self, poll: Poll, *, interval: float = 0.2,
                 is_done: Callable[[], bool] | None = None,
                 frame_lock: AbstractContextManager[object] | None = None,
                 notes: list[str] | None = None) -> None:
        super().__init__()
        self._notes = list(notes or [])  # start-up warnings, e.g. "fell back to sysfs"
        # Held across poll + draw: a full-speed feeder thread otherwise competes for the GIL
        # and stretches a 4 ms frame past 100 ms.
        self._frame_lock = frame_lock or nullcontext()
        self._poll = poll
        self._interval = interval
        self._is_done = is_done or (lambda: False)
        self._seq = 0
        self._paused = False
        self._search = ""
        self._filter = ""
        self._prompt_for = ""
        self._events: deque[Event] = deque(maxlen=2000)
        self.snapshot: Snapshot | None = None
        self.frame_times: list[float] = []
        self._row_names: list[str] = []
        # One clock: seconds since the trace start.  A Feeder knows its first event (a fast
        # replay may have dropped it from the log before the first frame); else the first
        # event this UI sees (a live session: its start).
        self._t0: int | None = None
        feeder = getattr(poll, "__self__", None)
        self._origin: Callable[[], int | None] = lambda: getattr(feeder, "first_ts", None)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("", id="status", markup=False)
            yield Static("", id="degraded", markup=False)
            yield Static("", id="info", markup=False)
            yield DataTable(id="arrays", cursor_type="row", zebra_stripes=True)
            yield Static("", id="findings", markup=False)
            yield RichLog(id="log", max_lines=2000, markup=False, wrap=False)
            yield Input(placeholder="", id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        # Keep references: while a modal is up, App.query_one searches the modal, not us.
        self._w_status = self.query_one("#status", Static)
        self._w_degraded = self.query_one("#degraded", Static)
        self._w_info = self.query_one("#info", Static)
        self._w_table = self.query_one("#arrays", DataTable)
        self._w_findings = self.query_one("#findings", Static)
        self._w_log = self.query_one("#log", RichLog)
        self._w_prompt = self.query_one("#prompt", Input)
        table = self._w_table
        for col in render.ARRAY_COLUMNS:
            table.add_column(col, key=col)
        self.refresh_data()
        self.set_interval(self._interval, self.refresh_data)

    # -- data ---------------------------------------------------------------------------------
    def refresh_data(self) -> None:
        """Poll once and redraw (skipped while paused); the frame time is recorded for bench."""
        if self._paused:
            return
        t0 = time.perf_counter()
        with self._frame_lock:
            snap, new, self._seq = self._poll(self._seq)
            if self._t0 is None:
                self._t0 = self._origin() or (new[0].ts if new else None)
            self.snapshot = snap
            self._draw(snap, new)
        self.frame_times.append(time.perf_counter() - t0)

    def _matches(self, text: str) -> bool:
        return not self._search or self._search.lower() in text.lower()

    def _draw(self, snap: Snapshot, new: list[Event]) -> None:
        done = " | trace finished" if self._is_done() else ""
        self._w_status.update(
            render.status_line(snap, self._paused) + done
            + (f" | search '{self._search}'" if self._search else "")
            + (f" | log filter '{self._filter}'" if self._filter else ""))
        self._w_degraded.update(
            "\n".join(self._notes + render.degraded_notes(snap.health)))
        self._w_info.update("\n".join(render.info_notes(snap.health)))
        table = self._w_table
        rows = [(n, render.array_row(a)) for n, a in sorted(snap.arrays.items())]
        rows = [(n, r) for n, r in rows if self._matches(" ".join(r))]
        names = [n for n, _ in rows]
        cursor = table.cursor_row
        if names != self._row_names:
            table.clear()
            for n, r in rows:
                table.add_row(*r, key=n)
            self._row_names = names
            if names:
                table.move_cursor(row=min(cursor, len(names) - 1))
        else:
            for n, r in rows:
                for col, val in zip(render.ARRAY_COLUMNS, r):
                    # widen: a column sized while empty would cut '1 oldest 7.0s' to '1 oldest 7'
                    table.update_cell(n, col, val, update_width=True)
        lines: list[str] = []
        for f in snap.findings:
            fl = render.finding_lines(f, self._t0 or 0, snap.now_ns)
            if self._matches("\n".join(fl)):
                lines.extend(fl)
        self._w_findings.update(
            "\n".join(lines) if lines else "No findings.")
        log = self._w_log
        for ev in new[-LOG_PER_FRAME:]:
            self._events.append(ev)
            line = render.event_line(ev, self._t0 or 0)
            if self._log_match(line):
                log.write(line)

    def _log_match(self, line: str) -> bool:
        return not self._filter or self._filter.lower() in line.lower()

    def _rewrite_log(self) -> None:
        log = self._w_log
        log.clear()
        for ev in self._events:
            line = render.event_line(ev, self._t0 or 0)
            if self._log_match(line):
                log.write(line)

    # -- actions ------------------------------------------------------------------------------
    def action_pause(self) -> None:
        self._paused = not self._paused
        if self.snapshot is not None:
            self._w_status.update(
                render.status_line(self.snapshot, self._paused))

    def _open_prompt(self, purpose: str, placeholder: str) -> None:
        self._prompt_for = purpose
        box = self._w_prompt
        box.placeholder = placeholder
        box.value = self._search if purpose == "search" else self._filter
        box.add_class("visible")
        box.focus()

    def action_search(self) -> None:
        self._open_prompt("search", "search arrays/findings (enter to apply, empty clears)")

    def action_filter(self) -> None:
        self._open_prompt("filter", "filter event log (kind, array, args; empty clears)")

    def on_input_submitted(self, message: Input.Submitted) -> None:
        box = message.input
        if self._prompt_for == "search":
            self._search = message.value.strip()
        else:
            self._filter = message.value.strip()
            self._rewrite_log()
        box.remove_class("visible")
        self._w_table.focus()
        self._row_names = []  # force a rebuild with the new search
        if self.snapshot is not None:
            self._draw(self.snapshot, [])

    def action_clear(self) -> None:
        self._search = self._filter = ""
        self._w_prompt.remove_class("visible")
        self._w_table.focus()
        self._row_names = []
        self._rewrite_log()
        if self.snapshot is not None:
            self._draw(self.snapshot, [])

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def selected_array(self) -> str | None:
        table = self._w_table
        if not self._row_names:
            return None
        return self._row_names[min(table.cursor_row, len(self._row_names) - 1)]

    def action_detail(self) -> None:
        name = self.selected_array()
        if name is None or self.snapshot is None:
            return
        a = self.snapshot.arrays[name]
        lines = render.detail_lines(a, self.snapshot, self._t0 or 0)
        self.push_screen(DetailScreen("\n".join(lines)))

    def on_data_table_row_selected(self, _msg: DataTable.RowSelected) -> None:
        self.action_detail()
