"""Skim md_check_recovery re-reads out of a trace before decoding.

Most lines of a real trace are the md daemon re-reading an array's state: an md_check_recovery
entry/exit whose line, apart from its time and kind, is byte for byte the array's previous
line, or differs from it only in the sync position (``curr_resync``/``reshape_position``
moving during a resync).  Decoding each into an Event and running the engine's per-event path
is wasted work: only time, counters and the progress tracking move.  The skimmer finds those
lines in a block of raw JSON Lines *without decoding them* and replaces each run of them with
one :data:`Repeat` per array, which ``Engine.feed_repeats`` (and the report's timeline
recorder) apply with exactly the per-event effect; every other line is copied out for
ordinary decoding.

Exactness rules (why the result equals feeding every event; tests/test_skim.py compares every
field of the engine and the recorder both ways):

* A line is a *repeat* only if its kind is check_recovery_enter/exit, it carries a state
  object, and everything after its kind equals the array's *template* -- its previous line,
  itself such a line -- except, at most, the digits of the state's ``cr``/``rp`` values.  So
  the engine saw no other event of that array in between, its last state differs at most in
  the position, and the lifecycle (a function of the flag words only) is a fixed point.
* An io_stats or progress line (the sync thread's and the sysfs poller's position samples)
  *folds* into the array's run too, if its state (or lack of one) is the template's but for
  the position, its dm name and mddev identity change nothing, and the whole line equals the
  array's last ordinary line of that kind (a second template, which decoded) except for
  JSON number values outside strings and, in the state, only ``cr``/``rp``: so it decodes, and
  the engine's only effects are counters, time, the position, resync_max and, for progress,
  the sysfs position sample and sync_action.  The run lists each of them as a move.
* Each repeat whose position differs from the line before it is listed in the run (``moves``)
  so the engine's own progress/speed tracking and the recorder's progress series see every
  move in order.
* The engine ticks (time-based detectors) when trace time passes 100 ms since the last tick;
  the skimmer replays that clock and never skims the line a tick falls on, and applies every
  pending run before it.  An array's run is also applied before that array's next ordinary
  line, before any line that would move the engine clock backwards relative to it, and at the
  end of every block.
* A line it cannot parse the start of (not ``{"t":N,"k":"KIND"`` in the writer's field order,
  an escape in the kind or array name, a second ``"a":`` key) ends skimming for the rest of
  the block and forgets every template.  Bad lines are never skimmed: if a block's copied-out
  lines fail to decode, the reader forgets all templates and handles the block the ordinary
  way, line by line.

``mdtrace._skimc`` (C, built by ``pip install -e .``) implements :func:`scan` with the same
semantics ~10x faster; :func:`scan_py` is the reference, tested line for line against it.
"""

from __future__ import annotations

import os
from typing import Any

from mdtrace.moves import MOVE_REREAD, MOVE_STATE, MOVE_SYSFS, pack

# (array, n_enter, n_exit, n_io_stats, n_progress, last_ts, max_ts, first_exit_ts or -1,
# moves, action): moves is None or the packed moves (mdtrace.moves), in line order: one for
# each repeat whose sync position differed from the line before it (MOVE_REREAD) and for each
# folded io_stats/progress line's state (MOVE_STATE), and one per folded progress line for
# its sysfs sample (MOVE_SYSFS); action is the folded progress lines' sync action ("" if none).
Move = tuple[int, int, int, int, int, int]
Repeat = tuple[str, int, int, int, int, int, int, int, "bytes | None", str]
# A block's scan result: copied-out lines, ops (None = feed the next decoded line, a tuple =
# apply a Repeat), the number of lines skimmed, the engine clock after the block (exact unless
# blind), whether an unparseable line made it blind, and the numbers of (non-empty) lines in
# the block and copied out.
ScanResult = tuple[bytes, list[Any], int, int, int, bool, int, int]

_ENTER = b"check_recovery_enter"
_EXIT = b"check_recovery_exit"
_PREFIX = b'{"t":'
_KIND = b',"k":"'
_ARRAY = b',"a":"'
_STATE = b'"s":{'
_AKEY = b'"a":'


def scan_py(templates: dict[bytes, Any], block: bytes, now: int, last_tick: int,
            tick_ns: int) -> ScanResult:
    """Reference implementation; see the module docstring.  ``block`` holds whole lines.

    ``templates`` is updated in place: array name -> [bytes after the kind of its last line,
    that line's cr, rp, the position last applied (cr, rp)], present only while that line was
    a skimmable check_recovery line; and ``name + b"\\0" + kind`` -> the bytes after the kind
    of the array's last ordinary io_stats / progress line (the fold templates).
    """
    out: list[bytes] = []
    ops: list[Any] = []
    skimmed = 0
    fed_now = now        # the engine clock as fed so far (ordinary lines + applied repeats)
    # name -> [n_enter, n_exit, n_io, n_prog, last, max, first_exit, moves, action]
    pend: dict[bytes, list[Any]] = {}
    pend_max = -1
    blind = False        # after an unparseable line: no more skimming in this block

    def flush(name: bytes) -> None:
        nonlocal fed_now
        p = pend.pop(name)
        ops.append((name.decode(), p[0], p[1], p[2], p[3], p[4], p[5], p[6],
                    None if p[7] is None else pack(p[7]), p[8].decode()))
        if p[5] > fed_now:
            fed_now = p[5]

    def flush_all() -> None:
        nonlocal pend_max
        for name in list(pend):
            flush(name)
        pend_max = -1

    def pending(name: bytes, ts: int) -> list[Any]:
        nonlocal pend_max
        p = pend.get(name)
        if p is None:
            p = pend[name] = [0, 0, 0, 0, ts, ts, -1, None, b""]
        p[4] = ts
        if ts > p[5]:
            p[5] = ts
        if ts > pend_max:
            pend_max = ts
        return p

    for line in block.split(b"\n"):
        if not line:
            continue
        parsed = None if blind else _parse(line)
        if parsed is None:
            if not blind:
                blind = True
                flush_all()
                templates.clear()
            out.append(line)
            ops.append(None)
            continue
        ts, kind, name, rest = parsed
        if ts > now:
            now = ts
        tick = now - last_tick >= tick_ns
        if name is not None and not tick and (kind == _ENTER or kind == _EXIT):
            t = templates.get(name)
            pos = None
            if t is not None:
                if t[0] == rest:
                    pos = t[1], t[2]
                else:
                    pos = _variant(t[0], rest)
            if pos is not None and t is not None:     # pos comes from a template
                p = pending(name, ts)
                if kind == _ENTER:
                    p[0] += 1
                else:
                    p[1] += 1
                    if p[6] < 0:
                        p[6] = ts
                if pos[0] != t[3] or pos[1] != t[4]:   # the sync position moved
                    _move(p, (ts, pos[0], pos[1], MOVE_REREAD, 0, 0))
                    t[3], t[4] = pos
                skimmed += 1
                continue
        elif name is not None and not tick and (kind == _IO or kind == _PROG):
            t = templates.get(name)
            f = None if t is None else _fold(t[0], templates.get(name + b"\0" + kind), kind,
                                             rest)
            if f is not None:
                assert t is not None
                p = pending(name, ts)
                if f[0] is not _NO_STATE:
                    t[3], t[4] = f[0]
                    _move(p, (ts, t[3], t[4], MOVE_STATE, 0, 0))
                if kind == _IO:
                    p[2] += 1
                else:
                    p[3] += 1
                    _move(p, (ts, t[3], t[4], MOVE_SYSFS, f[1], f[2]))
                    p[8] = f[3]
                skimmed += 1
                continue
        # an ordinary line.  A second "a" key: another writer's shape (a repeat differs from
        # its template, which passed this check, only in position digits, so it has none)
        if name is not None and _AKEY in rest[7 + len(name):]:
            blind = True
            flush_all()
            templates.clear()
            out.append(line)
            ops.append(None)
            continue
        # bring the engine up to date first
        if tick or pend_max > max(fed_now, ts):
            flush_all()
        elif name is not None and name in pend:
            flush(name)
        if tick:
            last_tick = now
        if ts > fed_now:
            fed_now = ts
        if name is not None:
            if kind == _ENTER or kind == _EXIT:
                g = _positions(rest)
                if g is not None:
                    cr, rp = g[1], g[2]
                    templates[name] = [rest, cr, rp, cr, rp]
                else:
                    templates.pop(name, None)
            else:
                if kind == _IO or kind == _PROG:
                    templates[name + b"\0" + kind] = rest
                t = templates.get(name)
                if t is not None:
                    pos = _aside(t[0], rest) if kind in _KEEP else None
                    if pos is None:
                        del templates[name]
                    elif pos is not _NO_STATE:
                        t[3], t[4] = pos
        out.append(line)
        ops.append(None)
    flush_all()
    return ((b"\n".join(out) + b"\n" if out else b""), ops, skimmed, now, last_tick, blind,
            block.count(b"\n"), len(out))


_IO = b"io_stats"
_PROG = b"progress"


def _move(p: list[Any], move: Move) -> None:
    if p[7] is None:
        p[7] = [move]
    else:
        p[7].append(move)


def _fold(template: bytes, kind_template: bytes | None, kind: bytes,
          rest: bytes) -> tuple[Any, int, int, bytes] | None:
    """For an io_stats / progress line: (its position or _NO_STATE, sysfs done, total,
    action) if it folds into the array's run (module docstring), else None."""
    if kind_template is None or b"\\" in rest:
        return None
    pos = _aside(template, rest)
    if pos is None:
        return None
    ts = template.find(_STATE)
    rs = rest.find(_STATE)
    ldn = _field(rest if rs < 0 else rest[:rs], _DN)
    if ldn and ldn != _field(template[:ts], _DN):
        return None     # the engine would take a dm name the template did not have
    if not _numbers_only(kind_template, rest):
        return None
    if kind == _IO:
        return pos, 0, 0, b""
    x = _progress_args(rest)
    if x is None:
        return None
    return (pos, *x)


def _numbers_only(a: bytes, b: bytes) -> bool:
    """``a == b`` but for the digits of JSON number values (``:`` digits, then ``,`` or
    ``}``; at most 18) outside strings.  Neither may hold a backslash; both start with the
    quote that closes the kind string."""
    i = j = 0
    na, nb = len(a), len(b)
    in_str = True
    while i < na and j < nb:
        c = a[i]
        if c != b[j]:
            return False
        i += 1
        j += 1
        if c == 34:     # '"'
            in_str = not in_str
        elif c == 58 and not in_str:    # ':' then maybe a number
            ie, je = i, j
            while ie < na and 48 <= a[ie] <= 57:
                ie += 1
            while je < nb and 48 <= b[je] <= 57:
                je += 1
            if ie > i or je > j:
                if ie == i or je == j or ie - i > 18 or je - j > 18 or ie >= na or \
                        je >= nb or a[ie] not in b",}" or b[je] not in b",}":
                    return False
                i, j = ie, je
    return i == na and j == nb


def _progress_args(rest: bytes) -> tuple[int, int, bytes] | None:
    """(done, total, action) of a progress line whose args end the line as
    ``"x":{...}}`` with plain-number done/total and a string action, each once; else None."""
    x = rest.rfind(b',"x":{')
    if x < 0 or not rest.endswith(b"}}"):
        return None
    body = rest[x + 5:]
    vals = []
    for key in (b'"done":', b'"total":'):
        k = body.find(key)
        if k < 0 or body.find(key, k + 1) >= 0:
            return None
        vs = ve = k + len(key)
        while ve < len(body) and 48 <= body[ve] <= 57:
            ve += 1
        if ve == vs or ve - vs > 18 or body[ve] not in b",}":
            return None
        vals.append(int(body[vs:ve]))
    k = body.find(b'"action":')
    if k < 0 or body.find(b'"action":', k + 1) >= 0 or body[k + 9:k + 10] != b'"':
        return None
    e = body.find(b'"', k + 10)
    if e < 0:
        return None
    return vals[0], vals[1], body[k + 10:e]


_POS_KEYS = (b'"cr":', b'"rp":')
# Kinds whose engine handling leaves what the fast path depends on alone (lifecycle, the
# daemon's tid, DONE/not-DONE bookkeeping, the array's identity): a line of one of these
# between two md_check_recovery re-reads keeps the template if its state equals it but for
# the position (the engine's last state is then the line's).  Anything else drops it.
_KEEP = frozenset({
    b"progress", b"lock", b"io_stats", b"io_wait", b"sync_action", b"sysfs_state",
    b"raid_target", b"dm_suspend_enter", b"dm_suspend_exit", b"dm_resume_enter",
    b"dm_resume_exit", b"mddev_suspend", b"mddev_resume", b"wait_begin", b"wait_end",
    b"start_reshape", b"thread_unregister"})
_NO_STATE = (-2, -2)
_DN = b',"dn":"'
_MD = b',"md":"'


def _positions(rest: bytes) -> tuple[list[tuple[int, int]], int, int] | None:
    """The spans of the curr_resync / reshape_pos values in the state object of ``rest``
    and the values (absent: 0 / -1), or None without a state object or if a value is not a
    plain number or a key repeats (such lines are never skimmed)."""
    s = rest.find(_STATE)
    if s < 0:
        return None
    e = rest.find(b"}", s)
    if e < 0:
        return None
    spans: list[tuple[int, int]] = []
    vals = [0, -1]
    for i, key in enumerate(_POS_KEYS):
        k = rest.find(key, s, e)
        if k < 0:
            continue
        if rest.find(key, k + 1, e) >= 0:
            return None
        vs = ve = k + 5
        while ve < e and 48 <= rest[ve] <= 57:
            ve += 1
        if ve == vs or ve - vs > 18 or rest[ve] not in b",}":
            return None
        spans.append((vs, ve))
        vals[i] = int(rest[vs:ve])
    spans.sort()
    return spans, vals[0], vals[1]


def _field(head: bytes, key: bytes) -> bytes | None:
    i = head.find(key)
    if i < 0:
        return b""
    j = head.find(b'"', i + len(key))
    return None if j < 0 else head[i + len(key):j]


def _aside(template: bytes, rest: bytes) -> tuple[int, int] | None:
    """For a line of a _KEEP kind between re-reads: its (curr_resync, reshape_pos) if its
    state equals the template's but for those, _NO_STATE if it has no state; None if it
    changes anything else the fast path depends on (state, dm name, mddev identity)."""
    ts = template.find(_STATE)
    rs = rest.find(_STATE)
    head = rest if rs < 0 else rest[:rs]
    if b"\\" in head or b"\\" in template[:ts]:
        return None
    ldn, lmd = _field(head, _DN), _field(head, _MD)
    tdn, tmd = _field(template[:ts], _DN), _field(template[:ts], _MD)
    if ldn is None or lmd is None or tdn is None or tmd is None:
        return None
    if ldn and tdn and ldn != tdn or lmd and lmd != tmd:
        return None
    if rs < 0:
        return _NO_STATE
    te = template.find(b"}", ts)
    re_ = rest.find(b"}", rs)
    if re_ < 0:
        return None
    return _variant(template[ts:te + 1], rest[rs:re_ + 1])


def _variant(template: bytes, rest: bytes) -> tuple[int, int] | None:
    """(curr_resync, reshape_pos) of ``rest`` if it equals ``template`` but for those two
    values, else None."""
    a = _positions(template)
    b = _positions(rest)
    if a is None or b is None or len(a[0]) != len(b[0]):
        return None
    ia = ib = 0
    for (sa, ea), (sb, eb) in zip(a[0], b[0], strict=True):
        if template[ia:sa] != rest[ib:sb]:
            return None
        ia, ib = ea, eb
    if template[ia:] != rest[ib:]:
        return None
    return b[1], b[2]


def _parse(line: bytes) -> tuple[int, bytes, bytes | None, bytes] | None:
    """(ts, kind, array name or None, bytes after the kind) or None if not in writer shape."""
    if not line.startswith(_PREFIX):
        return None
    k = line.find(_KIND, 5)
    digits = line[5:k]
    if k < 0 or not digits.isdigit() or len(digits) > 18:
        return None
    ks = k + 6
    ke = line.find(b'"', ks)
    if ke < 0 or b"\\" in line[ks:ke]:
        return None
    kind = line[ks:ke]
    rest = line[ke:]
    if not rest.startswith(_ARRAY, 1):
        # array-less event; a later "a" key would mean another writer's field order
        return None if _AKEY in rest else (int(digits), kind, None, rest)
    ns = 7
    ne = rest.find(b'"', ns)
    if ne < 0:
        return None
    name = rest[ns:ne]
    if not name or b"\\" in name or not name.isascii():
        return None
    return int(digits), kind, name, rest


def _load_c() -> Any:
    if os.environ.get("MDTRACE_PURE"):
        return None
    try:
        from mdtrace import _skimc  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _skimc.scan


scan_c = _load_c()
scan = scan_c or scan_py
ACCELERATED = scan_c is not None


def last_line_ts(block: bytes) -> int:
    """The time of a block's last line if it starts the writer's way (``{"t":N,``), else 0:
    the latest time of lines skimmed without decoding, for :meth:`TraceReader.end_note`."""
    i = block.rfind(b"\n", 0, len(block) - 1) + 1
    if not block.startswith(b'{"t":', i):
        return 0
    j = k = i + 5
    while k < len(block) and k - j < 19 and 48 <= block[k] <= 57:
        k += 1
    return int(block[j:k]) if k > j else 0
