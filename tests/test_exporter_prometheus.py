"""End to end with Debian's real Prometheus and promtool: a Prometheus server (loopback only,
temp storage, 1 s scrapes, our alert rules loaded) scrapes two `mdtrace exporter --replay`
processes fed by real 6.1 recordings; series values and alert states are read back through
its HTTP API and compared with what the engine computes on the same traces.  Also: promtool
checks, and every metric the dashboard and the alert rules name is exposed by a live scrape."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_exporter_support import (
    FROZEN,
    HEALTHY,
    ROOT,
    declared_names,
    exporter_proc,
    http_get,
    parse,
    replay_snapshot,
    sample_names,
    value,
    wait_for,
    write_prefix_until_active,
)

from mdtrace.engine.model import Snapshot

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
DASH = ROOT / "dashboards"
needs_prometheus = pytest.mark.skipif(
    not Path(PROMETHEUS).exists() or not Path(PROMTOOL).exists(),
    reason="Debian's prometheus package (prometheus + promtool) is not installed "
           "(scripts/install-system-deps.sh installs it)")
pytestmark = needs_prometheus

# metric families that legitimately have no samples on these traces (declared, 0 series):
# the engine has no ETA yet, no lock tracing was recorded, and nothing was lost
MAY_BE_EMPTY = {"mdtrace_array_sync_eta_seconds", "mdtrace_lock_order_edge_observations_total",
                "mdtrace_events_lost_total"}


_OPERATOR_COMMANDS = {"echo", "dmsetup", "mdadm", "lvchange", "fsck", "dmesg"}
# what mdtrace.engine.detectors.base's remedy helpers print for md and for dm-raid arrays
_HELPER_FORMS = {"sync_action_cmd": ("/md/sync_action", "dmsetup message"),
                 "resume_cmd": ("dmsetup resume", "echo active"),
                 "readwrite_cmd": ("mdadm --readwrite", "lvchange -p rw")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cut(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Snapshot]:
    path = write_prefix_until_active(FROZEN, tmp_path_factory.mktemp("cut") / "cut.jsonl.gz",
                                     {"F7", "F4"})
    return path, replay_snapshot(path)


@pytest.fixture(scope="module")
def exporters(cut: tuple[Path, Snapshot]) -> Iterator[dict[str, str]]:
    with exporter_proc("--replay", str(cut[0])) as frozen_url, \
            exporter_proc("--replay", str(HEALTHY[0])) as healthy_url:
        for url in (frozen_url, healthy_url):
            wait_for(lambda u=url: value(parse(http_get(u)[1].decode()),
                                         "mdtrace_replay_done") == 1, 30, f"{url} replay done")
        yield {"frozen": frozen_url, "healthy": healthy_url}


@pytest.fixture(scope="module")
def prometheus(exporters: dict[str, str], tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[str]:
    d = tmp_path_factory.mktemp("prom")
    shutil.copy(DASH / "alerts.yml", d / "alerts.yml")
    targets = {name: urllib.parse.urlsplit(url).netloc for name, url in exporters.items()}
    cfg = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(d / "alerts.yml")],
        "scrape_configs": [{"job_name": "mdtrace", "static_configs": [
            {"targets": [targets["frozen"]], "labels": {"trace": "frozen"}},
            {"targets": [targets["healthy"]], "labels": {"trace": "healthy"}}]}],
    }
    (d / "prometheus.yml").write_text(json.dumps(cfg))  # JSON is YAML
    port = _free_port()
    log = (d / "prometheus.log").open("w")
    p = subprocess.Popen([PROMETHEUS, f"--config.file={d / 'prometheus.yml'}",
                          f"--storage.tsdb.path={d / 'data'}",
                          f"--web.listen-address=127.0.0.1:{port}"],
                         stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: p.poll() is None and http_get(base + "/-/ready", 2)[0] == 200, 60,
                 "prometheus ready")
        yield base
    finally:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
        log.close()


def _query(base: str, q: str) -> list[dict[str, object]]:
    code, body = http_get(f"{base}/api/v1/query?query={urllib.parse.quote(q)}")
    assert code == 200, body[:300]
    data = json.loads(body)
    assert data["status"] == "success", data
    return list(data["data"]["result"])


def _scalar(base: str, q: str) -> float | None:
    res = _query(base, q)
    assert len(res) <= 1, res
    return float(res[0]["value"][1]) if res else None  # type: ignore[index]


def test_prometheus_scrapes_expected_values(prometheus: str, cut: tuple[Path, Snapshot]) -> None:
    snap = cut[1]
    wait_for(lambda: _query(prometheus, 'up{job="mdtrace"} == 1') and len(
        _query(prometheus, 'up{job="mdtrace"} == 1')) == 2, 30, "both targets up")
    wait_for(lambda: _query(prometheus, "mdtrace_findings_active"), 30, "first samples")
    active = [f for f in snap.findings if f.active]
    for code in ("F4", "F7"):
        want = sum(1 for f in active if f.code == code)
        assert want >= 1
        got = _scalar(prometheus, f'mdtrace_findings_active{{trace="frozen",code="{code}"}}')
        assert got == want, code
    assert _scalar(prometheus, 'sum(mdtrace_findings_raised_total{trace="healthy"})') == 0
    f7 = next(f for f in active if f.code == "F7")
    info = _query(prometheus, 'mdtrace_finding_info{trace="frozen",code="F7"}')
    assert [r["metric"]["remedy"] for r in info] == [f7.remedy]  # type: ignore[index]
    arr = snap.arrays[f7.array]
    assert _scalar(prometheus, f'mdtrace_array_lifecycle{{trace="frozen",array="{arr.name}",'
                               f'state="{arr.lifecycle.value}"}}') == 1
    assert _scalar(prometheus, f'mdtrace_array_blocked_io{{trace="frozen",'
                               f'array="{arr.name}"}}') == len(arr.blocked_io)
    assert _scalar(prometheus, 'sum(mdtrace_events_total{trace="frozen"})') == \
        snap.health.events_total
    healthy = replay_snapshot(HEALTHY[0])
    assert _scalar(prometheus, 'mdtrace_arrays{trace="healthy"}') == len(healthy.arrays)


def test_prometheus_evaluates_alert_rules_on_live_series(prometheus: str,
                                                         cut: tuple[Path, Snapshot]) -> None:
    """The F7 and F4 alerts become pending (their `for` is 1m) from the real scraped series;
    no finding alert for the healthy target."""
    def alerts() -> list[dict[str, object]]:
        code, body = http_get(f"{prometheus}/api/v1/alerts")
        assert code == 200
        return list(json.loads(body)["data"]["alerts"])

    def names() -> set[str]:
        return {str(a["labels"]["alertname"]) for a in alerts()}  # type: ignore[index]
    got = wait_for(lambda: {"MdtraceReshapeIoBlocked", "MdtraceSyncThreadRegisteredOutsideDaemon"}
                   <= names() and names(), 30, "F7/F4 alerts pending")
    f7 = next(f for f in cut[1].findings if f.active and f.code == "F7")
    a7 = next(a for a in alerts() if a["labels"]["alertname"] == "MdtraceReshapeIoBlocked")  # type: ignore[index]
    assert a7["annotations"]["remedy"] == f7.remedy  # type: ignore[index]
    assert a7["labels"]["severity"] == str(f7.severity)  # type: ignore[index]
    assert [a for a in alerts() if a["labels"].get("trace") == "healthy"] == []  # type: ignore[union-attr]
    assert "MdtraceEventsLost" not in got


def test_promtool_check_and_test_rules() -> None:
    r = subprocess.run([PROMTOOL, "check", "rules", str(DASH / "alerts.yml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    n = int(re.search(r"SUCCESS: (\d+) rules found", r.stdout).group(1))  # type: ignore[union-attr]
    alerts_text = (DASH / "alerts.yml").read_text()
    assert n == alerts_text.count("- alert: ")
    for code in (f"F{i}" for i in range(1, 11)):
        assert f'code="{code}"' in alerts_text, f"no alert rule for {code}"
    r = subprocess.run([PROMTOOL, "test", "rules", str(DASH / "alerts_test.yml")],
                       capture_output=True, text=True, cwd=DASH)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    tests_text = (DASH / "alerts_test.yml").read_text()
    for name in re.findall(r"^  - alert: (\w+)", alerts_text, flags=re.M):
        assert re.search(rf"alertname: {name}\n\s+exp_alerts:\n\s+- exp_labels", tests_text), \
            f"no promtool test fires {name}"


def test_promtool_check_metrics_on_live_scrape(exporters: dict[str, str]) -> None:
    for url in exporters.values():
        body = http_get(url)[1]
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True)
        assert r.returncode == 0, (url, r.stdout.decode() + r.stderr.decode())
        assert b"mdtrace_tracer_info" in body


def _referenced(text: str) -> set[str]:
    return set(re.findall(r"\bmdtrace_[a-z0-9_]+", text))


def test_dashboard_and_rules_only_use_exposed_metrics(exporters: dict[str, str]) -> None:
    scrapes = [http_get(u)[1].decode() for u in exporters.values()]
    declared = set().union(*(declared_names(s) for s in scrapes))
    with_samples = set().union(*(sample_names(s) for s in scrapes))
    dash = json.loads((DASH / "mdtrace.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    used = _referenced("\n".join(exprs)) | _referenced((DASH / "alerts.yml").read_text())
    assert len(used) >= 20
    assert not used - declared, f"not exposed by the exporter: {sorted(used - declared)}"
    empty = used - with_samples
    assert empty <= MAY_BE_EMPTY, f"declared but without samples: {sorted(empty)}"


def test_dashboard_structure() -> None:
    dash = json.loads((DASH / "mdtrace.json").read_text())
    for key in ("uid", "title", "schemaVersion", "panels", "templating", "annotations"):
        assert key in dash
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    tvars = {v["name"]: v for v in dash["templating"]["list"]}
    assert tvars["datasource"]["type"] == "datasource" and tvars["datasource"]["query"] == \
        "prometheus"
    assert {"instance", "array"} <= set(tvars)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    known = {"row", "stat", "table", "timeseries", "state-timeline", "gauge", "bargauge"}
    titles = {p["title"] for p in dash["panels"] if p["type"] == "row"}
    assert {"Arrays overview", "Sync / reshape progress", "Blocked IO", "Findings",
            "Tracer health"} <= titles
    for p in dash["panels"]:
        assert p["type"] in known, p["type"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}"
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["expr"].strip() and t["expr"].count("(") == t["expr"].count(")")
            assert 'instance=~"$instance"' in t["expr"], (p["title"], t["expr"])


def test_dashboard_expressions_parse_in_prometheus(prometheus: str) -> None:
    """Prometheus itself parses every dashboard query (Grafana variables substituted)."""
    dash = json.loads((DASH / "mdtrace.json").read_text())
    for p in dash["panels"]:
        for t in p.get("targets", []):
            q = (t["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
                 .replace("$array", ".*"))
            code, body = http_get(f"{prometheus}/api/v1/query?query={urllib.parse.quote(q)}")
            assert code == 200, (p["title"], q, body[:300])


def test_alert_runbooks_match_detector_remedies() -> None:
    """Each command a detector's remedy tells the operator to run appears in the runbook of
    the alert for that detector's finding class(es)."""
    alerts = (DASH / "alerts.yml").read_text()
    blocks = re.split(r"\n  - alert: ", alerts)
    runbook: dict[str, str] = {}
    for b in blocks:
        m = re.search(r'code="(F\d+)"', b)
        if m:
            runbook[m.group(1)] = b
    checked = 0
    for det in sorted((ROOT / "mdtrace" / "engine" / "detectors").glob("*.py")):
        src = det.read_text()
        codes = set(re.findall(r'code="(F\d+)"', src))
        if not codes:
            continue
        text = " ".join(runbook.get(c, "") for c in codes)
        for cmd in re.findall(r"`([^`]+)`", src):
            words = " ".join(cmd.split()[:2])
            if cmd.split()[0] not in _OPERATOR_COMMANDS or "{" in words:
                continue  # docstring identifiers, not something the operator runs
            assert words in text, f"{det.name}: `{cmd}` not in the runbook of {sorted(codes)}"
            checked += 1
        # commands built by the per-kind helpers of detectors/base.py: both kinds' forms
        for helper, forms in _HELPER_FORMS.items():
            if helper + "(" in src:
                for words in forms:
                    assert words in text, f"{det.name}: {helper} ({words}) not in the " \
                                          f"runbook of {sorted(codes)}"
                    checked += 1
    assert checked >= 6
