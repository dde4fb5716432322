"""Pure text formatting of engine snapshots for the TUI (kept apart so it is unit-testable)."""

from __future__ import annotations

from mdtrace.engine.model import ArrayView, Finding, Snapshot, TracerHealth
from mdtrace.events import Event
from mdtrace.kernel.probes import absent_by_design

ARRAY_COLUMNS = ("array", "type", "level", "state", "recovery", "action", "progress",
                 "reshape", "blocked IO")


def progress_bar(done: int, total: int, width: int = 10) -> str:
    """``[#####.....] 50.0%``; empty when the total is unknown."""
    if total <= 0:
        return ""
    frac = max(0.0, min(1.0, done / total))
    fill = int(round(frac * width))
    return f"[{'#' * fill}{'.' * (width - fill)}] {frac * 100:5.1f}%"


def fmt_eta(eta_s: float | None) -> str:
    if eta_s is None:
        return ""
    s = int(eta_s)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def fmt_progress(a: ArrayView) -> str:
    bar = progress_bar(a.progress_done, a.progress_total)
    if not bar:
        return ""
    parts = [bar]
    if a.speed_sectors_per_s > 0:
        parts.append(f"{a.speed_sectors_per_s * 512 / 1024 / 1024:.1f}MB/s")
    if a.eta_s is not None:
        parts.append(f"eta {fmt_eta(a.eta_s)}")
    return " ".join(parts)


def array_row(a: ArrayView) -> tuple[str, ...]:
    """One row of the array table, in ARRAY_COLUMNS order."""
    name = a.name + (f" ({a.dm_name})" if a.dm_name else "")
    blocked = ""
    if a.blocked_io:
        blocked = f"{len(a.blocked_io)} oldest {a.oldest_wait_s:.1f}s"
    reshape = "" if a.reshape_pos is None else str(a.reshape_pos)
    return (name, a.kind, a.level or "?", str(a.lifecycle), ",".join(a.recovery) or "-",
            sync_action(a), fmt_progress(a), reshape, blocked)


def sync_action(a: ArrayView) -> str:
    """What md's sync_action file would say: ``frozen`` whenever MD_RECOVERY_FROZEN is set
    (md's action_show checks it first), else the action seen, else '-'."""
    if "FROZEN" in a.recovery:
        return "frozen"
    return a.sync_action or "-"


def finding_lines(f: Finding, t0_ns: int = 0, now_ns: int = 0) -> list[str]:
    """Headline (with since when / when it ended, seconds since ``t0_ns``) + explanation +
    remedy + the fix where the kernel lacks it."""
    start = (f.start_ns - t0_ns) / 1e9
    if f.end_ns is None:
        held = f", {(now_ns - f.start_ns) / 1e9:.1f}s" if now_ns > f.start_ns else ""
        state = f"ACTIVE since +{start:.3f}s{held}"
    else:
        state = f"ended +{(f.end_ns - t0_ns) / 1e9:.3f}s after {(f.end_ns - f.start_ns) / 1e9:.1f}s"
    out = [f"{f.code} {str(f.severity).upper()} {f.array}: {f.title} [{state}]"]
    if f.explanation:
        out.append(f"  why: {f.explanation}")
    if f.remedy:
        out.append(f"  do:  {f.remedy}")
    if f.fix:
        out.append(f"  fix: {f.fix}")
    return out


def degraded_notes(h: TracerHealth) -> list[str]:
    """Why the picture may be incomplete: sysfs only, lost events, probes missing."""
    notes: list[str] = []
    if h.mode == "sysfs":
        notes.append("DEGRADED: sysfs polling only (no kernel probes): names, sync action and "
                      "progress only; no lifecycle or hang detection")
    if h.lost_total:
        notes.append(f"DEGRADED: {h.lost_summary()}")
    missing = sorted(n for n, p in h.probes.items()
                     if not p.get("attached", True) and not absent_by_design(n, h.kernel))
    if missing:
        notes.append(f"DEGRADED: probes missing: {', '.join(missing)}")
    notes.extend(f"warning: {w}" for w in h.warnings)
    return notes


def info_notes(h: TracerHealth) -> list[str]:
    """Not degraded, said once: probes this kernel cannot have."""
    absent = sorted((n, absent_by_design(n, h.kernel)) for n, p in h.probes.items()
                    if not p.get("attached", True) and absent_by_design(n, h.kernel))
    if not absent:
        return []
    return [f"not in this kernel ({h.kernel}), as expected: "
            + ", ".join(f"{n} ({since} only)" for n, since in absent)]


def status_line(s: Snapshot, paused: bool) -> str:
    h = s.health
    act = len(s.active_findings())
    p = " PAUSED" if paused else ""
    return (f"mode {h.mode}{p} | kernel {h.kernel or '?'} | events {h.events_total} | "
            f"lost {h.lost_total} | arrays {len(s.arrays)} | active findings {act}")


def event_line(ev: Event, t0_ns: int = 0) -> str:
    """One log line; the time is seconds since ``t0_ns`` (the trace start, as in `mdtrace
    replay` and the report)."""
    args = " ".join(f"{k}={v}" for k, v in sorted(ev.args.items()))
    who = f"{ev.comm}[{ev.tid}]" if ev.comm else ""
    rel = (ev.ts - t0_ns) / 1e9
    return f"{rel:12.6f} {ev.array or '-':<8} {ev.kind:<18} {who} {args}".rstrip()


def detail_lines(a: ArrayView, s: Snapshot, t0_ns: int = 0) -> list[str]:
    """Per-array detail: state history timeline, locks, blocked IO, lock graph summary; times
    in seconds since ``t0_ns`` (the trace start)."""
    out = [f"Array {a.name}" + (f" ({a.dm_name})" if a.dm_name else "")
           + f"  {a.kind} {a.level}  generation {a.generation}",
           f"lifecycle {a.lifecycle} since {(a.lifecycle_since_ns - t0_ns) / 1e9:.3f}s; "
           f"flags {','.join(a.flags) or '-'}; ro {a.ro}; suspended {a.suspended}"
           f"{' (dm suspended)' if a.dm_suspended else ''}",
           "", "State history:"]
    prev: int | None = None
    for ts, state in a.history:
        gap = "" if prev is None else f" (+{(ts - prev) / 1e9:.3f}s)"
        out.append(f"  {(ts - t0_ns) / 1e9:12.6f} {state}{gap}")
        prev = ts
    if not a.history:
        out.append("  (none)")
    out += ["", f"Locks held: {', '.join(a.locks_held) or '-'}", "Blocked IO:"]
    for io in a.blocked_io:
        out.append(f"  {io.comm}[{io.tid}] {io.rw} sector {io.sector}+{io.sectors} waiting "
                   f"{io.wait_ns / 1e9:.1f}s ({io.mode}"
                   f"{', across reshape' if io.across_reshape else ''})")
    if not a.blocked_io:
        out.append("  (none)")
    out += ["", "Lock graph (order seen, all arrays):"]
    for e in s.lock_order:
        out.append(f"  {e.first} -> {e.second}  x{e.count} (e.g. tid {e.example_tid})")
    if not s.lock_order:
        out.append("  (no lock edges recorded)")
    out += ["", "Findings:"]
    mine = [f for f in s.findings if f.array == a.name]
    for f in mine:
        out.extend(finding_lines(f, t0_ns, s.now_ns))
    if not mine:
        out.append("  (none)")
    if a.counters:
        out += ["", "Events: " + ", ".join(f"{k}={v}" for k, v in sorted(a.counters.items()))]
    return out
