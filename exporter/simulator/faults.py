"""The simulator's switchboard of API failures, flipped by tests while the server runs.

5xx and 429 answers with any headers, broken bodies, bodies cut off or too large, slow answers, and
servers that stray from the documented contract (stuck cursors, endless has_more, a wrong total_count,
a benchmark filter ignored). The HTTP transport consumes them request by request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["fail", "malformed_json", "wrong_shape", "close_mid_body", "huge_body"]


@dataclass
class PendingFault:
    """A queued one-shot fault and how many more requests it answers."""

    kind: FaultKind
    remaining: int
    path_prefix: str
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    size: int = 0
    declare_length: bool = True
    query: dict[str, str] = field(default_factory=dict)  # only requests with these parameters


class Faults:
    """A thread-safe switchboard of API failures, flipped by tests while the server runs.

    One-shot faults (``*_next``) queue up and each matching request consumes one, first queued first.
    The plain attributes apply to every request until changed: ``delay_seconds`` (sleep before answering,
    for timeouts), ``stuck_cursor`` (the list endpoints ignore ``starting_after`` and always say
    has_more), ``has_more_forever`` (has_more is true even on the last page and after it),
    ``total_count`` ("exact"; "null": always null; "page": the size of the page only) and
    ``ignore_benchmark_filter`` (list every benchmark's runs whatever ``benchmark_id`` asks for): servers
    that stray from the documented contract in ways the exporter must not be fooled by.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[PendingFault] = []
        self.delay_seconds: float = 0.0
        self.stuck_cursor: bool = False
        self.has_more_forever: bool = False
        self.total_count: Literal["exact", "null", "page"] = "exact"
        self.ignore_benchmark_filter: bool = False
        self.huge_bytes_sent = 0  # bytes of huge bodies the client actually took, over all of them

    def fail_next(
        self,
        n: int,
        status: int,
        body: bytes = b'{"error":"boom"}',
        headers: dict[str, str] | None = None,
        path_prefix: str = "/v1",
        *,
        query: dict[str, str] | None = None,
    ) -> None:
        """Answer the next n requests under path_prefix (with these query parameters, if given) with
        this status, body and headers.

        E.g. 500/503, 429 with ``{"Retry-After": "2"}`` or an HTTP date, 401/403 for a revoked key.
        """
        fault = PendingFault(
            "fail", n, path_prefix, status, body, dict(headers or {}), query=dict(query or {})
        )
        self._queue(fault)

    def malformed_json_next(self, n: int, path_prefix: str = "/v1") -> None:
        """Answer the next n requests with 200 and the real body cut in half (invalid JSON)."""
        self._queue(PendingFault("malformed_json", n, path_prefix))

    def wrong_shape_next(self, n: int, path_prefix: str = "/v1") -> None:
        """Answer the next n requests with 200 and valid JSON of the wrong shape: ``{"items": []}``."""
        self._queue(PendingFault("wrong_shape", n, path_prefix))

    def close_mid_body_next(self, n: int, path_prefix: str = "/v1") -> None:
        """For the next n requests, promise the full Content-Length, send half the body and hang up."""
        self._queue(PendingFault("close_mid_body", n, path_prefix))

    def huge_body_next(
        self, n: int, size: int, *, declare_length: bool = True, path_prefix: str = "/v1"
    ) -> None:
        """Answer the next n requests with 200 and a body of `size` bytes (spaces), streamed in chunks
        and never held whole: a misbehaving proxy or a bug. With ``declare_length=False`` there is no
        Content-Length (the body ends when the connection closes), so only counting can catch it."""
        self._queue(PendingFault("huge_body", n, path_prefix, size=size, declare_length=declare_length))

    def pending(self) -> int:
        """How many one-shot faults are still to be served."""
        with self._lock:
            return sum(f.remaining for f in self._pending)

    def clear(self) -> None:
        """Back to a healthy API: no queued faults, no delay, honest cursors."""
        with self._lock:
            self._pending.clear()
            self.delay_seconds = 0.0
            self.stuck_cursor = False
            self.has_more_forever = False
            self.total_count = "exact"
            self.ignore_benchmark_filter = False

    def take(self, path: str, query: dict[str, str] | None = None) -> PendingFault | None:
        """Consume the first queued fault that applies to the request (called once per request)."""
        asked = query or {}
        with self._lock:
            for fault in self._pending:
                wanted = all(asked.get(name) == value for name, value in fault.query.items())
                if path.startswith(fault.path_prefix) and wanted:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._pending.remove(fault)
                    return fault
            return None

    def _queue(self, fault: PendingFault) -> None:
        if fault.remaining < 0:
            raise ValueError("n must be >= 0")
        if fault.remaining:
            with self._lock:
                self._pending.append(fault)
