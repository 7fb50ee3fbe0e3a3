"""The HTTP server's event loop: connections, TLS handshakes, deadlines; the routes are in routes.py.

Nothing here does I/O to Runloop: a scrape copies the pre-rendered snapshot (exporter.http.state) and
appends the small self-metrics, so scrapes never wait for a sync and never see half of one.

Hostile or broken clients must not starve it (see "Failure modes" in the README), so no connection
owns a thread. One event-loop thread accepts connections, does TLS handshakes without blocking, reads
request heads and writes responses; a connection that has not sent a complete head within the
read-header timeout, or sits idle between requests past the idle timeout, is closed. Only a complete
request head reaches one of a few worker threads, which build the response (basic auth is checked
there, since bcrypt is slow); /healthz and /readyz are answered by the loop itself, so probes get
through even while every worker is busy. Connections are capped: past the cap, the one that has waited
longest without a request being served is closed to make room, so a flood of idle connections cannot
lock probes or Prometheus out. The web config in force is reloaded when its files change
(exporter.http.protection).

Long because the loop is one state machine: each connection moves through sniff, handshake, head, busy,
write, idle and drain, and every step of it reads and writes the same selector registrations, deadlines
and waiting list; split across modules, the transitions would no longer be readable in one place.
"""

from __future__ import annotations

import contextlib
import errno
import re
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any, Literal

import structlog

from exporter.http.protection import Protection, WatchedProtection
from exporter.http.routes import Handler, Response, is_probe
from exporter.http.state import State
from exporter.http.webconfig import WebConfig

log = structlog.get_logger("exporter.http.server")

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


@dataclass(frozen=True)
class Limits:
    """How long and how many clients may hold the server (the settings of the same names)."""

    read_header_timeout_s: float = 10.0
    idle_timeout_s: float = 120.0
    max_connections: int = 512


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
        self._watched = WatchedProtection(web) if web else None
        self._tls = web is not None and web.ssl_context is not None
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
        self._done: SimpleQueue[tuple[_Conn, Response | None]] = SimpleQueue()
        self._workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="http-worker")
        self._ready: list[_Conn] = []  # connections with data already buffered (pipelined, or in TLS)
        self._next_sweep = 0.0
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        """Serve in a background thread."""
        if self._watched is not None:
            web = self._watched.latest.web
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
        """The protection in force, loaded again when a file it came from changed (checked once a second)."""
        return self._watched.current() if self._watched else None

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
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
            self._watch(conn, _waits_for(exc, selectors.EVENT_READ))
            return
        except OSError as exc:
            reason = getattr(exc, "reason", None)
            if reason in _CLIENT_CERT_REASONS or isinstance(exc, ssl.SSLCertVerificationError):
                log.warning("client certificate refused", peer=_peer(conn.peer), reason=reason)
            else:
                log.debug("tls handshake failed", peer=_peer(conn.peer), error=str(exc))
            self._close_gently(conn)
            return
        tls = self._watched.latest.web.tls if self._watched else None
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
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
                self._watch(conn, _waits_for(exc, selectors.EVENT_READ))
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
            self._start_write(conn, Response((_HEAD_TOO_LARGE,), close=True))
            return
        head = bytes(conn.buf[: end.end()])
        del conn.buf[: end.end()]
        conn.scanned = 0
        if is_probe(head):
            self._start_write(conn, Handler(head, self, conn.peer).response())
            return
        self._unwatch(conn)
        del self._waiting[conn]
        conn.phase = "busy"
        self._busy += 1
        self._workers.submit(self._work, conn, head)

    def _work(self, conn: _Conn, head: bytes) -> None:
        """In a worker thread: build the response; the loop sends it."""
        response: Response | None = None
        try:
            response = Handler(head, self, conn.peer).response()
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

    def _start_write(self, conn: _Conn, response: Response) -> None:
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
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
                self._watch(conn, _waits_for(exc, selectors.EVENT_WRITE))
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


def _waits_for(blocked: OSError, own: int) -> int:
    """The event a call that would block waits for: its own direction, unless TLS needs the other one
    (a TLS read may have to write first, and a write may have to read)."""
    if isinstance(blocked, ssl.SSLWantReadError):
        return selectors.EVENT_READ
    if isinstance(blocked, ssl.SSLWantWriteError):
        return selectors.EVENT_WRITE
    return own


def _peer(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)
