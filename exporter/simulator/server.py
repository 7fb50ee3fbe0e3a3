"""The simulator as a server: serves a World on 127.0.0.1 over HTTP, like ``api.runloop.ai``.

:class:`Simulator` owns the life cycle (start, stop, a context manager), checks the API key, routes each
request to the World (runs, benchmarks) or its job store, and records every request it receives, even
those a fault answered. :class:`Latency` makes each answer take as long as Runloop's would from across
the internet: a fixed round trip, jitter, and a transfer time that grows with the body. Every design
choice about requests is measured with it, never on bare loopback.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import random
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self
from urllib.parse import unquote

from exporter.simulator.faults import Faults
from exporter.simulator.transport import RequestRecord, SimulatorHTTPServer
from exporter.simulator.wire import DEFAULT_LIMIT, MAX_LIMIT, Response, SimulatedApiError, dumps, error
from exporter.simulator.world import RunsPage, World

DEFAULT_API_KEY: Final = "sim-key"


@dataclass(frozen=True)
class Latency:
    """How long each answer takes: `base_s`, plus up to `jitter_s` at random, plus the body's transfer.

    `bytes_per_s` is the transfer rate of the body: at 20 MB/s a page of 5,000 runs (about 1.5 MB) adds
    75 ms, one run adds nothing to speak of. Requests are answered concurrently, each with its own delay.
    """

    base_s: float = 0.0
    jitter_s: float = 0.0
    bytes_per_s: float | None = None

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.jitter_s < 0 or (self.bytes_per_s is not None and self.bytes_per_s <= 0):
            raise ValueError("latency values must be >= 0 and bytes_per_s > 0")

    @classmethod
    def realistic(cls, low_ms: float = 50, high_ms: float = 150) -> Latency:
        """Runloop as seen from a cluster elsewhere on the internet: 50 to 150 ms, 20 MB/s."""
        return cls(base_s=low_ms / 1000, jitter_s=(high_ms - low_ms) / 1000, bytes_per_s=20e6)

    def seconds(self, body_bytes: int, rng: random.Random) -> float:
        """The delay for one answer of this size."""
        transfer = 0.0 if self.bytes_per_s is None else body_bytes / self.bytes_per_s
        return self.base_s + (rng.uniform(0, self.jitter_s) if self.jitter_s else 0.0) + transfer


def _param(query: dict[str, str], name: str) -> str | None:
    """A query parameter; empty means not given (the spec's allowEmptyValue)."""
    return query.get(name) or None


def _parse_limit(query: dict[str, str]) -> int:
    text = _param(query, "limit")
    if text is None:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise SimulatedApiError(400, f"limit must be an integer, not {text!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise SimulatedApiError(400, f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit


def _parse_bool(query: dict[str, str], name: str, default: bool) -> bool:
    text = _param(query, name)
    if text is None:
        return default
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise SimulatedApiError(400, f"{name} must be true or false, not {text!r}")


def _check_loopback(host: str) -> None:
    """The simulator must never listen beyond this machine."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host must be an IPv4 loopback address such as 127.0.0.1, not {host!r}") from None
    if address.version != 4 or not address.is_loopback:
        raise ValueError(f"host must be an IPv4 loopback address such as 127.0.0.1, not {host!r}")


class Simulator:
    """Serves a World over HTTP on 127.0.0.1, like api.runloop.ai.

    ``requests`` lists every request received, in order, even those a fault answered; ``errors`` holds
    tracebacks of simulator bugs (a test can assert it stays empty).
    """

    def __init__(
        self,
        world: World,
        *,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: Latency | None = None,
    ) -> None:
        _check_loopback(host)
        self.world = world
        self.api_key = api_key
        self.latency = latency or Latency()
        self._rng = random.Random(0)  # noqa: S311 - simulation, not cryptography
        self.faults = Faults()
        self.requests: list[RequestRecord] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests answered at once: what concurrency the client used
        self._in_flight_by: dict[str, int] = {}
        self.max_in_flight_by: dict[str, int] = {}  # the same by listing ("/v1/benchmark_jobs", ...)
        self.bytes_sent_by: dict[str, int] = {}  # body bytes answered, by listing (for the benchmarks)
        self.errors: list[str] = []
        self.jobs_status: int | None = None  # 403 or 404: answer the job endpoints so (no beta access)
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL to give the client, e.g. ``http://127.0.0.1:43121`` (once started)."""
        if self._server is None:
            raise RuntimeError("simulator not started")
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> None:
        """Bind and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        self._server = SimulatorHTTPServer((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"runloop-simulator-{self._server.server_port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, hang up on open connections, close the socket and join the thread."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset_requests(self) -> None:
        """Forget the requests recorded so far (the list object stays the same)."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def _enter_listing(self, listing: str) -> None:
        with self._lock:
            self._in_flight_by[listing] = now = self._in_flight_by.get(listing, 0) + 1
            self.max_in_flight_by[listing] = max(self.max_in_flight_by.get(listing, 0), now)

    def _leave_listing(self, listing: str, body_bytes: int) -> None:
        with self._lock:
            self._in_flight_by[listing] -= 1
            self.bytes_sent_by[listing] = self.bytes_sent_by.get(listing, 0) + body_bytes

    def _errors_append(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        )

    def _dispatch(self, method: str, path: str, query: dict[str, str], auth: str | None) -> Response:
        """Route a request that no fault answered."""
        if path != "/v1" and not path.startswith("/v1/"):
            return error(404, f"no such path: {path}")
        if not self._authorized(auth):
            return error(401, "missing or invalid API key", {"WWW-Authenticate": 'Bearer realm="runloop"'})
        parts = path.split("/")
        route: str | None = None
        if path == "/v1/benchmark_runs":
            route = "list_runs"
        elif path == "/v1/benchmarks":
            route = "list_benchmarks"
        elif path == "/v1/benchmark_jobs":
            route = "list_jobs"
        elif len(parts) == 4 and parts[3] and parts[2] in ("benchmark_runs", "benchmarks", "benchmark_jobs"):
            route = parts[2]
        if route is None:
            return error(404, f"no such path: {path}")
        if method != "GET":
            return error(405, f"method {method} not allowed", {"Allow": "GET"})
        try:
            if route == "list_runs":
                return 200, self._list_runs(query), {}
            if route == "list_benchmarks":
                return 200, self._list_benchmarks(query), {}
            if self.jobs_status is not None and route in ("list_jobs", "benchmark_jobs"):
                return error(self.jobs_status, "benchmark jobs are not available to this account")
            if route == "list_jobs":
                return 200, self._list_jobs(query), {}
            item_id = unquote(parts[3])
            if route == "benchmark_jobs":
                found = self.world.jobs.get(item_id)
            elif route == "benchmarks":
                found = self.world.benchmark_json(item_id)
            else:
                found = (self.world.run_json(item_id) or "").encode()
        except SimulatedApiError as exc:
            return error(exc.status, exc.message)
        if not found:
            kind = {"benchmarks": "benchmark", "benchmark_jobs": "benchmark job"}.get(route, "benchmark run")
            return error(404, f"no {kind} with id {item_id!r}")
        return 200, found, {}

    def _list_runs(self, query: dict[str, str]) -> bytes:
        faults = self.faults
        stuck = faults.stuck_cursor
        page = self.world.list_runs(
            name=_param(query, "name"),
            benchmark_id=None if faults.ignore_benchmark_filter else _param(query, "benchmark_id"),
            state=_param(query, "state"),
            search=_param(query, "search"),
            limit=_parse_limit(query),
            starting_after=None if stuck else _param(query, "starting_after"),
            include_total_count=_parse_bool(query, "include_total_count", True),
        )
        if stuck or faults.has_more_forever:
            page = RunsPage(page.runs_json, True, page.total_count)
        if faults.total_count != "exact":
            total = len(page.runs_json) if faults.total_count == "page" else None
            page = RunsPage(page.runs_json, page.has_more, total)
        return page.body()

    def _list_jobs(self, query: dict[str, str]) -> bytes:
        body = self.world.jobs.list_page(
            limit=_parse_limit(query),
            starting_after=_param(query, "starting_after"),
            include_total_count=_parse_bool(query, "include_total_count", True),
        )
        if self.faults.total_count == "exact":
            return body
        data = json.loads(body)
        data["total_count"] = len(data["jobs"]) if self.faults.total_count == "page" else None
        return dumps(data).encode()

    def _list_benchmarks(self, query: dict[str, str]) -> bytes:
        faults = self.faults
        stuck = faults.stuck_cursor
        body = self.world.list_benchmarks(
            limit=_parse_limit(query), starting_after=None if stuck else _param(query, "starting_after")
        )
        if stuck or faults.has_more_forever:
            data = json.loads(body)
            data["has_more"] = True
            body = dumps(data).encode()
        return body
