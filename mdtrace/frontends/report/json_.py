"""JSON report, schema_version 1.

The keys of the first version (``findings[].code/title/array/severity/start_s/...``,
``arrays.<name>.kind/dm_name/level/lifecycle/history/recovery``, ``health``) are kept as they
were: the vm tier and scripts read them.  Everything else is additive: ``duration_s``,
``t0_ns``, per-finding ``end_s``/``evidence``, and ``timelines`` (the series the HTML draws).

Every ``*_s`` is seconds since the trace start (``t0_ns``, its first event: the origin of
``mdtrace replay`` and of the other formats; before issue 16 ``start_s`` counted from the first
lifecycle point, a different origin).  ``t0_wall`` is the header's wall-clock start.
"""

from __future__ import annotations

import json
from typing import Any

from mdtrace.frontends.report.build import ReportModel
from mdtrace.frontends.report.common import finding_end, finding_facts

SCHEMA_VERSION = 1


def _s(model: ReportModel, ns: int) -> float:
    return round((ns - model.first_ns) / 1e9, 6)


def as_dict(model: ReportModel) -> dict[str, Any]:
    """The report as plain JSON-able data."""
    snap = model.snapshot
    t0 = model.first_ns
    findings = []
    for f in snap.findings:
        x = finding_facts(model, f)
        findings.append({
            "code": f.code, "title": f.title, "array": f.array, "severity": str(f.severity),
            "start_s": round((f.start_ns - t0) / 1e9, 3), "start_ns": f.start_ns,
            "end_ns": f.end_ns, "active": f.active, "explanation": f.explanation,
            "fix": f.fix, "remedy": f.remedy, "details": f.details,
            # additive
            "end_s": round((finding_end(model, f) - t0) / 1e9, 3),
            "duration_s": round(x.duration_s, 3), "ended_by": x.ended_by,
            "task": x.task, "total_wait_s": None if x.total_wait_s is None
            else round(x.total_wait_s, 3), "state_at_start": x.state_at_start,
            "evidence": [{"ts": e.ts, "kind": e.kind, "tid": e.tid, "comm": e.comm,
                          "recovery": e.state.recovery_names() if e.state else []}
                         for e in f.evidence],
        })
    arrays: dict[str, dict[str, Any]] = {name: {
        "kind": a.kind, "dm_name": a.dm_name, "level": a.level, "lifecycle": str(a.lifecycle),
        "history": [s for i, (_, s) in enumerate(a.history)
                    if i == 0 or a.history[i - 1][1] != s],
        "recovery": a.recovery,
    } for name, a in snap.arrays.items()}
    if model.kind == "diagnose":      # the kernel's own mddev words, or why they are absent
        kview = model.header.meta.get("kernel_state") or {}
        for name, arr in arrays.items():
            arr["kernel_state"] = kview.get(name) or {"read": False,
                                                      "reason": "not read for this array"}
    end = model.last_ns
    timelines: dict[str, Any] = {}
    for name, tl in model.timelines.items():
        timelines[name] = {
            "first_s": _s(model, tl.first_ns), "last_s": _s(model, tl.last_ns),
            "events": tl.events, "thinned": tl.thinned,
            "lifecycle": [[_s(model, a), _s(model, b), st]
                          for a, b, st in tl.lifecycle_spans(end)],
            "flags": {lane: [[_s(model, a), _s(model, b)] for a, b in spans]
                      for lane, spans in tl.lane_spans(end).items()},
            "dm_suspended": [[_s(model, a), _s(model, b)] for a, b in tl.dm_spans(end)],
            "blocked_io": [{"io_id": io.io_id, "start_s": _s(model, io.start_ns),
                            "end_s": _s(model, io.end_ns if io.done else end),
                            "done": io.done, "tid": io.tid, "comm": io.comm,
                            "sector": io.sector, "sectors": io.sectors, "rw": io.rw,
                            "mode": io.mode} for io in tl.ios.values()],
            "progress": [[_s(model, ts), done, total] for ts, done, total in tl.progress],
        }
    return {
        "schema_version": SCHEMA_VERSION, "trace": model.path, "kernel": model.header.kernel,
        "source": model.header.source, "events": model.events_read,
        "bad_lines": model.bad_lines, "findings": findings, "arrays": arrays,
        "health": {"events_by_kind": dict(sorted(snap.health.events_by_kind.items())),
                   "lost": snap.health.lost_total},
        # additive
        "t0_ns": model.first_ns, "t0_wall": model.header.created,
        "duration_s": _s(model, model.last_ns) if model.first_ns else 0,
        "timelines": timelines,
        "kind": model.kind, "notes": list(model.notes),
        "abrupt_end": model.abrupt_end or None, "errors": list(model.errors),
        "recorder_end": dict(model.recorder_end) or None,
        "blocked_tasks": [{
            "tid": b.tid, "pid": b.pid, "comm": b.comm, "state": b.state, "wchan": b.wchan,
            "frames": list(b.frames), "blocked_s": b.blocked_s, "array": b.array,
            "tie": b.tie, "wait": b.wait, "wait_frame": b.wait_frame, "what": b.what,
            "suspending": b.suspending, "timed_wait": b.timed_wait or None}
            for b in snap.blocked_tasks],
    }


def render(model: ReportModel) -> str:
    return json.dumps(as_dict(model), indent=1, default=str) + "\n"
