"""The HTTP side: /metrics, /healthz, /readyz and a landing page, optionally behind TLS and basic auth.

Nothing here does I/O to Runloop: a scrape copies the pre-rendered snapshot and appends the small
self-metrics, so scrapes never wait for a sync and never see half of one.

With a web config (exporter/webconfig.py) the listening socket stays plain and each accepted
connection does its TLS handshake in its own thread, so a slow or broken client delays nobody else.
Basic auth guards every path except /healthz and /readyz, which probes must reach without
credentials. Like exporter-toolkit, the server notices when the config file or a certificate it
names changes (cert-manager rotating a Secret) and loads it again; a broken new version is logged
and the previous one kept.
"""

from __future__ import annotations

import gzip
import html
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from exporter import __version__
from exporter.exposition import Rendered
from exporter.webconfig import BasicAuth, Signature, WebConfig, WebConfigError, load_web_config

log = structlog.get_logger("exporter.server")

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
"""Paths served without basic auth: Kubernetes probes carry no credentials."""
REALM = "runloop-exporter"
HANDSHAKE_TIMEOUT_S = 10.0
RELOAD_CHECK_INTERVAL_S = 1.0
_DRAIN_TIMEOUT_S = 1.0
_TLS_HANDSHAKE_RECORD = b"\x16"
_PLAIN_HTTP_TO_TLS = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
    b"Client sent an HTTP request to an HTTPS server.\n"
)
_CLIENT_CERT_REASONS = {"PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE_VERIFY_FAILED"}

_LANDING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>runloop-exporter</title></head>
<body><h1>runloop-exporter {version}</h1>
<p>Prometheus metrics for Runloop benchmark runs.</p>
<ul>
<li><a href="/metrics">/metrics</a>: the metrics</li>
<li><a href="/healthz">/healthz</a>: 200 while the process serves</li>
<li><a href="/readyz">/readyz</a>: 200 once the first sync succeeded</li>
</ul></body></html>
"""


class State:
    """What the server shows; swapped by the sync job, read by any number of request threads."""

    def __init__(self, self_metrics: Callable[[], bytes]) -> None:
        self.rendered: Rendered | None = None
        self.self_metrics = self_metrics

    @property
    def ready(self) -> bool:
        """True once a sync has succeeded (a snapshot exists)."""
        return self.rendered is not None


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer
    protocol_version = "HTTP/1.1"
    server_version = f"runloop-exporter/{__version__}"
    # Headers and body go out in separate writes; with Nagle's algorithm the body would wait for the
    # client's delayed ACK (40 ms) on every keep-alive scrape.
    disable_nagle_algorithm = True

    _headers_from_config: Mapping[str, str] = {}

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
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/readyz":
            if self.server.state.ready:
                self._send(200, b"ready\n", "text/plain; charset=utf-8")
            else:
                self._send(
                    503, b"not ready: the first sync has not succeeded yet\n", "text/plain; charset=utf-8"
                )
        elif path == "/":
            page = _LANDING.format(version=html.escape(__version__)).encode()
            self._send(200, page, "text/html; charset=utf-8")
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def _metrics(self) -> None:
        state = self.server.state
        rendered = state.rendered  # one read of the reference: a scrape sees one snapshot
        tail = state.self_metrics()
        compress = "gzip" in self.headers.get("Accept-Encoding", "")
        body = (_gzip(tail) if compress else tail) if rendered is None else rendered.body(tail, gzip=compress)
        self._send(200, body, CONTENT_TYPE_LATEST, gzip=compress)

    def _unauthorized(self) -> None:
        self._send(
            401,
            b"unauthorized\n",
            "text/plain; charset=utf-8",
            extra={"WWW-Authenticate": f'Basic realm="{REALM}"'},
        )

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        gzip: bool = False,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in {**self._headers_from_config, **(extra or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzip:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        """Access logs are noise for an exporter scraped every few seconds."""


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6)


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


class MetricsServer(ThreadingHTTPServer):
    """A threaded HTTP server; each connection (TLS handshake included) runs in its own thread."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: State, web: WebConfig | None = None) -> None:
        self.state = state
        self._protection = Protection.of(web) if web else None
        self._reload_lock = threading.Lock()
        self._next_reload_check = time.monotonic() + RELOAD_CHECK_INTERVAL_S
        self._rejected_signature: Signature | None = None
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-answer is routine (a scrape timed out); anything else goes through
        structlog, never to stderr as a raw traceback that would skip redaction."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug("the client went away", error=type(error).__name__)
            return
        log.exception("serving a request failed")

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
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread

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

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs in the connection's own thread: the TLS handshake, if any, happens here."""
        protection = self.protection()
        context = protection.web.ssl_context if protection else None
        if protection is None or context is None:
            super().finish_request(request, client_address)
            return
        conn = self._handshake(request, context, protection, client_address)
        if conn is None:
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            self.shutdown_request(conn)

    def _handshake(
        self, sock: socket.socket, context: ssl.SSLContext, protection: Protection, peer: Any
    ) -> ssl.SSLSocket | None:
        """The TLS connection, or None after answering or dropping a client that cannot have one."""
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            first = sock.recv(1, socket.MSG_PEEK)
            if not first:
                return None
            if first != _TLS_HANDSHAKE_RECORD:
                # Someone used http:// (a scrape config without `scheme: https`): say so, as Go servers do.
                sock.recv(65536)  # read the request, so that closing does not reset the connection
                sock.sendall(_PLAIN_HTTP_TO_TLS)
                return None
        except OSError:
            return None
        conn = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        try:
            conn.do_handshake()
        except OSError as exc:
            reason = getattr(exc, "reason", None)
            if reason in _CLIENT_CERT_REASONS or isinstance(exc, ssl.SSLCertVerificationError):
                log.warning("client certificate refused", peer=_peer(peer), reason=reason)
            else:
                log.debug("tls handshake failed", peer=_peer(peer), error=str(exc))
            _close_gently(conn)
            return None
        tls = protection.web.tls
        if tls is not None and not tls.allows_peer(conn.getpeercert()):
            log.warning("client certificate refused: none of client_allowed_sans", peer=_peer(peer))
            _close_gently(conn)
            return None
        conn.settimeout(None)
        return conn


def _close_gently(conn: ssl.SSLSocket) -> None:
    """Close after a refused handshake so that the client reads OpenSSL's alert rather than a reset.

    With TLS 1.3 the client finishes first and may already have sent its request; closing a socket
    with unread data makes the kernel send RST, which can discard the alert before the client reads
    it. So: stop writing, read what the client sends until it closes (briefly), then close.
    """
    raw = socket.socket(fileno=conn.detach())
    try:
        raw.shutdown(socket.SHUT_WR)
        raw.settimeout(_DRAIN_TIMEOUT_S)
        while raw.recv(65536):
            pass
    except OSError:
        pass
    finally:
        raw.close()


def _peer(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)
