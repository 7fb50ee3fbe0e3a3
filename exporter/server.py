"""The HTTP side: /metrics, /healthz, /readyz and the status page, optionally behind TLS and basic auth.

Nothing here does I/O to Runloop: a scrape copies the pre-rendered snapshot and appends the small
self-metrics, so scrapes never wait for a sync and never see half of one.

Hostile or broken clients must not starve it (see "Failure modes" in the README), so no connection
owns a thread. One event-loop thread accepts connections, does TLS handshakes without blocking, reads
request heads and writes responses; a connection that has not sent a complete head within the
read-header timeout, or sits idle between requests past the idle timeout, is closed. Only a complete
request head reaches one of a few worker threads, which build the response (basic auth is checked
there, since bcrypt is slow); /healthz and /readyz are answered by the loop itself, so probes get
through even while every worker is busy. Connections are capped: past the cap, the one that has waited
longest without a request being served is closed to make room, so a flood of idle connections cannot
lock probes or Prometheus out.

Like exporter-toolkit, the server notices when the web config file or a certificate it names changes
(cert-manager rotating a Secret) and loads it again; a broken new version is logged and the previous
one kept.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import re
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, Literal

import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from exporter import __version__, status
from exporter.metrics.exposition import Rendered
from exporter.webconfig import BasicAuth, Signature, WebConfig, WebConfigError, load_web_config

log = structlog.get_logger("exporter.server")

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
"""Paths served without basic auth: Kubernetes probes carry no credentials."""
REALM = "runloop-exporter"
RELOAD_CHECK_INTERVAL_S = 1.0
MAX_HEAD_BYTES = 16384
"""Request line and headers together; a Prometheus scrape sends a few hundred bytes."""
WORKERS = 4
WRITE_TIMEOUT_S = 60.0
"""A response not taken by the client within this time is dropped (a reader that never reads)."""
CLOSE_REASONS = ("header_timeout", "idle_timeout", "write_timeout", "over_capacity")

_DRAIN_TIMEOUT_S = 1.0
_TICK_S = 0.2
_ACCEPT_BATCH = 256
_SEND_CHUNK = 65536
_TLS_HANDSHAKE_RECORD = b"\x16"
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_PLAIN_HTTP_TO_TLS = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
    b"Client sent an HTTP request to an HTTPS server.\n"
)
_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\nContent-Length: 33\r\n\r\nrequest header fields too large\r\n"
)
_CLIENT_CERT_REASONS = {"PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE_VERIFY_FAILED"}
_OUT_OF_FILES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class State:
    """What the server shows; swapped by the sync job, read by any number of request threads.

    `page` is the status page at `/`, rendered by the sync job (see exporter.status): a request copies it.
    """

    def __init__(self, self_metrics: Callable[[], bytes], *, demo: bool = False) -> None:
        self.rendered: Rendered | None = None
        self.self_metrics = self_metrics
        self.demo = demo
        self.page: bytes = status.render(demo=demo, last=None, table=None)

    @property
    def ready(self) -> bool:
        """True once a sync has succeeded (a snapshot exists)."""
        return self.rendered is not None


@dataclass(frozen=True)
class Limits:
    """How long and how many clients may hold the server (the settings of the same names)."""

    read_header_timeout_s: float = 10.0
    idle_timeout_s: float = 120.0
    max_connections: int = 512


@dataclass(frozen=True)
class _Response:
    parts: tuple[bytes, ...]
    close: bool


class _Handler(BaseHTTPRequestHandler):
    """One request, parsed from a complete head in memory; the response is collected, not written."""

    server: MetricsServer  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"
    server_version = f"runloop-exporter/{__version__}"

    _headers_from_config: Mapping[str, str] = {}

    def __init__(self, head: bytes, server: MetricsServer, peer: Any) -> None:  # no socket: no super()
        self.server = server
        self.client_address = peer
        self.rfile = io.BytesIO(head)
        self._out = io.BytesIO()
        self.wfile = self._out
        self.body: tuple[bytes, ...] = ()
        self.close_connection = True
        self.handle_one_request()

    def response(self) -> _Response:
        """What to send back, and whether to close the connection after it."""
        headers = getattr(self, "headers", None)
        has_body = headers is not None and (
            headers.get("Transfer-Encoding") or headers.get("Content-Length", "0").strip() not in ("", "0")
        )
        # A GET carries no body; one that does is not read, so the connection is out of step: close it.
        return _Response((self._out.getvalue(), *self.body), self.close_connection or bool(has_body))

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        protection = self.server.protection()
        self._headers_from_config = protection.web.headers if protection else {}
        if (
            protection
            and path not in PUBLIC_PATHS
            and not protection.allows(self.headers.get("Authorization"))
        ):
            self._unauthorized()
        elif path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            self._send(200, (b"ok\n",), "text/plain; charset=utf-8")
        elif path == "/readyz":
            if self.server.state.ready:
                self._send(200, (b"ready\n",), "text/plain; charset=utf-8")
            else:
                self._send(
                    503, (b"not ready: the first sync has not succeeded yet\n",), "text/plain; charset=utf-8"
                )
        elif path == "/":
            csp = (
                {}
                if "content-security-policy" in {h.lower() for h in self._headers_from_config}
                else {"Content-Security-Policy": status.CONTENT_SECURITY_POLICY}
            )
            self._send(200, (self.server.state.page,), "text/html; charset=utf-8", extra=csp)
        else:
            self._send(404, (b"not found\n",), "text/plain; charset=utf-8")

    def _metrics(self) -> None:
        state = self.server.state
        rendered = state.rendered  # one read of the reference: a scrape sees one snapshot
        tail = state.self_metrics()
        compress = "gzip" in self.headers.get("Accept-Encoding", "")
        if rendered is None:
            parts: tuple[bytes, ...] = (_gzip(tail) if compress else tail,)
        else:
            parts = rendered.parts(tail, gzip=compress)
        self._send(200, parts, CONTENT_TYPE_LATEST, gzip=compress)

    def _unauthorized(self) -> None:
        self._send(
            401,
            (b"unauthorized\n",),
            "text/plain; charset=utf-8",
            extra={"WWW-Authenticate": f'Basic realm="{REALM}"'},
        )

    def _send(
        self,
        status: int,
        body: tuple[bytes, ...],
        content_type: str,
        *,
        gzip: bool = False,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in {**self._headers_from_config, **(extra or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(map(len, body))))
        if gzip:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        if self.command != "HEAD":
            self.body = body

    def do_HEAD(self) -> None:
        self.do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        """Access logs are noise for an exporter scraped every few seconds."""


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6)


def _is_probe(head: bytes) -> bool:
    """Whether a request head asks for /healthz or /readyz (answered by the loop, never queued)."""
    words = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
    return len(words) >= 2 and words[1].split(b"?", 1)[0].decode("latin-1") in PUBLIC_PATHS


@dataclass(frozen=True)
class Protection:
    """A loaded web config with the basic-auth checker (and its cache) that belongs to it."""

    web: WebConfig
    auth: BasicAuth | None

    @classmethod
    def of(cls, web: WebConfig) -> Protection:
        """Protection for a freshly loaded config (a new config gets a fresh cache)."""
        return cls(web, BasicAuth(web.users) if web.users else None)

    def allows(self, authorization: str | None) -> bool:
        """Whether a request with this Authorization header may see protected paths."""
        return self.auth is None or self.auth.check(authorization)


Phase = Literal["sniff", "handshake", "head", "idle", "busy", "write", "drain"]
"""sniff: TLS port, first byte not seen; head: reading a request; idle: keep-alive, between requests;
busy: with a worker; write: sending a response; drain: closing gently after a refusal."""


class _Conn:
    """One client connection, owned by the loop thread (a worker only ever sees its request head)."""

    __slots__ = ("buf", "deadline", "events", "fd", "out", "peer", "phase", "scanned", "sock")

    def __init__(self, sock: socket.socket, peer: Any, phase: Phase, deadline: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()  # stays the same through TLS wrapping; the selector is keyed by it
        self.peer = peer
        self.phase: Phase = phase
        self.deadline = deadline
        self.buf = bytearray()
        self.scanned = 0  # how much of buf is known to hold no end of head
        self.out: deque[memoryview] = deque()
        self.events = 0


class MetricsServer:
    """A single-threaded event loop with a small worker pool; see the module docstring."""

    def __init__(
        self,
        address: tuple[str, int],
        state: State,
        web: WebConfig | None = None,
        limits: Limits | None = None,
        on_close: Callable[[str], None] | None = None,
    ) -> None:
        self.state = state
        self.limits = limits or Limits()
        self._on_close = on_close or (lambda reason: None)
        self._protection = Protection.of(web) if web else None
        self._tls = web is not None and web.ssl_context is not None
        self._reload_lock = threading.Lock()
        self._next_reload_check = time.monotonic() + RELOAD_CHECK_INTERVAL_S
        self._rejected_signature: Signature | None = None
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(address)
            self._listener.listen(socket.SOMAXCONN)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self.server_port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._listening = True
        self._accept_again_at = 0.0
        self._waiting: OrderedDict[_Conn, None] = OrderedDict()  # every conn not with a worker, oldest first
        self._busy = 0
        self._done: SimpleQueue[tuple[_Conn, _Response | None]] = SimpleQueue()
        self._workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="http-worker")
        self._ready: list[_Conn] = []  # connections with data already buffered (pipelined, or in TLS)
        self._next_sweep = 0.0
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        """Serve in a background thread."""
        if self._protection is not None:
            web = self._protection.web
            log.info(
                "web config loaded",
                path=str(web.source),
                tls=web.tls is not None,
                client_auth=web.tls.client_auth.value if web.tls else None,
                basic_auth_users=len(web.users),
            )
            if web.users and web.tls is None:
                log.warning("basic auth without TLS: passwords cross the network in clear text")
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        self._thread.start()
        return self._thread

    def serve_forever(self) -> None:
        """Run the loop until shutdown()."""
        try:
            while not self._stop.is_set():
                for key, mask in self._selector.select(0 if self._ready else _TICK_S):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._finish_responses()
                    else:
                        self._step(key.data, mask)
                ready, self._ready = self._ready, []
                for conn in ready:
                    if conn in self._waiting and conn.phase in ("head", "idle"):
                        self._step(conn, selectors.EVENT_READ)
                now = time.monotonic()
                if now >= self._next_sweep:
                    self._next_sweep = now + _TICK_S
                    self._sweep(now)
        finally:
            for conn in list(self._waiting):
                self._close(conn)
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop the loop and close every connection; returns once the loop has ended."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._stopped.wait(5)

    def server_close(self) -> None:
        """Release the listening socket and the workers."""
        self._workers.shutdown(wait=False, cancel_futures=True)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    def open_connections(self) -> int:
        """Client connections open now (for the self-metrics)."""
        return len(self._waiting) + self._busy

    # --- web config ------------------------------------------------------------------------------

    def protection(self) -> Protection | None:
        """The protection in force, reloaded when a file it came from changed (checked once a second)."""
        current = self._protection
        if current is None or current.web.source is None or time.monotonic() < self._next_reload_check:
            return current
        with self._reload_lock:
            current = self._protection
            if current is None or current.web.source is None or time.monotonic() < self._next_reload_check:
                return current  # another thread checked while this one waited
            self._next_reload_check = time.monotonic() + RELOAD_CHECK_INTERVAL_S
            signature = current.web.current_signature()
            if signature not in (current.web.signature, self._rejected_signature):
                self._protection = self._reload(current.web, current.web.source, signature) or current
            return self._protection

    def _reload(self, old: WebConfig, source: Path, signature: Signature) -> Protection | None:
        try:
            new = load_web_config(source)
        except WebConfigError as exc:
            self._rejected_signature = signature  # tried again once a file changes again
            log.error("web config reload failed; keeping the previous one", error=str(exc))
            return None
        if (new.tls is None) != (old.tls is None):
            self._rejected_signature = signature
            log.error(
                "web config reload would turn TLS on or off; keeping the previous one (restart to change it)",
                path=str(source),
            )
            return None
        log.info("web config reloaded", path=str(source), basic_auth_users=len(new.users))
        return Protection.of(new)

    # --- the loop --------------------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, peer = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_FILES:  # stop accepting briefly rather than spin on a full table
                    log.warning("cannot accept a connection", error=exc.strerror)
                    self._selector.unregister(self._listener)
                    self._listening = False
                    self._accept_again_at = time.monotonic() + 0.1
                    return
                continue  # the client gave up before we accepted it
            if self.open_connections() >= self.limits.max_connections and not self._make_room():
                sock.close()  # every connection is being served: refuse, it costs nothing to keep
                self._on_close("over_capacity")
                continue
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                # Headers and body go out in separate sends; Nagle would hold the body for the ACK.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            now = time.monotonic()
            conn = _Conn(
                sock, peer, "sniff" if self._tls else "head", now + self.limits.read_header_timeout_s
            )
            self._waiting[conn] = None
            self._watch(conn, selectors.EVENT_READ)

    def _make_room(self) -> bool:
        """Close the connection that has waited longest without being served; False if all are busy."""
        for conn in self._waiting:
            self._close(conn)
            self._on_close("over_capacity")
            return True
        return False

    def _step(self, conn: _Conn, mask: int) -> None:
        try:
            if conn.phase == "sniff":
                self._sniff(conn)
            elif conn.phase == "handshake":
                self._handshake(conn)
            elif conn.phase in ("head", "idle"):
                self._read(conn)
            elif conn.phase == "write":
                self._write(conn)
            elif conn.phase == "drain":
                self._drain(conn)
        except OSError as exc:  # the client reset or went away: routine
            log.debug("the client went away", error=type(exc).__name__)
            self._close(conn)
        except Exception:
            log.exception("serving a request failed")
            self._close(conn)

    def _sweep(self, now: float) -> None:
        """Close connections past their deadline; resume accepting after running out of files."""
        reasons = {
            "sniff": "header_timeout",
            "handshake": "header_timeout",
            "head": "header_timeout",
            "idle": "idle_timeout",
            "write": "write_timeout",
        }
        expired = [conn for conn in self._waiting if now >= conn.deadline]
        for conn in expired:
            self._close(conn)
            if conn.phase in reasons:
                self._on_close(reasons[conn.phase])
        if not self._listening and now >= self._accept_again_at:
            self._selector.register(self._listener, selectors.EVENT_READ, "accept")
            self._listening = True

    def _sniff(self, conn: _Conn) -> None:
        """On a TLS port: answer plain HTTP with a clear 400, start the handshake otherwise."""
        try:
            first = conn.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return
        if not first:
            self._close(conn)
            return
        if first != _TLS_HANDSHAKE_RECORD:
            # Someone used http:// (a scrape config without `scheme: https`): say so, as Go servers do.
            conn.sock.recv(65536)  # read the request, so that closing does not reset the connection
            conn.sock.send(_PLAIN_HTTP_TO_TLS)
            self._close_gently(conn)
            return
        protection = self.protection()
        context = protection.web.ssl_context if protection else None
        if context is None:  # cannot happen: a reload never turns TLS off
            self._close(conn)
            return
        conn.sock = context.wrap_socket(conn.sock, server_side=True, do_handshake_on_connect=False)
        conn.phase = "handshake"
        self._handshake(conn)

    def _handshake(self, conn: _Conn) -> None:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
            return
        except OSError as exc:
            reason = getattr(exc, "reason", None)
            if reason in _CLIENT_CERT_REASONS or isinstance(exc, ssl.SSLCertVerificationError):
                log.warning("client certificate refused", peer=_peer(conn.peer), reason=reason)
            else:
                log.debug("tls handshake failed", peer=_peer(conn.peer), error=str(exc))
            self._close_gently(conn)
            return
        protection = self._protection
        tls = protection.web.tls if protection else None
        if tls is not None and not tls.allows_peer(sock.getpeercert()):
            log.warning("client certificate refused: none of client_allowed_sans", peer=_peer(conn.peer))
            self._close_gently(conn)
            return
        conn.phase = "head"  # the read-header deadline, set at accept, covers the handshake too
        self._read(conn)

    def _read(self, conn: _Conn) -> None:
        while len(conn.buf) <= MAX_HEAD_BYTES and not _HEAD_END.search(conn.buf, conn.scanned):
            conn.scanned = max(len(conn.buf) - 3, 0)
            try:
                data = conn.sock.recv(_SEND_CHUNK)
            except (BlockingIOError, ssl.SSLWantReadError):
                self._watch(conn, selectors.EVENT_READ)
                return
            except ssl.SSLWantWriteError:
                self._watch(conn, selectors.EVENT_WRITE)
                return
            if not data:
                self._close(conn)
                return
            if conn.phase == "idle":  # a new request begins: its head has the read-header timeout
                conn.phase = "head"
                conn.deadline = time.monotonic() + self.limits.read_header_timeout_s
            conn.buf += data
        self._dispatch(conn)

    def _dispatch(self, conn: _Conn) -> None:
        """Hand a complete head to a worker (probes: answer at once); refuse one that is too large."""
        end = _HEAD_END.search(conn.buf, conn.scanned)
        if end is None or end.end() > MAX_HEAD_BYTES:
            conn.buf.clear()
            self._start_write(conn, _Response((_HEAD_TOO_LARGE,), close=True))
            return
        head = bytes(conn.buf[: end.end()])
        del conn.buf[: end.end()]
        conn.scanned = 0
        if _is_probe(head):
            self._start_write(conn, _Handler(head, self, conn.peer).response())
            return
        self._unwatch(conn)
        del self._waiting[conn]
        conn.phase = "busy"
        self._busy += 1
        self._workers.submit(self._work, conn, head)

    def _work(self, conn: _Conn, head: bytes) -> None:
        """In a worker thread: build the response; the loop sends it."""
        response: _Response | None = None
        try:
            response = _Handler(head, self, conn.peer).response()
        except Exception:
            log.exception("serving a request failed")
        self._done.put((conn, response))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a full pipe: the loop is already due to wake
            self._wake_w.send(b"\0")

    def _finish_responses(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                conn, response = self._done.get_nowait()
            except Empty:
                return
            self._busy -= 1
            self._waiting[conn] = None
            if response is None:
                self._close(conn)
            else:
                self._start_write(conn, response)

    def _start_write(self, conn: _Conn, response: _Response) -> None:
        conn.phase = "write"
        conn.deadline = time.monotonic() + WRITE_TIMEOUT_S
        pieces: list[bytes] = []
        for part in response.parts:  # small pieces go out in one send (one packet), large ones as they are
            if pieces and len(pieces[-1]) + len(part) <= _SEND_CHUNK:
                pieces[-1] += part
            elif part:
                pieces.append(part)
        conn.out = deque(memoryview(piece) for piece in pieces)
        if response.close:
            conn.out.append(memoryview(b""))  # a marker: close once everything before it is sent
        self._waiting.move_to_end(conn)
        try:
            self._write(conn)
        except OSError:
            self._close(conn)

    def _write(self, conn: _Conn) -> None:
        while conn.out:
            view = conn.out[0]
            if not view:  # the close marker
                self._close(conn)
                return
            try:
                sent = conn.sock.send(view[:_SEND_CHUNK])
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._watch(conn, selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                self._watch(conn, selectors.EVENT_READ)
                return
            if sent >= len(view):
                conn.out.popleft()
            else:
                conn.out[0] = view[sent:]
        conn.phase = "idle"
        conn.deadline = time.monotonic() + self.limits.idle_timeout_s
        self._waiting.move_to_end(conn)
        if conn.buf:  # a pipelined request already arrived: it is a request, not idleness
            conn.phase = "head"
            conn.deadline = time.monotonic() + self.limits.read_header_timeout_s
        self._watch(conn, selectors.EVENT_READ)
        self._ready.append(conn)  # read on the next turn: TLS may hold data the selector cannot see

    def _close_gently(self, conn: _Conn) -> None:
        """Close after a refusal so that the client reads what it was sent rather than a reset.

        With TLS 1.3 the client finishes first and may already have sent its request; closing a socket
        with unread data makes the kernel send RST, which can discard the alert before the client reads
        it. So: stop writing, read what the client sends until it closes (briefly), then close.
        """
        sock = conn.sock
        if isinstance(sock, ssl.SSLSocket):
            sock = socket.socket(fileno=sock.detach())
            sock.setblocking(False)
            conn.sock = sock
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.phase = "drain"
        conn.deadline = time.monotonic() + _DRAIN_TIMEOUT_S
        self._drain(conn)

    def _drain(self, conn: _Conn) -> None:
        while True:
            try:
                data = conn.sock.recv(_SEND_CHUNK)
            except BlockingIOError:
                self._watch(conn, selectors.EVENT_READ)
                return
            if not data:
                self._close(conn)
                return

    def _watch(self, conn: _Conn, events: int) -> None:
        if conn.events == events:
            return
        if conn.events:
            self._selector.modify(conn.fd, events, conn)
        else:
            self._selector.register(conn.fd, events, conn)
        conn.events = events

    def _unwatch(self, conn: _Conn) -> None:
        if conn.events:
            self._selector.unregister(conn.fd)
            conn.events = 0

    def _close(self, conn: _Conn) -> None:
        self._unwatch(conn)
        self._waiting.pop(conn, None)
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)
        conn.sock.close()


def _peer(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)
