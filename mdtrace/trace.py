"""Trace file format: versioned JSON Lines, optionally gzip- or zstd-compressed.

Line 1 is a header object::

    {"format": "mdtrace-trace", "version": 1, "kernel": "6.12.117+deb12-amd64",
     "source": "bcc", "created": "2026-11-24T22:00:00Z", "hash_key_id": "9f0c1a2b",
     "flag_tables": {"recovery": {"NEEDED": 0, ...}, "mddev": {...}}, "meta": {...}}

and every further line is one :class:`mdtrace.events.Event` (short keys).  Compression is
detected from the file's magic bytes, never from its name.  The reader raises
:class:`TraceError` (one line: what, where, what to do) on corrupt input, or skips bad lines
and counts them when ``skip_bad`` is set; events before a fault are always delivered first.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec
import zstandard

from mdtrace.errors import MdtraceError
from mdtrace.events import KIND_SET, Event, canonicalise
from mdtrace.kernel.flags import FlagTable

FORMAT_NAME = "mdtrace-trace"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20


class TraceError(MdtraceError):
    """A trace cannot be read.  ``str()`` is a one-line message fit for the user."""

    def __init__(self, path: str, what: str, line: int | None = None, hint: str = "") -> None:
        where = f"{path}:{line}" if line is not None else path
        msg = f"{where}: {what}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)
        self.path = path
        self.line = line
        self.what = what
        self.hint = hint


@dataclass
class TraceHeader:
    kernel: str = "unknown"
    source: str = "unknown"
    created: str = ""
    hash_key_id: str = ""
    flag_tables: FlagTable = field(default_factory=lambda: FlagTable.for_release("6.12"))
    meta: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME, "version": self.version, "kernel": self.kernel,
            "source": self.source, "created": self.created or _now_iso(),
            "hash_key_id": self.hash_key_id, "flag_tables": self.flag_tables.to_json(),
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, obj: Any, path: str) -> TraceHeader:
        if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
            raise TraceError(path, "not an mdtrace trace (first line is not an mdtrace header)",
                             1, "record one with 'mdtrace record -o FILE'")
        version = obj.get("version")
        if version not in SUPPORTED_VERSIONS:
            raise TraceError(path, f"unsupported trace format version {version!r}", 1,
                             f"this mdtrace reads version(s) {sorted(SUPPORTED_VERSIONS)}; "
                             "upgrade mdtrace")
        tables = obj.get("flag_tables")
        kernel = str(obj.get("kernel", "unknown"))
        try:
            if tables:
                rec = {str(k): int(v) for k, v in tables["recovery"].items()}
                mdf = {str(k): int(v) for k, v in tables.get("mddev", {}).items()}
                flag_tables = FlagTable(rec, mdf)
            else:
                flag_tables = FlagTable.for_release(kernel)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TraceError(path, f"malformed flag_tables in header: {exc}", 1) from None
        meta = obj.get("meta") or {}
        if not isinstance(meta, dict):
            raise TraceError(path, "malformed header: 'meta' is not an object", 1)
        return cls(kernel=kernel, source=str(obj.get("source", "unknown")),
                   created=str(obj.get("created", "")),
                   hash_key_id=str(obj.get("hash_key_id", "")),
                   flag_tables=flag_tables, meta=meta, version=int(version))


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_DECODER = msgspec.json.Decoder(Event)
_ENCODER = msgspec.json.Encoder()


def _open_raw(path: str) -> IO[bytes]:
    try:
        fh: IO[bytes] = open(path, "rb")  # noqa: SIM115 - returned to caller
    except FileNotFoundError:
        raise TraceError(path, "no such file", hint="check the path") from None
    except IsADirectoryError:
        raise TraceError(path, "is a directory, not a trace file") from None
    except PermissionError:
        raise TraceError(path, "permission denied", hint="run as a user who can read it") from None
    magic = fh.read(4)
    fh.seek(0)
    if magic[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=fh, mode="rb")
    if magic == _ZSTD_MAGIC:
        return zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True,
                                                          closefd=True)
    return fh


class TraceReader:
    """Streaming reader.  Iterate it for events; ``header`` is read on construction.

    ``skip_bad``: skip undecodable / wrong-schema lines instead of raising; their count is in
    ``bad_lines`` and the first few messages in ``errors``.  A truncated compressed stream
    always raises after delivering every complete event before the cut (unless skip_bad,
    which records it in ``errors`` and stops).
    """

    def __init__(self, path: str | os.PathLike[str], *, skip_bad: bool = False) -> None:
        self.path = str(path)
        self.skip_bad = skip_bad
        self.bad_lines = 0
        self.errors: list[str] = []
        self.events_read = 0
        self.truncated = False
        self._fh = _open_raw(self.path)
        self._buf = b""
        self._lineno = 0
        self._eof = False
        first = self._next_line()
        if first is None or not first.strip():
            self._fh.close()
            raise TraceError(self.path, "empty file, no trace header", 1 if first else None,
                             "record a trace with 'mdtrace record -o FILE'")
        try:
            obj = msgspec.json.decode(first)
        except msgspec.DecodeError:
            self._fh.close()
            raise TraceError(self.path, "not an mdtrace trace (first line is not JSON)", 1,
                             "expected a JSON Lines file written by 'mdtrace record'") from None
        try:
            self.header = TraceHeader.from_json(obj, self.path)
        except TraceError:
            self._fh.close()
            raise
        self.flag_table = self.header.flag_tables
        self._rec_cache: dict[int, int] = {}
        self._mdf_cache: dict[int, int] = {}

    # -- low level ------------------------------------------------------------------------
    def _read(self) -> bytes:
        """The next chunk of the (decompressed) stream; b"" at its end."""
        if self._eof:
            return b""
        try:
            chunk = self._fh.read(_CHUNK)
        except (EOFError, zlib.error, zstandard.ZstdError, OSError) as exc:
            self._eof = True
            self.truncated = True
            raise TraceError(self.path, f"compressed stream is corrupt or truncated ({exc})",
                             self._lineno + 1, "events before this point were read") from None
        if not chunk:
            self._eof = True
        return chunk

    def _fill(self) -> bool:
        chunk = self._read()
        if not chunk:
            return False
        self._buf += chunk
        return True

    def _next_line(self) -> bytes | None:
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line, self._buf = self._buf[:nl], self._buf[nl + 1:]
                self._lineno += 1
                return line
            if not self._fill():
                if self._buf:
                    line, self._buf = self._buf, b""
                    self._lineno += 1
                    return line
                return None

    def _bad(self, lineno: int, what: str) -> None:
        if not self.skip_bad:
            raise TraceError(self.path, what, lineno,
                             "use --skip-bad to continue past bad lines")
        self.bad_lines += 1
        if len(self.errors) < 20:
            self.errors.append(f"{self.path}:{lineno}: {what}")

    def _decode_one(self, line: bytes, lineno: int) -> Event | None:
        try:
            ev = _DECODER.decode(line)
        except msgspec.ValidationError as exc:
            self._bad(lineno, f"event does not match the trace schema: {exc}")
            return None
        except msgspec.DecodeError:
            self._bad(lineno, "line is not valid JSON (corrupt or truncated)")
            return None
        if ev.kind not in KIND_SET:
            self._bad(lineno, f"unknown event kind {ev.kind!r}")
            return None
        return canonicalise(ev, self.flag_table)

    # -- iteration ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Event]:
        try:
            for batch in self._batches():
                yield from batch
        finally:
            self._fh.close()

    def batches(self) -> Iterator[list[Event]]:
        """The same events as iterating the reader, as lists of up to a chunk's worth.

        For hot loops (report, bench): a nested ``for`` over lists avoids resuming a
        generator per event.  Errors surface exactly as when iterating.
        """
        try:
            yield from self._batches()
        finally:
            self._fh.close()

    def skim_batches(self, clock: Callable[[], tuple[int, int]], tick_ns: int,
                     prefetch: bool | None = None,
                     ) -> Iterator[tuple[list[Event], list[Any] | None]]:
        """Like :meth:`batches`, with md_check_recovery re-reads skimmed out undecoded
        (:mod:`mdtrace.skim`).  Yields ``(events, ops)``: ``ops`` None means feed ``events``
        in order; otherwise each op is None (feed the next event) or a Repeat for
        ``Engine.feed_repeats``.  ``clock()`` must return the consumer engine's
        ``Engine.clock()`` once it has consumed everything yielded before.

        ``prefetch`` (None: automatic, for big traces on a multi-core machine) reads,
        decompresses and skims ahead in a second process (:mod:`mdtrace.prefetch`).
        """
        from mdtrace import prefetch as pf_mod

        templates: dict[bytes, Any] = {}
        pf = pf_mod.start(self, tick_ns) if pf_mod.wanted(self.path, prefetch) else None
        try:
            if pf is None:
                for start, block, err in self._blocks():
                    yield from self._skim_block(templates, start, block, err, clock, tick_ns)
                return
            for msg in pf.messages():
                if msg[0] == "blk":       # skimmed and checked ahead, with an exact clock
                    _, start, nlines, skimmed, n_out, out, ops = msg
                    evs = self._decode_block(out, n_out)
                    if evs is None:
                        raise MdtraceError(f"{self.path}: internal error: a block the "
                                           "read-ahead process checked does not decode "
                                           "(set MDTRACE_PREFETCH=0 and report this)")
                    self._lineno = start + nlines
                    self.events_read += len(evs) + skimmed
                    yield evs, ops
                elif msg[0] == "raw":     # from here on the engine's clock drives skimming
                    _, start, block = msg
                    yield from self._skim_block(templates, start, block, None, clock, tick_ns)
                else:                     # "end": what the worker had left, and its error
                    _, start, self._buf, err = msg
                    self._lineno = start
                    if err is not None:
                        self.truncated = True
                        err = TraceError(self.path, err[0], err[1], err[2])
                    yield from self._skim_block(templates, start, b"", err, clock, tick_ns)
        finally:
            if pf is not None:
                pf.close()
            self._fh.close()

    def _skim_block(self, templates: dict[bytes, Any], start: int, block: bytes,
                    err: TraceError | None, clock: Callable[[], tuple[int, int]],
                    tick_ns: int) -> Iterator[tuple[list[Event], list[Any] | None]]:
        """One block of :meth:`skim_batches`, skimmed with the engine's clock."""
        from mdtrace import skim

        if err is not None or not block:   # a read error, or the final drain
            yield from ((b, None) for b in self._plain_block(start, block, err))
            return
        now, last_tick = clock()
        out, ops, skimmed, _, _, _, nlines, n_out = skim.scan(templates, block, now, last_tick,
                                                            tick_ns)
        evs = self._decode_block(out, n_out)
        if evs is None:     # a bad line: forget templates, redo the block line by line
            templates.clear()
            yield from ((b, None) for b in self._plain_block(start, block, None))
            return
        self._lineno = start + nlines
        self.events_read += len(evs) + skimmed
        yield evs, ops

    def _blocks(self) -> Iterator[tuple[int, bytes, TraceError | None]]:
        """Whole-line blocks as read: (line number before the block, block, read error)."""
        cut = self._buf.rfind(b"\n")   # the header read may have buffered lines already
        if cut >= 0:
            block, self._buf = self._buf[:cut + 1], self._buf[cut + 1:]
            yield self._lineno, block, None   # the consumer advances _lineno past it
        while True:
            try:
                chunk = self._read()
            except TraceError as exc:
                yield self._lineno, b"", exc
                return
            if not chunk:
                break
            cut = chunk.rfind(b"\n")
            if cut < 0:
                self._buf += chunk
                continue
            # one copy: the partial line left over and the chunk's whole lines
            block = b"".join((self._buf, memoryview(chunk)[:cut + 1])) if self._buf else (
                chunk if cut == len(chunk) - 1 else chunk[:cut + 1])
            self._buf = chunk[cut + 1:]
            yield self._lineno, block, None
        yield self._lineno, b"", None

    def _decode_block(self, block: bytes, nlines: int) -> list[Event] | None:
        """All of ``block`` decoded and canonicalised, or None on any bad line."""
        decode_lines = getattr(_DECODER, "decode_lines", None)
        if decode_lines is None:
            return None
        try:
            evs: list[Event] = decode_lines(block)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        if len(evs) != nlines or not self._canon_block(evs):
            return None
        return evs

    def _plain_block(self, start: int, block: bytes,
                     err: TraceError | None) -> Iterator[list[Event]]:
        """The ordinary per-line path for one block (or the final drain / a read error)."""
        if err is not None:
            yield from _as_batch(self._drain_complete())
            if not self.skip_bad:
                raise err
            self.errors.append(str(err))
            return
        if not block:
            yield from _as_batch(self._drain_complete(final=True))
            return
        nlines = block.count(b"\n")
        out: list[Event] = []
        for i, line in enumerate(block.split(b"\n")[:nlines]):
            lineno = start + i + 1
            if not line.strip():
                continue
            try:
                ev = self._decode_one(line, lineno)
            except TraceError:
                yield out   # events before the bad line first
                raise
            if ev is not None:
                self.events_read += 1
                out.append(ev)
        self._lineno = start + nlines
        yield out

    def _batches(self) -> Iterator[list[Event]]:
        """Decode whole chunks at once (fast path); fall back per line on any error."""
        decode_lines = getattr(_DECODER, "decode_lines", None)
        while True:
            try:
                more = self._fill()
            except TraceError as exc:
                # deliver complete lines first, then raise (or record and stop with skip_bad)
                yield from _as_batch(self._drain_complete())
                if not self.skip_bad:
                    raise
                self.errors.append(str(exc))
                return
            if not more:
                break
            cut = self._buf.rfind(b"\n")
            if cut < 0:
                continue
            block, self._buf = self._buf[:cut + 1], self._buf[cut + 1:]
            start = self._lineno
            nlines = block.count(b"\n")
            evs: list[Event] | None = None
            if decode_lines is not None:
                try:
                    evs = decode_lines(block)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    evs = None
                if evs is not None and (len(evs) != nlines or not self._canon_block(evs)):
                    evs = None
            if evs is not None:
                self._lineno += nlines
                self.events_read += len(evs)
                yield evs
                continue
            out: list[Event] = []
            for i, line in enumerate(block.split(b"\n")[:nlines]):
                lineno = start + i + 1
                if not line.strip():
                    continue
                try:
                    ev = self._decode_one(line, lineno)
                except TraceError:
                    yield out   # events before the bad line first
                    raise
                if ev is not None:
                    self.events_read += 1
                    out.append(ev)
            self._lineno = start + nlines
            yield out
        yield from _as_batch(self._drain_complete(final=True))

    def _canon_block(self, evs: list[Event]) -> bool:
        """Check kinds and fill canonical flag masks of a decoded block in one pass.

        Returns False (block untouched for the caller's purposes: it re-decodes per line)
        on an unknown kind.  Raw -> canonical masks are cached per reader in plain dicts:
        a trace has few distinct flag words, and a dict hit is cheaper than a method call.
        """
        kinds = KIND_SET
        rec_c, mdf_c = self._rec_cache, self._mdf_cache
        table = self.flag_table
        for ev in evs:
            if ev.kind not in kinds:
                return False
            st = ev.state
            if st is not None:
                raw = st.recovery
                c = rec_c.get(raw)
                if c is None:
                    c = rec_c[raw] = table.recovery_canon(raw)
                st.rec = c
                raw = st.flags
                c = mdf_c.get(raw)
                if c is None:
                    c = mdf_c[raw] = table.mddev_canon(raw)
                st.mdf = c
        return True

    def _drain_complete(self, final: bool = False) -> Iterator[Event]:
        """Decode what is buffered; a trailing line without newline is a truncated write."""
        data, self._buf = self._buf, b""
        lines = data.split(b"\n")
        tail = lines.pop()  # after last newline (b"" if data ends in newline)
        for line in lines:
            self._lineno += 1
            if line.strip():
                ev = self._decode_one(line, self._lineno)
                if ev is not None:
                    self.events_read += 1
                    yield ev
        if tail.strip():
            self._lineno += 1
            ev = None
            try:
                ev = _DECODER.decode(tail)
            except (msgspec.DecodeError, msgspec.ValidationError):
                ev = None
            if ev is not None and ev.kind in KIND_SET:
                self.events_read += 1
                yield canonicalise(ev, self.flag_table)
            elif final:
                self._bad(self._lineno, "last line is incomplete (trace truncated while writing?)")


def _as_batch(events: Iterator[Event]) -> Iterator[list[Event]]:
    """One list of ``events``; if producing them raises, the events before come first."""
    out: list[Event] = []
    try:
        for ev in events:
            out.append(ev)
    except TraceError:
        yield out
        raise
    yield out


def read_trace(path: str | os.PathLike[str], *, skip_bad: bool = False) -> TraceReader:
    return TraceReader(path, skip_bad=skip_bad)


class TraceWriter:
    """Streaming writer; compression chosen by suffix (.gz / .zst / plain).

    Writes are buffered and flushed every ``flush_every`` events so a crash loses little.
    """

    def __init__(self, path: str | os.PathLike[str], header: TraceHeader,
                 flush_every: int = 4096) -> None:
        self.path = str(path)
        p = Path(self.path)
        try:
            raw = open(self.path, "wb")  # noqa: SIM115
        except OSError as exc:
            raise TraceError(self.path, f"cannot create trace file: {exc.strerror}",
                             hint="check the directory exists and is writable") from None
        self._raw = raw
        self._zc: Any = None
        if p.suffix == ".gz":
            self._fh: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6)
        elif p.suffix in (".zst", ".zstd"):
            self._zc = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)
            self._fh = self._zc
        else:
            self._fh = raw
        self._pending: list[bytes] = []
        self._flush_every = flush_every
        self.count = 0
        self._fh.write(msgspec.json.encode(header.to_json()) + b"\n")

    def write(self, ev: Event) -> None:
        self._pending.append(_ENCODER.encode(ev))
        self.count += 1
        if len(self._pending) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._fh.write(b"\n".join(self._pending) + b"\n")
            self._pending.clear()
        if self._zc is not None:
            self._zc.flush(zstandard.FLUSH_BLOCK)
        else:
            self._fh.flush()

    def close(self) -> None:
        self.flush()
        if self._fh is not self._raw:
            self._fh.close()
        if not self._raw.closed:
            self._raw.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
