"""Exporter unit tests: collector values against engine snapshots (real 6.1 golden traces and
synthetic scenarios), sync-action derivation, lock-order inversions, caching, auth, TLS and
the command's one-line errors."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
import threading
import urllib.error
import warnings
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry
from test_exporter_support import (
    FROZEN,
    HEALTHY,
    MDTRACE,
    ROOT,
    exporter_proc,
    http_get,
    parse,
    replay_snapshot,
    value,
    wait_for,
    write_prefix_until_active,
)

from mdtrace.engine.model import ArrayView, Lifecycle, LockEdgeView, Snapshot, TracerHealth
from mdtrace.errors import MdtraceError
from mdtrace.frontends.exporter.collector import (
    FINDING_CODES,
    SECTOR_BYTES,
    SnapshotCollector,
    sync_action,
)
from mdtrace.frontends.exporter.server import (
    BasicAuth,
    ExporterServer,
    MetricsApp,
    TlsFiles,
    bcrypt_available,
    parse_listen,
)
from mdtrace.kernel.flags import Recovery


def scrape_of(snap: Snapshot) -> str:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(lambda: snap))
    return generate_latest(reg).decode()


@pytest.fixture(scope="module")
def frozen_cut(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Snapshot]:
    path = write_prefix_until_active(FROZEN, tmp_path_factory.mktemp("cut") / "cut.jsonl.gz",
                                     {"F7", "F4"})
    return path, replay_snapshot(path)


# -- collector over real traces ------------------------------------------------------------
def test_frozen_reshape_cut_metrics_match_engine(frozen_cut: tuple[Path, Snapshot]) -> None:
    _path, snap = frozen_cut
    s = parse(scrape_of(snap))
    active = [f for f in snap.findings if f.active]
    assert {"F7", "F4"} <= {f.code for f in active}
    for code in FINDING_CODES:
        want = sum(1 for f in active if f.code == code)
        assert value(s, "mdtrace_findings_active", code=code) == want, code
        assert value(s, "mdtrace_findings_raised_total", code=code) == sum(
            1 for f in snap.findings if f.code == code)
    f7 = next(f for f in active if f.code == "F7")
    assert value(s, "mdtrace_finding_info", code="F7", array=f7.array, remedy=f7.remedy) == 1
    arr = snap.arrays[f7.array]
    lab = {"array": arr.name}
    assert value(s, "mdtrace_array_lifecycle", state=arr.lifecycle.value, **lab) == 1
    assert sum(v for (n, ls), v in s.items() if n == "mdtrace_array_lifecycle"
               and ("array", arr.name) in ls) == 1
    assert value(s, "mdtrace_array_blocked_io", **lab) == len(arr.blocked_io) > 0
    assert value(s, "mdtrace_array_blocked_io_oldest_wait_seconds", **lab) == pytest.approx(
        arr.oldest_wait_s)
    assert arr.reshape_pos is not None
    assert value(s, "mdtrace_array_reshape_position_bytes", **lab) == arr.reshape_pos * 512
    assert value(s, "mdtrace_array_sync_thread_registered", **lab) == int(arr.sync_thread)
    for flag in Recovery:
        if flag.value and flag.name:
            assert value(s, "mdtrace_array_recovery_flag", flag=flag.name, **lab) == int(
                flag.name in arr.recovery)
    assert value(s, "mdtrace_array_info", array=arr.name, level=arr.level, kind=arr.kind) == 1
    assert value(s, "mdtrace_array_findings_active", code="F7", **lab) == 1
    for kind, n in snap.health.events_by_kind.items():
        assert value(s, "mdtrace_events_total", event=kind) == n
    for probe, p in snap.health.probes.items():
        assert value(s, "mdtrace_probe_attached", probe=probe) == int(bool(p.get("attached")))
    assert value(s, "mdtrace_tracer_info", mode="replay", kernel=snap.health.kernel) == 1


@pytest.mark.parametrize("trace", HEALTHY, ids=lambda p: p.name.split(".")[0])
def test_healthy_trace_has_no_findings(trace: Path) -> None:
    snap = replay_snapshot(trace)
    s = parse(scrape_of(snap))
    assert snap.arrays, "the trace has arrays"
    for code in FINDING_CODES:
        assert value(s, "mdtrace_findings_active", code=code) == 0
        assert value(s, "mdtrace_findings_raised_total", code=code) == 0
    assert value(s, "mdtrace_arrays") == len(snap.arrays)
    for arr in snap.arrays.values():
        assert value(s, "mdtrace_array_state", array=arr.name, state="inactive") == int(
            arr.lifecycle is Lifecycle.STOPPED)
        assert value(s, "mdtrace_array_sync_total_bytes", array=arr.name) == (
            arr.progress_total * SECTOR_BYTES if arr.progress_total else None)


def test_synthetic_scenarios_expected_codes_raised(tmp_path: Path) -> None:
    """The lead's scenario library (when present): each expected code is counted as raised."""
    try:
        from tests.scenarios import SCENARIOS
    except ImportError:
        pytest.skip("tests/scenarios not available in this checkout")
    names = [n for n in ("healthy_resync", "f1_suspended_not_reaped_buggy",
                         "f7_frozen_reshape_io_buggy") if n in SCENARIOS]
    if not names:
        pytest.skip("none of the scenarios this test knows exist")
    for name in names:
        sc = SCENARIOS[name]
        snap = replay_snapshot(sc.write_trace(tmp_path / f"{name}.jsonl.gz"))
        s = parse(scrape_of(snap))
        raised = {c for c in FINDING_CODES if (value(s, "mdtrace_findings_raised_total",
                                                      code=c) or 0) > 0}
        assert raised == set(sc.expected), name


# -- derivations -------------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "thread", "want"), [
    (Recovery.NONE, False, "idle"),
    (Recovery.FROZEN | Recovery.RUNNING | Recovery.RESHAPE, True, "frozen"),
    (Recovery.RUNNING | Recovery.RESHAPE, True, "reshape"),
    (Recovery.RUNNING | Recovery.SYNC, True, "resync"),
    (Recovery.RUNNING | Recovery.SYNC | Recovery.REQUESTED | Recovery.CHECK, True, "check"),
    (Recovery.RUNNING | Recovery.SYNC | Recovery.REQUESTED, True, "repair"),
    (Recovery.RUNNING | Recovery.RECOVER, True, "recover"),
    (Recovery.NEEDED | Recovery.RECOVER, False, "recover"),
])
def test_sync_action_follows_md_action_show(flags: Recovery, thread: bool, want: str) -> None:
    arr = ArrayView(name="md9", recovery_mask=int(flags), sync_thread=thread)
    assert sync_action(arr) == want
    arr.sync_action = "check"  # what sysfs said wins over the derivation
    assert sync_action(arr) == "check"


def _snap(now_ns: int, arrays: dict[str, ArrayView], **kw: object) -> Snapshot:
    return Snapshot(now_ns=now_ns, arrays=arrays, findings=[], health=TracerHealth(), **kw)


def test_lock_order_inversions_counted() -> None:
    edges = [LockEdgeView("reconfig_mutex", "suspend_lock", 3, 1),
             LockEdgeView("suspend_lock", "reconfig_mutex", 1, 2),
             LockEdgeView("reconfig_mutex", "bitmap_mutex", 5, 3)]
    s = parse(scrape_of(_snap(1, {}, lock_order=edges)))
    assert value(s, "mdtrace_lock_order_edges") == 3
    assert value(s, "mdtrace_lock_order_inversions") == 1
    assert value(s, "mdtrace_lock_order_edge_observations_total", first="reconfig_mutex",
                 second="bitmap_mutex") == 5
    s0 = parse(scrape_of(_snap(1, {})))
    assert value(s0, "mdtrace_lock_order_inversions") == 0


def test_sync_speed_derived_in_engine_time() -> None:
    arr = ArrayView(name="md1", lifecycle=Lifecycle.SYNCING, progress_done=1000,
                    progress_total=10_000)
    snaps = [_snap(10_000_000_000, {"md1": arr})]
    col = SnapshotCollector(lambda: snaps[-1])
    reg = CollectorRegistry(auto_describe=False)
    reg.register(col)
    first = parse(generate_latest(reg).decode())
    assert value(first, "mdtrace_array_sync_speed_bytes_per_second", array="md1") is None
    arr2 = ArrayView(name="md1", lifecycle=Lifecycle.SYNCING, progress_done=5000,
                     progress_total=10_000)
    snaps.append(_snap(12_000_000_000, {"md1": arr2}))
    second = parse(generate_latest(reg).decode())
    want = (5000 - 1000) * SECTOR_BYTES / 2.0
    assert value(second, "mdtrace_array_sync_speed_bytes_per_second", array="md1") == want
    snaps.append(_snap(13_000_000_000, {"md1": ArrayView(name="md1",
                                                         lifecycle=Lifecycle.IDLE)}))
    third = parse(generate_latest(reg).decode())
    assert value(third, "mdtrace_array_sync_speed_bytes_per_second", array="md1") == 0


# -- HTTP layer ----------------------------------------------------------------------------
class _Counting:
    def __init__(self, snap: Snapshot) -> None:
        self.snap, self.calls = snap, 0

    def __call__(self) -> Snapshot:
        self.calls += 1
        return self.snap


def _app(snap: Snapshot, version: list[int], auth: BasicAuth | None = None
         ) -> tuple[MetricsApp, _Counting]:
    fn = _Counting(snap)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(fn))
    return MetricsApp(reg, version_fn=lambda: version[0], auth=auth), fn


def test_render_cached_per_engine_version_and_default_registry_untouched() -> None:
    before = set(prometheus_client.REGISTRY._names_to_collectors)
    version = [1]
    app, fn = _app(replay_snapshot(HEALTHY[0]), version)
    a = app.render()
    assert app.render() is a and fn.calls == 1
    version[0] = 2
    assert app.render() == a and fn.calls == 2
    assert set(prometheus_client.REGISTRY._names_to_collectors) == before
    assert not any(n.startswith("mdtrace") for n in prometheus_client.REGISTRY._names_to_collectors)


def _serve(app: MetricsApp, tls: TlsFiles | None = None) -> ExporterServer:
    srv = ExporterServer("127.0.0.1", 0, app, tls)
    srv.start()
    return srv


def test_http_paths_and_gzip() -> None:
    srv = _serve(_app(replay_snapshot(HEALTHY[0]), [1])[0])
    try:
        code, body = http_get(srv.url)
        assert code == 200 and b"mdtrace_tracer_info" in body
        code, body = http_get(srv.url, headers={"Accept-Encoding": "gzip"})
        import gzip

        assert code == 200 and b"mdtrace_tracer_info" in gzip.decompress(body)
        assert http_get(srv.url.replace("/metrics", "/nope"))[0] == 404
        assert http_get(srv.url.replace("/metrics", "/"))[0] == 200
    finally:
        srv.stop()


def _hash(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            pytest.skip("no stdlib crypt (Python 3.13+) to make a bcrypt hash")
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))


def test_basic_auth(tmp_path: Path) -> None:
    if not bcrypt_available():
        pytest.skip("no bcrypt verification available (pip install bcrypt)")
    f = tmp_path / "users"
    f.write_text(f"# comment\nprom:{_hash('s3cret')}\n")
    auth = BasicAuth.from_file(str(f))
    srv = _serve(_app(replay_snapshot(HEALTHY[0]), [1], auth)[0])

    def hdr(user: str, pw: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}
    try:
        assert http_get(srv.url)[0] == 401
        assert http_get(srv.url, headers=hdr("prom", "wrong"))[0] == 401
        assert http_get(srv.url, headers=hdr("other", "s3cret"))[0] == 401
        code, body = http_get(srv.url, headers=hdr("prom", "s3cret"))
        assert code == 200 and b"mdtrace_arrays" in body
        assert http_get(srv.url, headers=hdr("prom", "s3cret"))[0] == 200  # cached path
    finally:
        srv.stop()
    bad = tmp_path / "bad"
    bad.write_text("prom:plaintext\n")
    with pytest.raises(MdtraceError, match="USER:BCRYPT_HASH"):
        BasicAuth.from_file(str(bad))


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(crt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"openssl cannot make a test certificate: {r.stderr.strip()[:200]}")
    return str(crt), str(key)


def test_tls_serves_and_plain_http_client_fails_cleanly(cert: tuple[str, str]) -> None:
    crt, key = cert
    srv = _serve(_app(replay_snapshot(HEALTHY[0]), [1])[0], TlsFiles(crt, key))
    try:
        assert srv.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=crt)
        code, body = http_get(srv.url, context=ctx)
        assert code == 200 and b"mdtrace_tracer_info" in body
        # a plaintext client must not wedge the server for the next one
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            s.recv(100)
        assert http_get(srv.url, context=ctx)[0] == 200
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            http_get(srv.url, context=ssl.create_default_context())  # untrusted: refused
    finally:
        srv.stop()


def test_mutual_tls_requires_client_certificate(cert: tuple[str, str]) -> None:
    crt, key = cert  # self-signed (CA:TRUE): serves as CA, server and client certificate
    srv = _serve(_app(replay_snapshot(HEALTHY[0]), [1])[0], TlsFiles(crt, key, client_ca=crt))
    try:
        with_cert = ssl.create_default_context(cafile=crt)
        with_cert.load_cert_chain(crt, key)
        code, body = http_get(srv.url, context=with_cert)
        assert code == 200 and b"mdtrace_arrays" in body
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            http_get(srv.url, context=ssl.create_default_context(cafile=crt))
    finally:
        srv.stop()


def test_tls_bad_files_one_line(tmp_path: Path, cert: tuple[str, str]) -> None:
    crt, key = cert
    with pytest.raises(MdtraceError, match="no such file"):
        TlsFiles(str(tmp_path / "missing.pem"), key).context()
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(MdtraceError, match="cannot load certificate"):
        TlsFiles(str(junk), key).context()


@pytest.mark.parametrize(("spec", "msg"), [
    ("nonsense", "expected HOST:PORT"), ("127.0.0.1:http", "not a number"),
    ("127.0.0.1:70000", "outside 0-65535"), ("no.such.host.invalid:1234", "cannot resolve"),
])
def test_parse_listen_errors(spec: str, msg: str) -> None:
    with pytest.raises(MdtraceError, match=msg):
        parse_listen(spec)


def test_parse_listen_ok() -> None:
    assert parse_listen("127.0.0.1:10820") == ("127.0.0.1", 10820)
    assert parse_listen("[::1]:0") == ("::1", 0)


# -- the command -----------------------------------------------------------------------------
def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MDTRACE, "exporter", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _one_line_error(r: subprocess.CompletedProcess[str], needle: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_cli_errors_are_one_line(tmp_path: Path, cert: tuple[str, str]) -> None:
    trace = str(HEALTHY[0])
    _one_line_error(_run("--listen", "nonsense", "--replay", trace), "expected HOST:PORT")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _one_line_error(_run("--listen", f"127.0.0.1:{port}", "--replay", trace),
                        "already in use")
    _one_line_error(_run("--listen", "127.0.0.1:0", "--replay", trace, "--tls-cert",
                         str(tmp_path / "nope.pem"), "--tls-key", cert[1]), "no such file")
    _one_line_error(_run("--listen", "127.0.0.1:0", "--replay", trace, "--tls-cert", cert[0]),
                    "go together")
    _one_line_error(_run("--listen", "127.0.0.1:0", "--replay", str(tmp_path / "none.gz")),
                    "cannot read trace")
    _one_line_error(_run("--listen", "127.0.0.1:0", "--loop"), "--loop needs --replay")


def test_cli_replay_loop_counts_passes() -> None:
    with exporter_proc("--replay", str(HEALTHY[1]), "--loop") as url:
        def loops() -> float:
            v = value(parse(http_get(url)[1].decode()), "mdtrace_replay_loops_total")
            return v if v is not None and v >= 2 else 0
        assert wait_for(loops, 20, "two replay passes") >= 2


def test_cli_live_sysfs_fallback(tmp_path: Path) -> None:
    """Live mode on a host without md: the sysfs source serves an empty but healthy view."""
    (tmp_path / "sys" / "block").mkdir(parents=True)
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "mdstat").write_text("Personalities :\nunused devices: <none>\n")
    with exporter_proc("--source", "sysfs", "--sysfs-root", str(tmp_path),
                       "--interval", "0.2") as url:
        s = parse(wait_for(lambda: http_get(url)[1].decode(), 10, "a scrape"))
        assert value(s, "mdtrace_tracer_info", mode="sysfs") == 1
        assert value(s, "mdtrace_probe_attached", probe="sysfs") == 1
        assert value(s, "mdtrace_arrays") == 0


def test_threads_do_not_leak_after_stop() -> None:
    before = threading.active_count()
    srv = _serve(_app(replay_snapshot(HEALTHY[0]), [1])[0])
    assert http_get(srv.url)[0] == 200
    srv.stop()
    assert wait_for(lambda: threading.active_count() <= before, 5, "server threads to end")


def test_sysfs_disks_reach_the_metrics() -> None:
    """raid_disks / degraded from the sysfs poller become node_md-style gauges."""
    from prometheus_client import CollectorRegistry, generate_latest

    from mdtrace.engine.core import Engine
    from mdtrace.events import Event
    from mdtrace.frontends.exporter.collector import SnapshotCollector

    eng = Engine(mode="sysfs")
    eng.feed(Event(ts=1, kind="sysfs_state", array="md0", args={
        "level": "raid5", "array_state": "clean", "sync_action": "recover", "ro": 0,
        "degraded": 1, "raid_disks": 4}))
    reg = CollectorRegistry()
    reg.register(SnapshotCollector(eng.snapshot))
    text = generate_latest(reg).decode()
    assert 'mdtrace_array_disks_required{array="md0",device="md0"} 4.0' in text
    assert 'mdtrace_array_degraded_disks{array="md0",device="md0"} 1.0' in text
