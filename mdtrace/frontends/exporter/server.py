"""HTTP(S) serving of the exporter's registry, with optional TLS and basic auth.

Why not prometheus_client.start_http_server: (0.26) it has TLS but no basic auth, it does the
TLS handshake in the accepting thread (one slow client stalls every scraper), its listen
backlog is 5 (50 concurrent scrapers get SYN retries), and it re-renders on every request.
Here a scrape renders once per engine change and concurrent scrapers share that body.

Why not socketserver.ThreadingMixIn (the first version): one thread per connection, no cap,
and its timeout is per recv, so 2,000 idle connections were 2,003 threads and a client
sending a byte every 10 s lived forever.  Here idle and slow clients wait in one selector
(an fd each, no thread), under a connection cap and an idle and a whole-request deadline
(:class:`Limits`), and only complete requests reach a fixed pool of workers.
"""

from __future__ import annotations

import base64
import binascii
import errno
import gzip
import hashlib
import hmac
import io
import os
import selectors
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from mdtrace.errors import MdtraceError
from mdtrace.privileges import confine_thread

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


def _bcrypt_cost(hashed: str) -> int:
    """The cost factor of a ``$2b$NN$...`` hash (0 if unreadable)."""
    parts = hashed.split("$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else 0


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
        # an unknown user is checked against the costliest real hash, so it answers as
        # slowly as a wrong password (usernames are not guessable by timing)
        self._decoy = max(users.values(), key=_bcrypt_cost) if users else _PROBE_HASH

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
        hashed = self.users.get(user) if sep else None
        if hashed is None:
            _bcrypt_check(password, self._decoy)    # same cost; the answer is no anyway
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
        for opt, path in (("--tls-cert", self.certfile), ("--tls-key", self.keyfile),
                          ("--tls-client-ca", self.client_ca)):
            if path is None:
                continue
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                why = "no such file" if isinstance(exc, FileNotFoundError) else (
                    exc.strerror or str(exc))
                raise MdtraceError(f"TLS: cannot read {opt} {path}: {why}") from None
            if os.path.isdir(path):
                raise MdtraceError(f"TLS: {opt} {path} is a directory, not a PEM file")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        except FileNotFoundError as exc:    # vanished since the check above
            raise MdtraceError(f"TLS: cannot read {exc.filename or self.certfile}: no such "
                               "file") from None
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


# -- serving ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """What one client may cost.  An idle or slow connection costs a file descriptor and a
    selector entry, never a thread: only a complete request reaches the worker pool."""

    workers: int = 4                  # threads rendering and writing responses
    max_connections: int = 1024       # open at once; the oldest idle one makes room
    idle_timeout_s: float = 30.0      # connected, not a byte sent
    request_timeout_s: float = 10.0   # first byte to complete request head (slow client)
    write_timeout_s: float = 10.0     # whole response written
    max_request_bytes: int = 16384    # request head


_HEAD_END = b"\r\n\r\n"


class _Conn:
    __slots__ = ("sock", "addr", "opened", "first_byte", "buf", "handshaking", "want_write")

    def __init__(self, sock: socket.socket, addr: Any, now: float, tls: bool) -> None:
        self.sock, self.addr, self.opened = sock, addr, now
        self.first_byte: float | None = None
        self.buf = bytearray()
        self.handshaking = tls
        self.want_write = False


class ExporterServer:
    """Binds at construction (so a bad address or busy port fails before anything starts),
    serves after :meth:`start`: one selector thread accepts connections, does TLS handshakes
    and reads request heads without blocking; a bounded pool of workers answers complete
    requests (one request per connection, ``Connection: close``).  Thread count: 1 +
    ``limits.workers`` whatever the clients do."""

    def __init__(self, host: str, port: int, app: MetricsApp | None,
                 tls: TlsFiles | None = None, limits: Limits | None = None,
                 confine: Callable[[], object] | None = None) -> None:
        """``confine``: run first in every serving thread (default
        :func:`mdtrace.privileges.confine_thread`: as root, the thread becomes nobody with no
        capabilities, so HTTP and TLS are never parsed as root; a no-op otherwise)."""
        self.confine = confine if confine is not None else confine_thread
        self.confined: list[object] = []     # what each serving thread's confine returned
        self.ssl_context = tls.context() if tls is not None else None
        self.limits = limits or Limits()
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(256)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise MdtraceError(f"cannot listen on {where}: port already in use (another "
                                   "exporter running? pick one with --listen HOST:PORT)"
                                   ) from None
            if exc.errno == errno.EACCES:
                raise MdtraceError(f"cannot listen on {where}: permission denied "
                                   "(ports below 1024 need root)") from None
            raise MdtraceError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        sock.setblocking(False)
        self._sock = sock
        self.app: MetricsApp | None = app
        self.host = host
        self.port = int(sock.getsockname()[1])
        self.scheme = "https" if self.ssl_context is not None else "http"
        self.errors = 0          # connections ended by a client or TLS failure
        self.evicted = 0         # idle connections closed to make room (connection cap)
        self.timed_out = 0       # idle / slow connections closed by a timeout
        self._conns: dict[int, _Conn] = {}      # fileno -> connection (selector thread only)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=self.limits.workers,
                                        thread_name_prefix="mdtrace-exporter-worker",
                                        initializer=self._confine)
        self._thread = threading.Thread(target=self._loop, name="mdtrace-exporter-http",
                                        daemon=True)

    def set_app(self, app: MetricsApp) -> None:
        self.app = app

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/metrics"

    @property
    def connections(self) -> int:
        return len(self._conns)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for c in list(self._conns.values()):
            self._close(c)
        for s in (self._sock, self._wake_r, self._wake_w):
            s.close()
        self._sel.close()

    def _confine(self) -> None:
        self.confined.append(self.confine())

    # -- selector thread -----------------------------------------------------------------------
    def _loop(self) -> None:
        self._confine()
        sel = self._sel
        sel.register(self._sock, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        last_sweep = time.monotonic()
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.25):
                if key.fileobj is self._sock:
                    self._accept()
                elif key.fileobj is self._wake_r:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                else:
                    self._readable(key.data)
            now = time.monotonic()
            if now - last_sweep >= 0.25:
                last_sweep = now
                self._sweep(now)

    def _accept(self) -> None:
        lim = self.limits
        for _ in range(64):     # a burst, then serve the others
            try:
                sock, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:     # EMFILE, ECONNABORTED...: the client retries
                self.errors += 1
                return
            if len(self._conns) >= lim.max_connections and not self._evict_idle():
                sock.close()    # every slot has a request in progress: refuse
                self.errors += 1
                continue
            sock.setblocking(False)
            if self.ssl_context is not None:
                try:
                    sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                        do_handshake_on_connect=False)
                except (OSError, ssl.SSLError):
                    sock.close()
                    self.errors += 1
                    continue
            c = _Conn(sock, addr, time.monotonic(), self.ssl_context is not None)
            self._conns[sock.fileno()] = c
            self._sel.register(sock, selectors.EVENT_READ, c)
            if c.handshaking:
                self._handshake(c)

    def _evict_idle(self) -> bool:
        """Close the oldest connection that has not sent a byte (the cap is reached)."""
        for c in self._conns.values():          # insertion order: oldest first
            if c.first_byte is None:
                self._close(c)
                self.evicted += 1
                return True
        return False

    def _handshake(self, c: _Conn) -> bool:
        try:
            c.sock.do_handshake()  # type: ignore[attr-defined]
        except ssl.SSLWantReadError:
            self._want(c, write=False)
            return False
        except ssl.SSLWantWriteError:
            self._want(c, write=True)
            return False
        except (OSError, ssl.SSLError):
            self.errors += 1
            _drain(c.sock)     # unread bytes would turn the close into a reset
            self._close(c)
            return False
        c.handshaking = False
        self._want(c, write=False)
        return True

    def _want(self, c: _Conn, *, write: bool) -> None:
        if write != c.want_write:
            c.want_write = write
            self._sel.modify(c.sock, selectors.EVENT_WRITE if write else selectors.EVENT_READ,
                             c)

    def _readable(self, c: _Conn) -> None:
        if c.handshaking and not self._handshake(c):
            return
        while True:
            try:
                data = c.sock.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                return
            except ssl.SSLWantWriteError:
                self._want(c, write=True)
                return
            except (OSError, ssl.SSLError):
                self.errors += 1
                self._close(c)
                return
            if not data:
                self._close(c)
                return
            if c.first_byte is None:
                c.first_byte = time.monotonic()
            c.buf += data
            if _HEAD_END in c.buf:
                self._dispatch(c)
                return
            if len(c.buf) > self.limits.max_request_bytes:
                self._answer_now(c, "431 Request Header Fields Too Large")
                return

    def _sweep(self, now: float) -> None:
        lim = self.limits
        for c in list(self._conns.values()):
            if c.first_byte is None:
                late = now - c.opened > lim.idle_timeout_s
            else:
                late = now - c.first_byte > lim.request_timeout_s
            if late:
                self.timed_out += 1
                self._close(c)

    def _detach(self, c: _Conn) -> None:
        self._conns.pop(c.sock.fileno(), None)
        try:
            self._sel.unregister(c.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _close(self, c: _Conn) -> None:
        self._detach(c)
        try:
            c.sock.close()
        except OSError:
            pass

    def _dispatch(self, c: _Conn) -> None:
        self._detach(c)
        try:
            self._pool.submit(self._serve, c)
        except RuntimeError:        # shutting down
            c.sock.close()

    def _answer_now(self, c: _Conn, status: str) -> None:
        self._detach(c)
        self._pool.submit(self._send_close, c, _response(status, [("Content-Type",
                                                                   "text/plain")],
                                                          status.encode() + b"\n", False))

    # -- workers ----------------------------------------------------------------------------
    def _serve(self, c: _Conn) -> None:
        head = bytes(c.buf[:c.buf.index(_HEAD_END)])
        environ = _environ(head, c.addr, self.host, self.port, self.scheme)
        app = self.app
        if environ is None:
            out = _response("400 Bad Request", [("Content-Type", "text/plain")],
                            b"400 bad request\n", False)
        elif app is None:
            out = _response("503 Service Unavailable", [("Content-Type", "text/plain"),
                                                         ("Retry-After", "1")],
                            b"503 starting\n", False)
        else:
            status_headers: list[Any] = []

            def start_response(status: str, headers: list[tuple[str, str]],
                               exc_info: Any = None) -> Callable[[bytes], None]:
                status_headers[:] = [status, headers]
                return lambda b: None

            try:
                body = b"".join(app(environ, start_response))
            except Exception:  # noqa: BLE001 - one bad render must not kill the worker
                self.errors += 1
                status_headers[:] = ["500 Internal Server Error",
                                     [("Content-Type", "text/plain")]]
                body = b"500 internal error\n"
            status, headers = status_headers
            out = _response(status, headers, body, environ["REQUEST_METHOD"] == "HEAD")
        self._send_close(c, out)

    def _send_close(self, c: _Conn, data: bytes) -> None:
        deadline = time.monotonic() + self.limits.write_timeout_s
        sock = c.sock
        try:
            view = memoryview(data)
            while view:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.timed_out += 1
                    break
                try:
                    n = sock.send(view[:262144])
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    _wait_writable(sock, min(left, 0.5))
                    continue
                view = view[n:]
        except (OSError, ssl.SSLError):
            self.errors += 1
        finally:
            try:
                sock.close()
            except OSError:
                pass


def _drain(sock: socket.socket) -> None:
    """Read what the client already sent (raw bytes, below TLS), without blocking."""
    for _ in range(16):
        try:
            if not socket.socket.recv(sock, 65536):
                return
        except OSError:
            return


def _wait_writable(sock: socket.socket, timeout: float) -> None:
    with selectors.DefaultSelector() as s:
        s.register(sock, selectors.EVENT_WRITE)
        s.select(timeout)


def _environ(head: bytes, addr: Any, host: str, port: int,
             scheme: str) -> dict[str, Any] | None:
    """A WSGI environ for one request head; None when it is not HTTP/1.x."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:   # pragma: no cover - latin-1 decodes every byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        return None
    method, target, version = parts
    path, _, query = target.partition("?")
    env: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_PROTOCOL": version, "SERVER_NAME": host, "SERVER_PORT": str(port),
        "REMOTE_ADDR": str(addr[0]) if isinstance(addr, tuple) and addr else "",
        "SCRIPT_NAME": "", "wsgi.url_scheme": scheme, "wsgi.version": (1, 0),
        "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            return None
        key = name.strip().upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            env[key] = value.strip()
        else:
            env["HTTP_" + key] = value.strip()
    return env


def _response(status: str, headers: list[tuple[str, str]], body: bytes, head: bool) -> bytes:
    names = {k.lower() for k, _ in headers}
    hdrs = [h for h in headers if h[0].lower() != "connection"]
    if "content-length" not in names:
        hdrs.append(("Content-Length", str(len(body))))
    hdrs.append(("Connection", "close"))
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in hdrs]
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return out if head else out + body
