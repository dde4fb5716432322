"""Read a trace ahead in a second process: decompress, split and skim there, decode and run
the engine here.

The report's hot loop is single-threaded Python; reading is about 40 % of its work and needs
nothing from the engine but its clock, which the skimmer can replay exactly from the lines'
timestamps -- as long as every line is one the engine will see.  So the worker checks each
skimmed block the way the reader will (its copied-out lines must decode), and at the first
block where that fails or a line could not be parsed (the replayed clock would no longer be
exact) it stops skimming and sends raw blocks: the reader then skims them itself with the
engine's real clock, or reads them line by line, exactly as without read-ahead.

Messages, in order: ``("blk", start_line, n_lines, n_skimmed, n_out, out, ops, last_ts)``,
``("raw", start_line, block)``, and last ``("end", start_line, leftover, skipping, fault,
error)`` with the incomplete tail (and whether it is an overlong line being dropped), the
stream's fault (why it ended early) and the read error (what, line, hint) if reading
failed; or ``("fail", text)`` if the worker itself failed.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mdtrace import skim
from mdtrace.errors import MdtraceError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from mdtrace.trace import TraceReader

MIN_BYTES = 4 << 20      # below this a trace is read in well under a second anyway


def wanted(path: str, prefetch: bool | None) -> bool:
    """Whether to read ``path`` ahead: as asked, else for big files on a multi-core machine
    where fork exists (MDTRACE_PREFETCH=0 turns it off)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    if prefetch is not None:
        return prefetch
    if os.environ.get("MDTRACE_PREFETCH", "1") == "0" or (os.cpu_count() or 1) < 2:
        return False
    try:
        return os.path.getsize(path) >= MIN_BYTES
    except OSError:
        return False


class Prefetch:
    """The worker process and the receiving end of its pipe."""

    def __init__(self, reader: TraceReader, tick_ns: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self._rx, tx = ctx.Pipe(duplex=False)
        # fork: the child continues the reader (open stream, decompressor, buffered bytes)
        self._proc = ctx.Process(target=_work, args=(reader, tx, tick_ns), daemon=True,
                                 name="mdtrace-prefetch")
        self._proc.start()
        tx.close()
        self._path = reader.path

    def messages(self) -> Iterator[tuple[Any, ...]]:
        while True:
            try:
                msg = self._rx.recv()
            except EOFError:
                raise MdtraceError(f"{self._path}: the read-ahead process ended unexpectedly "
                                   "(set MDTRACE_PREFETCH=0 to read without it)") from None
            if msg[0] == "fail":
                raise MdtraceError(f"{self._path}: the read-ahead process failed: {msg[1]} "
                                   "(set MDTRACE_PREFETCH=0 to read without it)")
            yield msg
            if msg[0] == "end":
                return

    def close(self) -> None:
        self._rx.close()
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join(5)


def start(reader: TraceReader, tick_ns: int) -> Prefetch:
    return Prefetch(reader, tick_ns)


def _work(reader: TraceReader, tx: Connection, tick_ns: int) -> None:
    try:
        templates: dict[bytes, Any] = {}
        now = last_tick = 0          # a fresh engine's clock
        raw = False
        for start, block, err in reader.raw_blocks():
            if err is not None or not block:
                why = None if err is None else (err.what, err.line, err.hint)
                tx.send(("end", start, *reader.tail_state(), why))
                return
            if not raw:
                out, ops, skimmed, now, last_tick, blind, nlines, n_out = skim.scan(
                    templates, block, now, last_tick, tick_ns)
                reader.at_line(start + nlines)
                if not blind and reader.decodes(out, n_out):
                    tx.send(("blk", start, nlines, skimmed, n_out, out, ops,
                             skim.last_line_ts(block)))
                    continue
                raw = True
            reader.at_line(start + block.count(b"\n"))
            tx.send(("raw", start, block))
    except BaseException as exc:  # noqa: BLE001 - reported to the reader, which raises it
        try:
            tx.send(("fail", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
    finally:
        tx.close()
