"""The HTTP side: /metrics, /healthz, /readyz and a landing page.

Nothing here does I/O to Runloop: a scrape copies the pre-rendered snapshot and appends the small
self-metrics, so scrapes never wait for a sync and never see half of one.
"""

from __future__ import annotations

import gzip
import html
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from exporter import __version__
from exporter.exposition import Rendered
from exporter.webconfig import WebConfig

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

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
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

    def _send(self, status: int, body: bytes, content_type: str, *, gzip: bool = False) -> None:
        self.send_response(status)
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


class MetricsServer(ThreadingHTTPServer):
    """A threaded HTTP server; each scrape runs in its own thread."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: State, web: WebConfig | None = None) -> None:
        self.state = state
        self.web = web
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def start(self) -> threading.Thread:
        """Serve in a background thread."""
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread
