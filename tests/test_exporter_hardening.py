"""Exporter server limits (issue 13, row 10): idle and slow clients cost no thread and are
timed out, the connection cap makes room by closing the oldest idle connection, auth answers
cost the same for an unknown user and a wrong password, TLS file errors name the file."""

from __future__ import annotations

import base64
import socket
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.registry import CollectorRegistry
from test_exporter_support import http_get

from mdtrace.engine.core import Engine
from mdtrace.errors import MdtraceError
from mdtrace.frontends.exporter import server as srvmod
from mdtrace.frontends.exporter.collector import SnapshotCollector
from mdtrace.frontends.exporter.server import (
    BasicAuth,
    ExporterServer,
    Limits,
    MetricsApp,
    TlsFiles,
)


def _server(limits: Limits, auth: BasicAuth | None = None) -> ExporterServer:
    eng = Engine(mode="live")
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(eng.snapshot))
    srv = ExporterServer("127.0.0.1", 0, MetricsApp(reg, auth=auth), limits=limits)
    srv.start()
    return srv


def _closed_within(s: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``s`` (None if it stayed open that long)."""
    t0 = time.monotonic()
    s.settimeout(seconds)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return time.monotonic() - t0
    except TimeoutError:
        return None
    except OSError:
        return time.monotonic() - t0


def test_idle_connections_cost_no_thread_and_the_cap_makes_room() -> None:
    srv = _server(Limits(workers=2, max_connections=50, idle_timeout_s=30))
    socks: list[socket.socket] = []
    try:
        threads_before = threading.active_count()
        for _ in range(200):
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        deadline = time.monotonic() + 5
        while srv.evicted < 150 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.connections <= 50
        assert srv.evicted >= 150          # the oldest idle ones made room
        t0 = time.monotonic()
        code, body = http_get(srv.url, timeout=5)
        assert code == 200 and b"mdtrace_arrays" in body
        assert time.monotonic() - t0 < 1.0
        # one selector thread and at most 2 workers, whatever the clients do
        assert threading.active_count() - threads_before <= 2
        assert _closed_within(socks[0], 1.0) is not None   # evicted: the client sees EOF
    finally:
        for s in socks:
            s.close()
        srv.stop()


def test_idle_and_slow_clients_time_out() -> None:
    srv = _server(Limits(idle_timeout_s=0.5, request_timeout_s=1.0))
    try:
        idle = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        took = _closed_within(idle, 3.0)
        assert took is not None and took < 2.0
        slow = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        t0, closed = time.monotonic(), False
        for ch in b"GET /metrics HTTP/1.1\r\nHost: x\r\n":   # one byte every 0.1 s
            try:
                slow.sendall(bytes([ch]))
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            if time.monotonic() - t0 > 3:
                break
        took = _closed_within(slow, 3.0) if not closed else time.monotonic() - t0
        assert took is not None, "a slow client outlived the whole-request timeout"
        assert time.monotonic() - t0 < 3.5
        assert srv.timed_out >= 2
        assert http_get(srv.url)[0] == 200
    finally:
        srv.stop()


def test_bad_and_oversized_requests_get_a_status() -> None:
    srv = _server(Limits(max_request_bytes=1024))
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"NONSENSE\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 400")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 2000)
            assert s.recv(100).startswith(b"HTTP/1.1 431")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            head = s.recv(65536)
            assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
    finally:
        srv.stop()


def test_auth_costs_the_same_for_unknown_user_and_wrong_password(monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(srvmod, "_bcrypt_check",
                        lambda pw, hashed: calls.append(hashed) or pw == "right")
    cheap, dear = "$2b$04$" + "a" * 53, "$2b$12$" + "b" * 53
    auth = BasicAuth({"prom": dear, "ops": cheap})

    def hdr(user: str, pw: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()

    assert not auth.check(hdr("prom", "wrong"))
    assert calls == [dear]
    calls.clear()
    assert not auth.check(hdr("nobody", "wrong"))
    assert calls == [dear]                 # one bcrypt of the costliest hash, like a user's
    calls.clear()
    assert not auth.check("Basic " + base64.b64encode(b"no-colon").decode())
    assert len(calls) == 1
    calls.clear()
    assert auth.check(hdr("prom", "right")) and auth.check(hdr("prom", "right"))
    assert calls == [dear]                 # verified once, then remembered


def test_tls_missing_files_are_named(tmp_path: Path) -> None:
    real = tmp_path / "real.pem"
    real.write_text("x\n")
    for cert, key, opt, missing in (
            (tmp_path / "nope.pem", real, "--tls-cert", "nope.pem"),
            (real, tmp_path / "gone.key", "--tls-key", "gone.key")):
        with pytest.raises(MdtraceError) as err:
            TlsFiles(str(cert), str(key)).context()
        msg = str(err.value)
        assert opt in msg and missing in msg and "no such file" in msg and "None" not in msg
    with pytest.raises(MdtraceError, match="--tls-client-ca .*absent.pem"):
        TlsFiles(str(real), str(real), str(tmp_path / "absent.pem")).context()
