"""The routes of the HTTP server: one request head in, the whole response out.

`/metrics` (the snapshot and the self-metrics, gzip when asked, OpenMetrics when asked), `/healthz`,
`/readyz`, the status page at `/`, and 401 for protected paths without valid basic auth. Handlers work on
a complete request head held in memory and collect their response; the event loop in
`exporter.http.server` does the I/O.

`/metrics` honours `Accept` as client_python's own server does: OpenMetrics 1.0 when the client prefers
`application/openmetrics-text` (Prometheus asks for it first), else the Prometheus text format 0.0.4;
never 406, since an exporter's only other answer would be an empty scrape and every client reads text.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from exporter import __version__
from exporter.http import status
from exporter.metrics.exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE

if TYPE_CHECKING:
    from exporter.http.server import MetricsServer

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
"""Paths served without basic auth: Kubernetes probes carry no credentials."""
REALM = "runloop-exporter"


@dataclass(frozen=True)
class Response:
    """What to send back: the bytes, in parts, and whether to close the connection after them."""

    parts: tuple[bytes, ...]
    close: bool


class Handler(BaseHTTPRequestHandler):
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

    def response(self) -> Response:
        """What to send back, and whether to close the connection after it."""
        headers = getattr(self, "headers", None)
        has_body = headers is not None and (
            headers.get("Transfer-Encoding") or headers.get("Content-Length", "0").strip() not in ("", "0")
        )
        # A GET carries no body; one that does is not read, so the connection is out of step: close it.
        return Response((self._out.getvalue(), *self.body), self.close_connection or bool(has_body))

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
            csp = {"Content-Security-Policy": status.CONTENT_SECURITY_POLICY}  # unless the config sets one
            self._send(200, (self.server.state.page,), "text/html; charset=utf-8", extra=csp)
        else:
            self._send(404, (b"not found\n",), "text/plain; charset=utf-8")

    def _metrics(self) -> None:
        state = self.server.state
        # Self-metrics first: a sync publishes its snapshot before it sets runloop_up, so a scrape that
        # reads up=1 also reads that snapshot (the other order could pair up=1 with no snapshot yet).
        as_openmetrics = state.self_metrics_openmetrics is not None and prefers_openmetrics(
            self.headers.get("Accept", "")
        )
        if as_openmetrics and state.self_metrics_openmetrics is not None:
            tail, content_type = state.self_metrics_openmetrics(), OPENMETRICS_CONTENT_TYPE
        else:
            tail, content_type = state.self_metrics(), TEXT_CONTENT_TYPE
        rendered = state.rendered  # one read of the reference: a scrape sees one snapshot
        compress = "gzip" in self.headers.get("Accept-Encoding", "")
        if rendered is None:
            parts: tuple[bytes, ...] = (_gzip(tail) if compress else tail,)
        else:
            parts = rendered.parts(tail, gzip=compress)
        self._send(200, parts, content_type, gzip=compress)

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
        # The web config's headers win over a route's own (its names are exactly HEADER_VALUES' keys).
        for name, value in {**(extra or {}), **self._headers_from_config}.items():
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


def prefers_openmetrics(accept: str) -> bool:
    """Whether an Accept header ranks OpenMetrics 1.0 (or an unversioned one) above the text format.

    The text format's rank is the best of `text/plain` (any version: ours is valid in both), `text/*` and
    `*/*`; a tie, or no Accept at all, goes to text, which every client reads.
    """
    best_openmetrics = best_text = 0.0
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        options = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in params)}
        try:
            quality = float(options.get("q", "1"))
        except ValueError:
            continue
        if not 0 < quality <= 1:  # q=0 refuses; NaN and nonsense rank nothing
            continue
        media = media.lower()
        if media == "application/openmetrics-text" and options.get("version", "1.0.0") == "1.0.0":
            best_openmetrics = max(best_openmetrics, quality)
        elif media in ("text/plain", "text/*", "*/*"):
            best_text = max(best_text, quality)
    return best_openmetrics > best_text


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6)


def is_probe(head: bytes) -> bool:
    """Whether a request head asks for /healthz or /readyz (answered by the loop, never queued)."""
    words = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
    return len(words) >= 2 and words[1].split(b"?", 1)[0].decode("latin-1") in PUBLIC_PATHS
