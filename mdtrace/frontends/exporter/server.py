"""HTTP(S) serving of the exporter's registry, with optional TLS and basic auth.

Why not prometheus_client.start_http_server: (0.26) it has TLS but no basic auth, it does the
TLS handshake in the accepting thread (one slow client stalls every scraper), its listen
backlog is 5 (50 concurrent scrapers get SYN retries), and it re-renders on every request.
Here a scrape renders once per engine change and concurrent scrapers share that body.
"""

from __future__ import annotations

import base64
import binascii
import errno
import gzip
import hashlib
import hmac
import socket
import ssl
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from mdtrace.errors import MdtraceError

DEFAULT_PORT = 10820
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"

StartResponse = Callable[..., Any]


def parse_listen(spec: str) -> tuple[str, int]:
    """'127.0.0.1:10820', '[::1]:10820', 'localhost:0' -> (host, port); one-line errors."""
    host, sep, port_s = spec.rpartition(":")
    if not sep or not host:
        raise MdtraceError(f"bad --listen {spec!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_s)
    except ValueError:
        raise MdtraceError(f"bad --listen {spec!r}: port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise MdtraceError(f"bad --listen {spec!r}: port {port} is outside 0-65535")
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise MdtraceError(f"bad --listen {spec!r}: cannot resolve host {host!r} "
                           f"({exc})") from None
    return host, port


# -- basic auth ----------------------------------------------------------------------------
def _bcrypt_check(password: str, hashed: str) -> bool:
    try:
        import bcrypt  # type: ignore[import-not-found]

        return bool(bcrypt.checkpw(password.encode(), hashed.encode()))
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # stdlib up to 3.12; glibc/libxcrypt verifies $2b$/$2y$ bcrypt

    out = crypt.crypt(password, hashed)
    return out is not None and hmac.compare_digest(out, hashed)


_PROBE_HASH = "$2b$04$abcdefghijklmnopqrstuuRMvyrmbNTq30V7SN3gRQh9BQh.7SMhC"  # "mdtrace"


def bcrypt_available() -> bool:
    """Whether this Python can verify bcrypt hashes (bcrypt module, or stdlib crypt)."""
    try:
        return _bcrypt_check("mdtrace", _PROBE_HASH) and not _bcrypt_check("x", _PROBE_HASH)
    except Exception:  # noqa: BLE001 - any failure means "cannot verify"
        return False


class BasicAuth:
    """``user:bcrypt-hash`` lines (what `htpasswd -nB user` prints).  Verified passwords are
    remembered by their SHA-256 so a scraper does not pay bcrypt's cost on every scrape."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self._ok: set[tuple[str, bytes]] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str) -> BasicAuth:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise MdtraceError(f"cannot read --basic-auth-file {path}: "
                               f"{exc.strerror or exc}") from None
        users: dict[str, str] = {}
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                raise MdtraceError(f"{path}:{n}: expected USER:BCRYPT_HASH (make one with "
                                   "`htpasswd -nB USER`)")
            users[user] = hashed.replace("$2y$", "$2b$", 1)
        if not users:
            raise MdtraceError(f"{path}: no users (lines of USER:BCRYPT_HASH)")
        if not bcrypt_available():
            raise MdtraceError("basic auth needs bcrypt verification: `pip install bcrypt` "
                               "into mdtrace's environment")
        return cls(users)

    def check(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            user, sep, password = base64.b64decode(header[6:], validate=True).decode(
                "utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if not sep or hashed is None:
            return False
        key = (user, hashlib.sha256(password.encode()).digest())
        with self._lock:
            if key in self._ok:
                return True
        if not _bcrypt_check(password, hashed):
            return False
        with self._lock:
            self._ok.add(key)
        return True


# -- TLS -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TlsFiles:
    certfile: str
    keyfile: str
    client_ca: str | None = None  # require client certificates signed by this CA

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        except FileNotFoundError as exc:
            raise MdtraceError(f"TLS: cannot read {exc.filename}: no such file") from None
        except (ssl.SSLError, OSError) as exc:
            raise MdtraceError(f"TLS: cannot load certificate {self.certfile} with key "
                               f"{self.keyfile}: {getattr(exc, 'reason', None) or exc} "
                               "(both must be PEM and match)") from None
        if self.client_ca:
            try:
                ctx.load_verify_locations(cafile=self.client_ca)
            except (ssl.SSLError, OSError) as exc:
                raise MdtraceError(f"TLS: cannot load client CA {self.client_ca}: "
                                   f"{getattr(exc, 'reason', None) or exc}") from None
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


# -- WSGI app --------------------------------------------------------------------------------
class MetricsApp:
    """/metrics (text format 0.0.4, gzip when asked), / (a link), 404 otherwise.

    ``version_fn`` returns a value that changes whenever the engine changed; the rendered
    body is reused while it does not, and only one thread renders at a time.
    """

    def __init__(self, registry: CollectorRegistry, *,
                 version_fn: Callable[[], object] | None = None,
                 auth: BasicAuth | None = None) -> None:
        self.registry = registry
        self.version_fn = version_fn
        self.auth = auth
        self._lock = threading.Lock()
        self._key: object = object()
        self._body = b""
        self._gz: bytes | None = None
        self.scrapes = 0

    def render(self, want_gzip: bool = False) -> bytes:
        with self._lock:
            key = self.version_fn() if self.version_fn is not None else object()
            if key != self._key or self.version_fn is None:
                self._body = generate_latest(self.registry)
                self._gz = None
                self._key = key
            self.scrapes += 1
            if not want_gzip:
                return self._body
            if self._gz is None:
                self._gz = gzip.compress(self._body, compresslevel=1)
            return self._gz

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self.auth is not None and not self.auth.check(environ.get("HTTP_AUTHORIZATION", "")):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="mdtrace"'),
                                                ("Content-Type", "text/plain")])
            return [b"401 unauthorized\n"]
        path = environ.get("PATH_INFO", "/")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"),
                                                      ("Content-Type", "text/plain")])
            return [b"405 method not allowed\n"]
        if path == "/metrics":
            gz = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
            body = self.render(gz)
            headers = [("Content-Type", CONTENT_TYPE_LATEST),
                       ("Content-Length", str(len(body)))]
            if gz:
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [body]
        if path == "/":
            body = (b"<html><head><title>mdtrace exporter</title></head><body>"
                    b"<h1>mdtrace exporter</h1><p><a href=\"/metrics\">Metrics</a></p>"
                    b"</body></html>\n")
            start_response("200 OK", [("Content-Type", "text/html"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"404 not found: try /metrics\n"]


class _QuietHandler(WSGIRequestHandler):
    timeout = 30  # a stuck client costs one thread for at most this long

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 256
    ssl_context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        if self.ssl_context is not None:
            # handshake on first read, in the request's own thread, not the accept loop
            sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that breaks the connection (or fails TLS) is its problem: no traceback."""
        self.errors += 1

    errors = 0


class ExporterServer:
    """Binds at construction (so a bad address or busy port fails before anything starts),
    serves in a daemon thread after :meth:`start`."""

    def __init__(self, host: str, port: int, app: MetricsApp | None,
                 tls: TlsFiles | None = None) -> None:
        ctx = tls.context() if tls is not None else None
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]

        class Server(_Server):
            address_family = family

        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.httpd = Server((host, port), _QuietHandler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MdtraceError(f"cannot listen on {where}: port already in use (another "
                                   "exporter running? pick one with --listen HOST:PORT)"
                                   ) from None
            if exc.errno == errno.EACCES:
                raise MdtraceError(f"cannot listen on {where}: permission denied "
                                   "(ports below 1024 need root)") from None
            raise MdtraceError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        self.httpd.ssl_context = ctx
        self.app: MetricsApp | None = None
        if app is not None:
            self.set_app(app)
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self.scheme = "https" if ctx is not None else "http"
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="mdtrace-exporter-http", daemon=True)

    def set_app(self, app: MetricsApp) -> None:
        self.httpd.set_app(app)
        self.app = app

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/metrics"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()
