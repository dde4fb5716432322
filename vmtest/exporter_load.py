"""Concurrent scrape load against an exporter: the shared core of the load test and the bench.

Each client thread scrapes in a loop on a fresh connection (as Prometheus does per target),
checks the status and that the body ends like a complete exposition, and records latency.
"""

from __future__ import annotations

import base64
import http.client
import math
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    clients: int
    duration_s: float
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def scrapes(self) -> int:
        return len(self.latencies_s)

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile of the scrape latencies (0 when there were none)."""
        if not self.latencies_s:
            return 0.0
        xs = sorted(self.latencies_s)
        return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]

    def summary(self) -> str:
        return (f"{self.clients} clients x {self.duration_s:.0f}s: {self.scrapes} scrapes "
                f"({self.scrapes / max(self.duration_s, 1e-9):.0f}/s), {len(self.errors)} errors, "
                f"latency p50 {self.quantile(0.5) * 1e3:.1f} ms, "
                f"p99 {self.quantile(0.99) * 1e3:.1f} ms, "
                f"max {max(self.latencies_s, default=0) * 1e3:.1f} ms")


def scrape_load(url: str, *, clients: int = 50, duration_s: float = 30.0,
                timeout_s: float = 10.0, user: str | None = None, password: str | None = None,
                ssl_context: ssl.SSLContext | None = None,
                expect: bytes = b"mdtrace_tracer_info") -> LoadResult:
    """Run ``clients`` threads scraping ``url`` for ``duration_s``; every failure is recorded."""
    u = urllib.parse.urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or (443 if u.scheme == "https" else 80)
    headers = {"Accept-Encoding": "identity"}
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    res = LoadResult(clients, duration_s)
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def one() -> None:
        conn: http.client.HTTPConnection
        if u.scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=timeout_s,
                                               context=ssl_context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        t0 = time.perf_counter()
        try:
            conn.request("GET", u.path or "/metrics", headers=headers)
            r = conn.getresponse()
            body = r.read()
            dt = time.perf_counter() - t0
            if r.status != 200:
                err = f"HTTP {r.status}"
            elif expect not in body or not body.endswith(b"\n"):
                err = f"incomplete body ({len(body)} bytes)"
            else:
                err = ""
        except (OSError, http.client.HTTPException) as exc:
            dt, err = time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        with lock:
            if err:
                res.errors.append(err)
            else:
                res.latencies_s.append(dt)

    def worker() -> None:
        start.wait()
        while time.monotonic() < deadline[0]:
            one()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for th in threads:
        th.start()
    deadline[0] = time.monotonic() + duration_s
    start.wait()
    for th in threads:
        th.join(duration_s + timeout_s + 5)
    return res
