"""The simulator's HTTP transport: a threaded stdlib server on 127.0.0.1 and its request handler.

The handler turns one HTTP request into a :class:`~exporter.simulator.server.Simulator` call, applying
the faults on the way (delays, canned statuses, broken, cut-off or huge bodies) and the latency of the
answer; the server can hang up on idle keep-alive clients when the simulator stops.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs, urlsplit

from exporter.simulator.wire import error

if TYPE_CHECKING:
    from exporter.simulator.server import Simulator


@dataclass(frozen=True)
class RequestRecord:
    """One request the simulator received (the Authorization header is never kept)."""

    method: str
    path: str
    query: dict[str, str]
    at: float = 0.0  # time.monotonic() on arrival: lets tests check back-off and Retry-After timing


class SimulatorHTTPServer(ThreadingHTTPServer):
    """Threaded, quiet, with a deep backlog, and able to hang up on idle keep-alive clients at stop."""

    daemon_threads = True
    block_on_close = False  # idle keep-alive handlers would block stop(); we shut their sockets instead
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, SimulatorHandler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay quiet: clients hanging up mid-answer is normal here (faults, timeouts)."""

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class SimulatorHandler(BaseHTTPRequestHandler):
    """Turns one HTTP request into a Simulator call, applying faults on the way."""

    protocol_version = "HTTP/1.1"
    server_version = "runloop-simulator/1"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are dropped eventually, like a real load balancer
    disable_nagle_algorithm = True  # headers and body go out in two writes: avoid 40 ms delayed-ACK stalls

    def setup(self) -> None:
        super().setup()
        server = cast(SimulatorHTTPServer, self.server)
        with server.connections_lock:
            server.connections.add(self.connection)

    def finish(self) -> None:
        server = cast(SimulatorHTTPServer, self.server)
        with server.connections_lock:
            server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """No per-request log lines on stderr."""

    def _handle(self) -> None:
        sim = cast(SimulatorHTTPServer, self.server).simulator
        sim._enter()
        try:
            self._answer(sim)
        finally:
            sim._leave()

    # Every method reaches the Simulator, which answers 405 to all but GET, as the API does.
    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815 - names http.server calls

    def _answer(self, sim: Simulator) -> None:
        split = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        sim._record(RequestRecord(self.command, split.path, query, time.monotonic()))
        listing = "/".join(split.path.split("/")[:3])  # "/v1/benchmark_jobs" for a job and the listing
        sim._enter_listing(listing)
        body_bytes = 0
        try:
            body_bytes = self._respond(sim, split.path, query)
        finally:
            sim._leave_listing(listing, body_bytes)

    def _respond(self, sim: Simulator, path: str, query: dict[str, str]) -> int:
        """Answer one request; the bytes of the body answered (0 for a fault's)."""
        self._drain_body()
        delay = sim.faults.delay_seconds
        if delay > 0 and sim._stopping.wait(delay):
            self.close_connection = True
            return 0
        fault = sim.faults.take(path, query)
        if fault is not None and fault.kind == "fail":
            self._send(fault.status, fault.body, fault.headers)
            return 0
        if fault is not None and fault.kind == "wrong_shape":
            self._send(200, b'{"items":[]}', {})
            return 0
        try:
            status, body, headers = sim._dispatch(
                self.command, path, query, self.headers.get("Authorization")
            )
        except Exception:  # a simulator bug: answer like a server would, keep the traceback for tests
            sim._errors_append(traceback.format_exc())
            status, body, headers = error(500, "internal simulator error")
        lag = sim.latency.seconds(len(body), sim._rng)
        if lag > 0 and sim._stopping.wait(lag):
            self.close_connection = True
            return 0
        if fault is not None and fault.kind == "malformed_json":
            self._send(200, body[: len(body) // 2], {})
        elif fault is not None and fault.kind == "close_mid_body":
            self._send_partial(body)
        elif fault is not None and fault.kind == "huge_body":
            self._send_huge(fault.size, declare_length=fault.declare_length)
        else:
            self._send(status, body, headers)
        return len(body)

    def _drain_body(self) -> None:
        """Read a request body so the keep-alive connection stays in step."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return
        length = self.headers.get("Content-Length")
        if length:
            try:
                self.rfile.read(int(length))
            except ValueError:
                self.close_connection = True

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            if not any(k.lower() == "content-type" for k in headers):
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status == 405 and "Allow" not in headers:
                self.send_header("Allow", "GET")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _send_huge(self, size: int, *, declare_length: bool) -> None:
        """A 200 with `size` bytes of whitespace, sent chunk by chunk until done or the client hangs up."""
        faults = cast(SimulatorHTTPServer, self.server).simulator.faults
        chunk = b" " * 65536
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if declare_length:
                self.send_header("Content-Length", str(size))
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            left = size
            while left > 0:
                piece = chunk[: min(left, len(chunk))]
                self.wfile.write(piece)
                left -= len(piece)
                with faults._lock:
                    faults.huge_bytes_sent += len(piece)
        except OSError:
            pass

    def _send_partial(self, body: bytes) -> None:
        """Promise the whole body, send half of it, then hang up (a connection lost mid-body)."""
        body = body if len(body) >= 2 else b'{"runs":[]}'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True
