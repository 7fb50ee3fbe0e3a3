"""A small client for Runloop's benchmark-run endpoints, on httpx.

Its errors are in exporter.runloop.errors.

Long because one class holds the whole request path (gate, deadline, retries, Retry-After, bounded
body reads) and the paging built on it; they share the client's private state, so halves would reach
into each other.

Every request takes its deadline (a `time.monotonic()` value, or None) as an argument: a sync passes
its own down, so concurrent callers never share a mutable one.
"""

from __future__ import annotations

import copy
import email.utils
import math
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from exporter import __version__
from exporter.runloop.decode import Record, Wire
from exporter.runloop.errors import (
    ApiError,
    AuthError,
    CancelledError,
    PaginationError,
    RateLimitedError,
    ResponseTooLargeError,
    RunloopError,
    ShutdownError,
    TransientError,
)
from exporter.runloop.jobs import JobRecord
from exporter.runloop.models import BenchmarkRecord, RunRecord
from exporter.runloop.politeness import GateTimeoutError, Lane, RequestGate

RUNS_PATH = "/v1/benchmark_runs"
RUN_PATH = "/v1/benchmark_runs/{id}"
BENCHMARK_PATH = "/v1/benchmarks/{id}"
BENCHMARKS_PATH = "/v1/benchmarks"
JOBS_PATH = "/v1/benchmark_jobs"
JOB_PATH = "/v1/benchmark_jobs/{id}"

USER_AGENT = f"runloop-exporter/{__version__}"
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 60.0
# Without a total_count, a listing that says has_more for this many pages is broken, not large.
MAX_PAGES = 20_000
# The largest answer read (after decompression). A page of 5,000 runs is about 1.2 MB, some 10 MB with
# generous metadata; an answer past this is a broken proxy or a bug, and would not fit the pod anyway.
MAX_BODY_BYTES = 32 * 1024 * 1024
# The largest answer read from the job endpoints. A job view over 500 scenarios and 4 agents is some
# 400 KB, so pages of jobs are sized to stay well under this (see exporter/sync/jobs.py); a bound this
# much lower than MAX_BODY_BYTES keeps the memory of one parsed page small.
MAX_JOB_BODY_BYTES = 16 * 1024 * 1024

# How each endpoint's answers are decoded: typed records of only the fields used (exporter.runloop.decode).
RUNS = Wire("runs", RunRecord)
BENCHMARKS = Wire("benchmarks", BenchmarkRecord)
JOBS = Wire("jobs", JobRecord)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, as Runloop's SDKs do it (1 s doubling up to 60 s, 5 retries)."""

    max_retries: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number `attempt` (0-based)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2**attempt)
        return rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list endpoint, its records decoded but not validated (that is done one by one).

    A record is typed (a `Record` of only the fields the exporter reads) or, when it did not fit those
    types, plain JSON as json.loads gives it: parse_run, parse_job and record_id take either.
    """

    records: list[Any]
    has_more: bool
    total_count: int | None
    body_bytes: int = 0  # size of the body it came in (job pages are sized by it)


RequestHook = Callable[[str, str], None]
"""Called once per HTTP attempt with the endpoint template and the status code (or an error kind)."""
LatencyHook = Callable[[str, float], None]
"""Called once per HTTP attempt with the endpoint template and the seconds it took, answered or not."""


def parse_retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After-Ms`, or `Retry-After` as seconds or an HTTP date; None if absent."""
    wall_now = time.time() if now is None else now
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(value, 0.0)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - wall_now, 0.0)
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class RunloopClient:
    """Talks to Runloop: auth, retries with backoff and Retry-After, cursor paging, a deadline per sync."""

    def __init__(
        self,
        base_url: str,
        key: Callable[[], str],
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        on_request: RequestHook | None = None,
        on_rate_limited: Callable[[], None] | None = None,
        on_latency: LatencyHook | None = None,
        stop: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
        gate: RequestGate | Lane | None = None,
    ) -> None:
        self._key = key
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy()
        self._on_request = on_request or (lambda endpoint, code: None)
        self._on_rate_limited = on_rate_limited or (lambda: None)
        self._on_latency = on_latency or (lambda endpoint, seconds: None)
        self._stop = stop or threading.Event()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.gate: RequestGate | Lane = gate or RequestGate(64, 1000.0, stop=self._stop)
        self._count_lock = threading.Lock()
        self.requests = 0  # HTTP attempts sent, for the per-sync log line and tests
        self._http = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=transport,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=self.gate.max_concurrent + 1),
        )

    def sibling(self, gate: RequestGate | Lane) -> RunloopClient:
        """A client on the same connections, key and retries that asks through `gate` (a lane of this
        client's gate) and counts its own requests: a read beside the sync, its cost told apart."""
        twin = copy.copy(self)
        twin.gate = gate
        twin.requests = 0
        twin._count_lock = threading.Lock()
        return twin

    def close(self) -> None:
        """Close pooled connections (also interrupts nothing in flight; requests have timeouts)."""
        self._http.close()

    # --- endpoints -------------------------------------------------------------------------------

    def list_runs(
        self,
        *,
        limit: int,
        starting_after: str | None = None,
        state: str | None = None,
        benchmark_id: str | None = None,
        include_total_count: bool = False,
        deadline: float | None = None,
    ) -> Page:
        """One page of `GET /v1/benchmark_runs`."""
        params = _listing_query(
            limit, starting_after, include_total_count, state=state, benchmark_id=benchmark_id
        )
        return self._list(RUNS_PATH, params, deadline, RUNS)

    def iter_runs_pages(
        self,
        *,
        page_size: int,
        state: str | None = None,
        benchmark_id: str | None = None,
        include_total_count: bool = False,
        starting_after: str | None = None,
        deadline: float | Callable[[], float | None] | None = None,
    ) -> Iterator[Page]:
        """Every page of a run listing, following the cursor as Runloop's SDKs do.

        `deadline` may be a callable, asked before each page (a full read gives each page its own).
        """

        def fetch(cursor: str | None, first: bool) -> Page:
            return self.list_runs(
                limit=page_size,
                starting_after=cursor,
                state=state,
                benchmark_id=benchmark_id,
                include_total_count=include_total_count and first,
                deadline=deadline() if callable(deadline) else deadline,
            )

        return _paginate(fetch, page_size, starting_after)

    def iter_benchmark_pages(self, *, page_size: int, deadline: float | None = None) -> Iterator[Page]:
        """Every page of `GET /v1/benchmarks` (which leaves archived benchmarks out)."""

        def fetch(cursor: str | None, first: bool) -> Page:
            params = _listing_query(page_size, cursor, include_total_count=False)
            return self._list(BENCHMARKS_PATH, params, deadline, BENCHMARKS)

        return _paginate(fetch, page_size, None)

    def get_run(self, run_id: str, *, deadline: float | None = None) -> Any | None:
        """`GET /v1/benchmark_runs/{id}`: the run (decoded, not validated), or None when it no longer exists."""
        return self._one(RUN_PATH, f"{RUNS_PATH}/{_quote(run_id)}", deadline, RUNS)

    def get_benchmark(self, benchmark_id: str, *, deadline: float | None = None) -> Any | None:
        """`GET /v1/benchmarks/{id}`: the benchmark (decoded, not validated), or None when it does not exist."""
        return self._one(BENCHMARK_PATH, f"{BENCHMARKS_PATH}/{_quote(benchmark_id)}", deadline, BENCHMARKS)

    def list_jobs(
        self,
        *,
        limit: int,
        starting_after: str | None = None,
        include_total_count: bool = False,
        deadline: float | None = None,
    ) -> Page:
        """One page of `GET /v1/benchmark_jobs` (no state filter exists), read under MAX_JOB_BODY_BYTES."""
        params = _listing_query(limit, starting_after, include_total_count)
        return self._list(JOBS_PATH, params, deadline, JOBS, max_bytes=MAX_JOB_BODY_BYTES)

    def get_job(self, job_id: str, *, deadline: float | None = None) -> Any | None:
        """`GET /v1/benchmark_jobs/{id}`: the job (decoded, not validated), or None when it no longer exists."""
        return self._one(
            JOB_PATH, f"{JOBS_PATH}/{_quote(job_id)}", deadline, JOBS, max_bytes=MAX_JOB_BODY_BYTES
        )

    # --- decoding --------------------------------------------------------------------------------

    def _list(
        self,
        endpoint: str,
        params: dict[str, Any],
        deadline: float | None,
        wire: Wire[Any],
        *,
        max_bytes: int = MAX_BODY_BYTES,
    ) -> Page:
        """One page of a list endpoint, its records decoded but not validated (exporter.runloop.decode)."""
        content = self._get(endpoint, endpoint, params, deadline, max_bytes=max_bytes)
        if content is None:  # only a lookup takes a 404 for an answer
            raise ApiError(f"{endpoint}: unexpected HTTP 404", 404)
        records, has_more, total = wire.page(content, endpoint)
        return Page(records, has_more, total, len(content))

    def _one(
        self,
        endpoint: str,
        path: str,
        deadline: float | None,
        wire: Wire[Any],
        *,
        max_bytes: int = MAX_BODY_BYTES,
    ) -> Any | None:
        """One record by id, decoded; None when the API answers 404."""
        content = self._get(endpoint, path, None, deadline, allow_404=True, max_bytes=max_bytes)
        return None if content is None else wire.record(content, endpoint)

    # --- transport -------------------------------------------------------------------------------

    def _check_time(self, cause: RunloopError | None, deadline: float | None) -> None:
        if self._stop.is_set():
            raise ShutdownError("the exporter is shutting down")
        if deadline is not None and time.monotonic() >= deadline:
            if cause is not None:  # woke from a backoff too late (a busy machine): still say why
                raise CancelledError(f"{cause}; not retried: the sync ran past its deadline")
            raise CancelledError("the sync ran past its deadline")

    def _wait(self, seconds: float, cause: RunloopError, deadline: float | None) -> None:
        """Sleep, but wake at once on shutdown; refuse to sleep past the deadline (naming the cause)."""
        if deadline is not None and time.monotonic() + seconds >= deadline:
            raise CancelledError(
                f"{cause}; not retried: waiting {seconds:.1f} s would pass the sync deadline"
            )
        if self._stop.wait(seconds):
            raise ShutdownError("the exporter is shutting down")

    def _honour_pause(self, deadline: float | None) -> None:
        """Wait out a Retry-After that any caller received: a 429 pauses every worker, not one."""
        not_before = self.gate.not_before
        wait = not_before - time.monotonic()
        if wait <= 0:
            return
        held = RateLimitedError(f"Runloop asked us to wait; no request for another {wait:.1f} s", not_before)
        if wait > _MAX_RETRY_AFTER_S:
            raise held
        self._wait(wait, held, deadline)

    def _get(
        self,
        endpoint: str,
        path: str,
        params: dict[str, Any] | None,
        deadline: float | None,
        *,
        allow_404: bool = False,
        max_bytes: int = MAX_BODY_BYTES,
    ) -> bytes | None:
        """One GET, retried: each attempt waits out any shared pause, then takes a request slot.

        The answer's body, or None for a 404 when `allow_404`."""
        attempt = 0
        cause: TransientError | None = None  # the error being retried, if any
        while True:
            self._check_time(cause, deadline)
            self._honour_pause(deadline)
            try:
                with self.gate.slot(deadline):
                    return self._send(
                        endpoint, path, params, deadline, allow_404=allow_404, max_bytes=max_bytes
                    )
            except GateTimeoutError as exc:
                self._check_time(cause, deadline)  # a stop or a passed deadline says so in its own words
                raise CancelledError(f"{endpoint}: {exc}") from None
            except CancelledError as exc:  # a retry cut short by the deadline: still say what was retried
                if cause is None:
                    raise
                raise CancelledError(f"{cause}; the retry was cut short: {exc}") from None
            except RateLimitedError as exc:
                error: TransientError = exc
                delay = max(exc.retry_at - time.monotonic(), 0.0)
            except TransientError as exc:
                error = exc
                delay = (
                    exc.retry_after if exc.retry_after is not None else self._retry.delay(attempt, self._rng)
                )
            if attempt >= self._retry.max_retries:
                raise error
            if isinstance(error, RateLimitedError) and delay > _MAX_RETRY_AFTER_S:
                raise error
            attempt += 1
            self._wait(delay, error, deadline)
            cause = error

    def _send(
        self,
        endpoint: str,
        path: str,
        params: dict[str, Any] | None,
        deadline: float | None,
        *,
        allow_404: bool,
        max_bytes: int,
    ) -> bytes | None:
        """One attempt, in a request slot: the answer's body, or what went wrong as the client's errors."""
        timeout = self._timeout_s
        if deadline is not None:
            timeout = max(min(timeout, deadline - time.monotonic()), 0.001)
        with self._count_lock:
            self.requests += 1
        started = time.monotonic()
        try:
            with self._http.stream(
                "GET",
                path,
                params=params,
                headers={"Authorization": f"Bearer {self._key()}"},
                timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            ) as response:
                content = self._read_body(response, deadline, max_bytes)
        except ResponseTooLargeError as exc:
            self._on_request(endpoint, "too_large")
            raise ResponseTooLargeError(f"{endpoint}: {exc}") from None
        except httpx.TimeoutException:
            self._on_request(endpoint, "timeout")
            if deadline is not None and time.monotonic() >= deadline:  # cut short by our own deadline
                raise CancelledError(
                    f"{endpoint}: timed out; not retried: the sync ran past its deadline"
                ) from None
            raise TransientError(f"{endpoint}: timed out") from None
        except httpx.TransportError as exc:
            self._on_request(endpoint, "network_error")
            raise TransientError(f"{endpoint}: {type(exc).__name__}") from None
        finally:
            self._on_latency(endpoint, time.monotonic() - started)
        status = response.status_code
        self._on_request(endpoint, str(status))
        if status == 429:
            self._on_rate_limited()
            delay = parse_retry_after(response.headers)
            retry_at = time.monotonic() + (delay if delay is not None else self._retry.delay(0, self._rng))
            self.gate.pause_until(retry_at)
            raise RateLimitedError(f"{endpoint}: rate limited (429)", retry_at)
        if status in (401, 403):
            raise AuthError(f"the API key was refused ({status} from {endpoint})", status)
        if status == 404 and allow_404:
            return None
        if status in _RETRY_STATUSES:
            raise TransientError(f"{endpoint}: HTTP {status}", _bounded(parse_retry_after(response.headers)))
        if status != 200:
            raise ApiError(f"{endpoint}: unexpected HTTP {status}", status)
        return content

    def _read_body(self, response: httpx.Response, deadline: float | None, max_bytes: int) -> bytes:
        """The body, checked against the deadline chunk by chunk.

        httpx's timeout applies to each read, so a server that sends a byte now and then would
        otherwise hold a sync far past its deadline. A body larger than `max_bytes` (as declared,
        or as counted after decompression, so a gzip bomb too) is refused without reading the rest.
        """
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise ResponseTooLargeError(f"the answer is {declared} bytes, more than {max_bytes}")
        chunks = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise ResponseTooLargeError(f"the answer is larger than {max_bytes} bytes; not read further")
            chunks.append(chunk)
            if deadline is not None and time.monotonic() >= deadline:
                raise httpx.ReadTimeout(
                    "the body arrives too slowly for the sync deadline", request=response.request
                )
        return b"".join(chunks)


def _paginate(
    fetch: Callable[[str | None, bool], Page], page_size: int, cursor: str | None
) -> Iterator[Page]:
    """Follow the cursor until `has_more` is false.

    Raises PaginationError when the cursor repeats, a page with `has_more` holds no id to continue
    from, or the pages outnumber what `total_count` (or, without a plausible one, MAX_PAGES) allows.
    """
    used: set[str] = set()
    pages = 0
    max_pages = MAX_PAGES
    while True:
        page = fetch(cursor, pages == 0)
        pages += 1
        # A total that cannot be the listing's (smaller than what this page already shows) is ignored.
        plausible = page.total_count is not None and page.total_count > len(page.records) - (
            not page.has_more
        )
        if pages == 1 and plausible and page.total_count is not None:
            max_pages = 2 * math.ceil(page.total_count / page_size) + 2
        yield page
        if not page.has_more:
            return
        next_cursor = _last_id(page.records)
        if next_cursor is None:
            raise PaginationError(f"page {pages} says has_more but holds no id to continue from")
        if next_cursor in used or next_cursor == cursor:
            raise PaginationError(
                f"the cursor did not advance after {pages} pages (repeated {next_cursor!r})"
            )
        if pages >= max_pages:
            raise PaginationError(f"has_more still true after {pages} pages, more than the listing can hold")
        used.add(next_cursor)
        cursor = next_cursor


def _listing_query(
    limit: int, starting_after: str | None, include_total_count: bool, **filters: str | None
) -> dict[str, str | int]:
    """The query of one page of a list endpoint: its size, the cursor and the filters given, and the count."""
    params: dict[str, str | int] = {"limit": limit}
    if starting_after is not None:
        params["starting_after"] = starting_after
    params.update({name: value for name, value in filters.items() if value is not None})
    params["include_total_count"] = "true" if include_total_count else "false"
    return params


def _bounded(delay: float | None) -> float | None:
    """Honour a Retry-After between 0 and 60 s, as the SDKs do; otherwise fall back to backoff."""
    if delay is None or delay > _MAX_RETRY_AFTER_S:
        return None
    return delay


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def record_id(record: Any) -> str | None:
    """The id of a listed record, typed or plain JSON, if it has a usable one (whether or not the rest
    of it is valid)."""
    if isinstance(record, Record):
        return record.id or None
    if isinstance(record, dict):
        value = record.get("id")
        if isinstance(value, str) and value:
            return value
    return None


def _last_id(records: list[Any]) -> str | None:
    return next((rid for rid in map(record_id, reversed(records)) if rid is not None), None)
