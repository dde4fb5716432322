"""Trace file format: versioned JSON Lines, optionally gzip- or zstd-compressed.

Line 1 is a header object::

    {"format": "mdtrace-trace", "version": 2, "kernel": "6.12.117+deb12-amd64",
     "source": "bcc", "created": "2026-11-24T22:00:00Z", "hash_key_id": "9f0c1a2b",
     "flag_tables": {"recovery": {"NEEDED": 0, ...}, "mddev": {...}}, "meta": {...}}

and every further line is one :class:`mdtrace.events.Event` (short keys).  Compression is
detected from the file's magic bytes, never from its name.

Crash safety (version 2): the writer ends a compressed frame (a gzip member, a zstd frame:
each decodable on its own) or flushes a plain file at least every :data:`FLUSH_S` seconds,
and a clean close appends a ``trace_end`` record.  So a recorder killed at any instant
(SIGKILL, power loss, a full disk) leaves every record of its last complete frame readable,
and the reader tells a cut trace from a complete one.  The reader decodes frame by frame
and never drops what it decoded before a cut: a truncated or corrupt compressed stream, a
last line cut short, or (version 2) a missing end record is an *abrupt end* (``abrupt``,
:meth:`TraceReader.end_note`), not an error.  Version-1 traces (no end record, one gzip
member) read as before.

Bad lines (not JSON, wrong schema, a value out of range: :func:`mdtrace.events.check`,
longer than :data:`MAX_LINE`) raise :class:`TraceError` naming file:line, or are skipped and
counted with ``skip_bad``; events before a fault are always delivered first.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import select
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec
import zstandard

from mdtrace.errors import MdtraceError
from mdtrace.events import KIND_SET, Event, canonicalise, check
from mdtrace.kernel.flags import FlagTable
from mdtrace.kernel.offsets import flag_table_for

FORMAT_NAME = "mdtrace-trace"
FORMAT_VERSION = 2
SUPPORTED_VERSIONS = frozenset({1, 2})
END_KIND = "trace_end"     # the writer's last record (version 2); never delivered as an event
FLUSH_S = 0.5              # the recorder ends a frame this often: a kill loses at most ~this
MAX_LINE = 1 << 20         # longer lines are bad lines (the recorder's are < 64 KiB)

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = MAX_LINE          # decompressed bytes per read: no line within one exceeds MAX_LINE
_ZSTD_SLICE = 4096         # compressed bytes per zstd call (bounds the output of a bomb)
_OVERLONG = b"\x00mdtrace: overlong line"   # stands in for a line over MAX_LINE


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
        if type(version) is not int or version not in SUPPORTED_VERSIONS:
            shown = repr(version) if len(repr(version)) <= 40 else repr(version)[:37] + "..."
            raise TraceError(path, f"unsupported trace format version {shown}", 1,
                             f"this mdtrace reads version(s) {sorted(SUPPORTED_VERSIONS)}; "
                             "upgrade mdtrace")
        tables = obj.get("flag_tables")
        kernel = _header_str(obj, "kernel", "unknown", path)
        try:
            if tables:
                rec = _bits(tables["recovery"])
                mdf = _bits(tables.get("mddev", {}))
                flag_tables = FlagTable(rec, mdf)
            else:
                flag_tables = flag_table_for(kernel)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TraceError(path, f"malformed flag_tables in header: {exc}", 1) from None
        meta = obj.get("meta") or {}
        if not isinstance(meta, dict):
            raise TraceError(path, "malformed header: 'meta' is not an object", 1)
        return cls(kernel=kernel, source=_header_str(obj, "source", "unknown", path),
                   created=_header_str(obj, "created", "", path),
                   hash_key_id=_header_str(obj, "hash_key_id", "", path),
                   flag_tables=flag_tables, meta=meta, version=version)


def _header_str(obj: dict[str, Any], key: str, default: str, path: str) -> str:
    v = obj.get(key, default)
    if v is None:
        return default
    if type(v) not in (str, int, float) or "\x00" in str(v) or len(str(v)) > 256:
        raise TraceError(path, f"malformed header: {key!r} is not a short string", 1)
    return str(v)


def _bits(table: Any) -> dict[str, int]:
    """A header flag table: flag name -> kernel bit number (0..63)."""
    if not isinstance(table, dict):
        raise TypeError("a flag table is not an object")
    out = {}
    for k, v in table.items():
        if type(v) is not int or not 0 <= v < 64:
            raise ValueError(f"bit of {str(k)[:40]!r} is {str(v)[:40]!r}, not 0..63")
        out[str(k)] = v
    return out


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_DECODER = msgspec.json.Decoder(Event)
_ENCODER = msgspec.json.Encoder()
# msgspec 0.19.0 (pinned for Python 3.9: scripts/py39-constraints.txt) raises
# UnicodeDecodeError, not DecodeError, for a string that is not UTF-8 (CI 2026-12-02, the
# Python 3.9 fuzz run)
_NOT_JSON = (msgspec.DecodeError, UnicodeDecodeError)
_DECODE_ERRORS = (*_NOT_JSON, msgspec.ValidationError, RecursionError)


def _os_what(exc: OSError) -> str:
    """A one-line reason for an OS error on a trace path."""
    return {errno.ENOENT: "no such file", errno.EISDIR: "is a directory, not a trace file",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.ENOTDIR: "a component of the path is not a directory",
            errno.ELOOP: "too many levels of symbolic links",
            }.get(exc.errno or 0, exc.strerror or str(exc))


FIFO_WAIT_S = 10.0         # how long a FIFO may stay without a writer


def _open_raw(path: str) -> IO[bytes]:
    """The trace file, opened without blocking (a FIFO with no writer must not hang open:
    it gets FIFO_WAIT_S for one) and refused unless it is a regular file or a pipe
    (/dev/zero never ends)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        hint = {errno.ENOENT: "check the path",
                errno.EACCES: "run as a user who can read it"}.get(exc.errno or 0, "")
        raise TraceError(path, _os_what(exc), hint=hint) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise TraceError(path, "is a directory, not a trace file")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise TraceError(path, "is not a regular file (a device or a socket)",
                             hint="give a trace file written by 'mdtrace record'")
        if stat.S_ISFIFO(mode) and not select.select([fd], [], [], FIFO_WAIT_S)[0]:
            raise TraceError(path, f"is a FIFO nothing wrote to within {FIFO_WAIT_S:g} s",
                             hint="start its writer first")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb", buffering=0)


class _Stream:
    """The decompressed bytes of a trace file in bounded chunks.

    Compression comes from the magic bytes.  Compressed data is decoded frame by frame (gzip
    members, zstd frames) and everything decoded is returned; a stream that is cut short or
    corrupt simply ends there, with the reason in ``fault``.  Only an OS read error raises.
    """

    def __init__(self, fh: IO[bytes], path: str) -> None:
        self._fh, self.path = fh, path
        self.fault: str | None = None
        self._raw_eof = False
        self._in = b""
        self._d: Any = None
        self._over, self._at = b"", 0
        self._fill_raw()
        head = self._in[:4]
        while len(head) < 4 and self._fill_raw():
            head = self._in[:4]
        self.kind = ("gzip" if head[:2] == _GZIP_MAGIC else
                     "zstd" if head == _ZSTD_MAGIC else "plain")

    def close(self) -> None:
        self._fh.close()

    def _fill_raw(self) -> bool:
        """Append a chunk of the file to the input; False at its end."""
        if self._raw_eof:
            return False
        try:
            chunk = self._fh.read(_CHUNK)
        except OSError as exc:
            raise TraceError(self.path, f"read error: {_os_what(exc)}",
                             hint="events before this point were read") from None
        if not chunk:
            self._raw_eof = True
            return False
        self._in = self._in + chunk if self._in else chunk
        return True

    def read(self) -> bytes:
        """Up to _CHUNK decompressed bytes; b"" at the end (clean, or ``fault``)."""
        if self.kind == "plain":
            if not self._in and not self._fill_raw():
                return b""
            out, self._in = self._in, b""
            return out
        if self._at >= len(self._over):          # a zstd piece can decode to more than
            self._over, self._at = self._read_frames(), 0   # _CHUNK: hand it out in slices
        out = self._over[self._at:self._at + _CHUNK] if self._at or \
            len(self._over) > _CHUNK else self._over
        self._at += len(out)
        return out

    def _read_frames(self) -> bytes:
        gz = self.kind == "gzip"
        magic = _GZIP_MAGIC if gz else _ZSTD_MAGIC
        while True:
            if self._d is None:            # between frames: the end, or the next one
                if gz:
                    self._in = self._in.lstrip(b"\x00")    # gzip allows zero padding
                if len(self._in) < len(magic) and self._fill_raw():
                    continue
                if not self._in:
                    return b""
                if not self._in.startswith(magic):
                    self.fault = "data after a compressed frame is not a frame"
                    return b""
                self._d = (zlib.decompressobj(31) if gz
                           else zstandard.ZstdDecompressor().decompressobj())
            if not self._in and not self._fill_raw():
                self.fault = "compressed stream cut short"
                return b""
            try:
                if gz:
                    out = self._d.decompress(self._in, _CHUNK)
                    rest = self._d.unused_data if self._d.eof else self._d.unconsumed_tail
                else:
                    piece, self._in = self._in[:_ZSTD_SLICE], self._in[_ZSTD_SLICE:]
                    out = self._d.decompress(piece)
                    rest = self._d.unused_data + self._in if self._d.eof else self._in
            except (zlib.error, zstandard.ZstdError) as exc:
                self.fault = f"compressed data corrupt ({exc})"
                return b""
            self._in = rest
            if self._d.eof:
                self._d = None
            if out:
                return out


class TraceReader:
    """Streaming reader.  Iterate it for events; ``header`` is read on construction.

    ``skip_bad``: skip bad lines (not JSON, wrong schema, a value out of range, too long)
    instead of raising; their count is in ``bad_lines`` and the first few messages in
    ``errors``.  An abrupt end (see the module docstring) never raises: every event before it
    is delivered, ``truncated`` is set and ``abrupt`` says why.
    """

    def __init__(self, path: str | os.PathLike[str], *, skip_bad: bool = False) -> None:
        self.path = str(path)
        self.skip_bad = skip_bad
        self.bad_lines = 0
        self.errors: list[str] = []
        self.events_read = 0
        self.truncated = False
        self.abrupt: str | None = None   # why the trace ends early (None: it does not)
        self.ended = False               # the writer's end record was read
        self.end_summary: dict[str, int] = {}   # what it says (events, lost: record.py)
        self.last_ts = 0                 # the latest event time delivered
        self._stream = _Stream(_open_raw(self.path), self.path)
        self._buf = b""                  # a partial line (no newline yet), < MAX_LINE
        self._skipping = False           # inside a line over MAX_LINE: drop to its newline
        self._lineno = 0
        self._rec_cache: dict[int, int] = {}
        self._mdf_cache: dict[int, int] = {}
        try:
            self.header = self._read_header()
        except BaseException:
            self._stream.close()
            raise
        self.flag_table = self.header.flag_tables

    def _read_header(self) -> TraceHeader:
        block = self._next_block()
        nl = block.find(b"\n")
        first, self._pending = (block[:nl], block[nl + 1:]) if nl >= 0 else (self._buf, b"")
        if nl < 0:
            self._buf = b""
        self._lineno = 1
        if first == _OVERLONG or (nl < 0 and self._skipping):
            raise TraceError(self.path, "not an mdtrace trace (first line is not a header: "
                             f"longer than {MAX_LINE} bytes)", 1,
                             "expected a JSON Lines file written by 'mdtrace record'")
        if not first.strip():
            raise TraceError(self.path, "empty file, no trace header",
                             1 if nl >= 0 or first else None,
                             "record a trace with 'mdtrace record -o FILE'")
        try:
            obj = msgspec.json.decode(first)
        except _DECODE_ERRORS:
            raise TraceError(self.path, "not an mdtrace trace (first line is not JSON)", 1,
                             "expected a JSON Lines file written by 'mdtrace record'") from None
        return TraceHeader.from_json(obj, self.path)

    def close(self) -> None:
        self._stream.close()

    def end_note(self, t0_ns: int = 0) -> str | None:
        """The one line every report shows for an abrupt end (None if the trace is whole):
        when (seconds after ``t0_ns``), why, and how much was recovered."""
        if self.abrupt is None:
            return None
        at = f"+{(self.last_ts - t0_ns) / 1e9:.3f}s" if t0_ns and self.last_ts >= t0_ns \
            else f"{self.last_ts} ns"
        return (f"trace ends abruptly at {at} ({self.abrupt}): {self.events_read} records "
                "recovered, the rest lost")

    def _cut(self, why: str) -> None:
        self.truncated = True
        if self.abrupt is None:
            self.abrupt = why

    # -- low level ------------------------------------------------------------------------
    def _next_block(self) -> bytes:
        """The next run of whole lines (each ending in a newline); b"" at the stream's end.

        A line over MAX_LINE comes out as the _OVERLONG sentinel (one line: numbering holds)
        without ever being buffered whole.  Raises TraceError on a read error.
        """
        while True:
            chunk = self._stream.read()
            if not chunk:
                return b""
            head = b""
            if self._skipping:
                nl = chunk.find(b"\n")
                if nl < 0:
                    continue
                self._skipping = False
                head, chunk = _OVERLONG + b"\n", chunk[nl + 1:]
            cut = chunk.rfind(b"\n")
            if cut < 0:
                if len(self._buf) + len(chunk) > MAX_LINE:
                    self._buf, self._skipping = b"", True
                else:
                    self._buf += chunk         # at most twice before the cap
                if head:
                    return head
                continue
            first = chunk.find(b"\n")
            if len(self._buf) + first > MAX_LINE:   # the partial line grew over the cap
                block = b"".join((head, _OVERLONG, chunk[first:cut + 1]))
            elif self._buf or head:
                block = b"".join((head, self._buf, memoryview(chunk)[:cut + 1]))
            else:
                block = chunk if cut == len(chunk) - 1 else chunk[:cut + 1]
            self._buf = chunk[cut + 1:]
            return block

    def _bad(self, lineno: int, what: str) -> None:
        if not self.skip_bad:
            raise TraceError(self.path, what, lineno,
                             "use --skip-bad to continue past bad lines")
        self.bad_lines += 1
        if len(self.errors) < 20:
            self.errors.append(f"{self.path}:{lineno}: {what}")

    def _decode_one(self, line: bytes, lineno: int) -> Event | None:
        """One line: its event, or None for the end record or a skipped bad line."""
        if line == _OVERLONG:
            self._bad(lineno, f"line longer than {MAX_LINE} bytes")
            return None
        try:
            ev = _DECODER.decode(line)
        except msgspec.ValidationError as exc:
            self._bad(lineno, f"event does not match the trace schema: {exc}")
            return None
        except _NOT_JSON:
            self._bad(lineno, "line is not valid JSON (corrupt or truncated)")
            return None
        except RecursionError:
            self._bad(lineno, "line nests too deeply")
            return None
        if ev.kind == END_KIND:
            self.ended = True
            self.end_summary = {k: v for k, v in ev.args.items()
                                if isinstance(v, int) and not isinstance(v, bool) and v >= 0}
            return None
        if ev.kind not in KIND_SET:
            self._bad(lineno, f"unknown event kind {ev.kind[:40]!r}")
            return None
        why = check(ev)
        if why is not None:
            self._bad(lineno, why)
            return None
        self._canon(ev)
        return ev

    def _canon(self, ev: Event) -> None:
        """The one flag-decoding rule (events.canonicalise, forced: stored masks are not
        trusted) with per-reader caches: a trace has few distinct flag words, and a dict hit
        beats a method call."""
        st = ev.state
        if st is not None:
            rec = self._rec_cache.get(st.recovery)
            mdf = self._mdf_cache.get(st.flags)
            if rec is None or mdf is None:
                canonicalise(ev, self.flag_table, force=True)
                if len(self._rec_cache) < 65536:
                    self._rec_cache[st.recovery] = st.rec
                    self._mdf_cache[st.flags] = st.mdf
            else:
                st.rec, st.mdf = rec, mdf
        if ev.ts > self.last_ts:
            self.last_ts = ev.ts

    # -- iteration ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Event]:
        try:
            for batch in self._batches():
                yield from batch
        finally:
            self._stream.close()

    def batches(self) -> Iterator[list[Event]]:
        """The same events as iterating the reader, as lists of up to a chunk's worth.

        For hot loops (report, bench): a nested ``for`` over lists avoids resuming a
        generator per event.  Errors surface exactly as when iterating.
        """
        try:
            yield from self._batches()
        finally:
            self._stream.close()

    def _blocks(self) -> Iterator[tuple[int, bytes, TraceError | None]]:
        """Whole-line blocks as read: (line number before the block, block, read error);
        last an empty block (the final drain).  The consumer advances ``_lineno``."""
        if self._pending:       # what the header read buffered after the first line
            block, self._pending = self._pending, b""
            yield self._lineno, block, None
        while True:
            try:
                block = self._next_block()
            except TraceError as exc:
                yield self._lineno, b"", exc
                return
            if not block:
                break
            yield self._lineno, block, None
        yield self._lineno, b"", None

    def _decode_block(self, block: bytes, nlines: int) -> list[Event] | None:
        """All of ``block`` decoded, checked and canonicalised, or None on any bad line."""
        decode_lines = getattr(_DECODER, "decode_lines", None)
        if decode_lines is None:
            return None
        try:
            evs: list[Event] = decode_lines(block)
        except _DECODE_ERRORS:
            return None
        if len(evs) != nlines or not self._canon_block(evs):
            return None
        return evs

    def _plain_block(self, start: int, block: bytes,
                     err: TraceError | None) -> Iterator[list[Event]]:
        """The per-line path for one block, or the final drain / a read error."""
        if err is not None:
            yield []
            if not self.skip_bad:
                raise err
            self.errors.append(str(err))
            return
        if not block:
            yield self._drain_tail()
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
        """Decode whole blocks at once (fast path); fall back per line on any bad line."""
        for start, block, err in self._blocks():
            if err is None and block:
                nlines = block.count(b"\n")
                evs = self._decode_block(block, nlines)
                if evs is not None:
                    self._lineno = start + nlines
                    self.events_read += len(evs)
                    yield evs
                    continue
            yield from self._plain_block(start, block, err)

    def _canon_block(self, evs: list[Event]) -> bool:
        """Check and canonicalise a decoded block in one pass; False (the caller re-reads
        it line by line, which says what is wrong) on an unknown kind or a bad value."""
        kinds = KIND_SET
        canon = self._canon
        for ev in evs:
            if ev.kind not in kinds or check(ev) is not None:
                return False
            canon(ev)
        return True

    def _drain_tail(self) -> list[Event]:
        """The end of the stream: a last line without newline is a complete record or a
        write cut short; then whether the trace ends abruptly, and why."""
        tail, self._buf = self._buf, b""
        out: list[Event] = []
        if self._skipping:
            self._skipping = False
            self._lineno += 1
            self._bad(self._lineno, f"line longer than {MAX_LINE} bytes")
        elif tail.strip():
            self._lineno += 1
            try:
                ev: Event | None = _DECODER.decode(tail)
            except _DECODE_ERRORS:
                ev = None
            if ev is None:
                if self._stream.fault is None:
                    self._cut(f"its last line, {self._lineno}, is cut short")
            else:
                got = self._decode_one(tail, self._lineno)
                if got is not None:
                    self.events_read += 1
                    out.append(got)
        if self._stream.fault is not None:
            self._cut(self._stream.fault)
        if self.header.version >= 2 and not self.ended:
            self._cut("no end record: the recorder was killed, or is still writing")
        return out


def read_trace(path: str | os.PathLike[str], *, skip_bad: bool = False) -> TraceReader:
    return TraceReader(path, skip_bad=skip_bad)


def create_private(path: str, *, exclusive: bool) -> int:
    """A new file only its owner can read (0600 whatever the umask), never through a
    symlink: ``exclusive`` refuses an existing path; otherwise an existing file (or a
    planted symlink: the link itself) is unlinked first, and a new file created in its
    place.  Returns the fd; raises TraceError with a one-line reason."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        if not exclusive and os.path.lexists(path) and \
                not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
        return os.open(path, flags, 0o600)
    except FileExistsError:
        raise TraceError(path, "already exists", hint="choose another name, or --force to "
                         "replace it") from None
    except OSError as exc:
        raise TraceError(path, f"cannot create trace file: {_os_what(exc)}",
                         hint="check the directory exists and is writable") from None


class TraceWriter:
    """Streaming, crash-safe writer; compression chosen by suffix (.gz / .zst / plain).

    Events are buffered (``flush_every`` at most, then compressed into the current frame);
    :meth:`flush` ends the frame (gzip member / zstd frame / plain write) so everything
    before it reads whatever happens next; :meth:`close` adds the end record.  A write error
    (a full disk) truncates the file back to its last complete frame, closes it and raises
    TraceError naming the path.  ``sync``: fdatasync at every flush (power-loss safety).
    The file is created by :func:`create_private` (``exclusive``: refuse an existing one).
    """

    def __init__(self, path: str | os.PathLike[str], header: TraceHeader,
                 flush_every: int = 4096, *, exclusive: bool = False,
                 sync: bool = False) -> None:
        self.path = str(path)
        suffix = Path(self.path).suffix
        self._fd: int | None = create_private(self.path, exclusive=exclusive)
        self._zstd = zstandard.ZstdCompressor(level=3) if suffix in (".zst", ".zstd") \
            else None
        self._gzip = suffix == ".gz"
        self._frame: Any = None
        self._pending: list[bytes] = []
        self._flush_every = flush_every
        self._sync = sync
        self._pos = self._good = 0       # bytes written; the end of the last whole frame
        self.count = 0
        self.last_ts = 0
        obj = header.to_json()
        obj["version"] = FORMAT_VERSION     # this writer writes this version's format
        self._pending.append(msgspec.json.encode(obj))
        self.flush()

    def write(self, ev: Event) -> None:
        self._pending.append(_ENCODER.encode(ev))
        self.count += 1
        if ev.ts > self.last_ts:
            self.last_ts = ev.ts
        if len(self._pending) >= self._flush_every:
            self._spill()

    def _spill(self) -> None:
        """Buffered lines into the current frame (not yet a complete one)."""
        if not self._pending or self._fd is None:    # nothing, or closed (after an error)
            self._pending.clear()
            return
        data = b"\n".join(self._pending) + b"\n"
        self._pending.clear()
        if self._gzip or self._zstd is not None:
            if self._frame is None:
                self._frame = zlib.compressobj(6, zlib.DEFLATED, 31) if self._gzip \
                    else self._zstd.compressobj()   # type: ignore[union-attr]
            self._out(self._frame.compress(data))
        else:
            self._out(data)
            self._good = self._pos

    def flush(self) -> None:
        """End the current frame: everything written so far is on its own decodable."""
        if self._fd is None:
            return
        self._spill()
        if self._frame is not None:
            self._out(self._frame.flush())
            self._frame = None
            self._good = self._pos
        if self._sync:
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                self._fail(exc)

    def _out(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)   # type: ignore[arg-type]
            except InterruptedError:
                continue
            except OSError as exc:
                self._fail(exc)
            self._pos += n
            view = view[n:]

    def _fail(self, exc: OSError) -> None:
        fd, self._fd = self._fd, None
        self._pending.clear()
        self._frame = None
        if fd is not None:
            try:
                os.ftruncate(fd, self._good)
            except OSError:
                pass
            os.close(fd)
        raise TraceError(self.path, f"cannot write the trace: {_os_what(exc)} after "
                         f"{self.count} events",
                         hint="the file ends at its last complete record; free space and "
                         "record again") from None

    def close(self, summary: dict[str, int] | None = None) -> None:
        """Write the end record (events written, plus the recorder's ``summary``, e.g. its
        lost-event count) and close (a second close does nothing)."""
        if self._fd is None:
            return
        args = {"events": self.count, **(summary or {})}
        self._pending.append(_ENCODER.encode(Event(ts=self.last_ts, kind=END_KIND,
                                                   args=args)))
        self.flush()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def fileno(self) -> int | None:
        return self._fd

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
