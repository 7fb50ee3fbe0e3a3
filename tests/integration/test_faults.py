"""Faults of Runloop's API that the real exporter process must survive, each forced by the simulator.

Every test checks what an operator would see: the last good figures still served, `runloop_up` 0, the
age of the last good sync, a log line naming the cause, and recovery without a restart. Request
counts come from the simulator's own log, never from the exporter under test.
"""

from __future__ import annotations

import email.utils
import itertools
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from exporter.runloop.client import RetryPolicy
from exporter.simulator import RequestRecord, Simulator, World
from tests.support.exporter_process import Exporter
from tests.support.logs import json_lines
from tests.support.ports import free_port
from tests.support.runs_oracle import expected_samples
from tests.support.samples import Samples, assert_samples, benchmark_part, sample
from tests.support.syncing import new_sync

NOW_MS = 1_760_000_000_000
NAMES = {"bmd_alpha": "Alpha", "bmd_beta": "Beta"}
RUNS = "/v1/benchmark_runs"


def seed(world: World) -> None:
    """A small account: finished runs of every kind and a few running ones (so syncs ask for something)."""
    for bid, name in NAMES.items():
        world.add_benchmark(bid, name)
    for i in range(6):
        world.add_run(
            benchmark_id="bmd_alpha" if i % 2 else "bmd_beta",
            state=("completed", "failed", "canceled")[i % 3],
            start_ms=NOW_MS - 9_000_000 + i * 60_000,
            duration_ms=120_000 + i * 1_000,
            score=0.1 * (i + 1) if i % 3 == 0 else None,
        )
    for i in range(3):
        world.add_run(benchmark_id="bmd_alpha", state="running", start_ms=NOW_MS - 600_000 + i)


def change(world: World, *, start: bool = True) -> None:
    """The world moves on while the exporter cannot see it: a run finishes, another starts."""
    running = [r for r in world.runs() if r["state"] == "running" and not str(r["id"]).startswith("bmr_bad_")]
    world.finish_run(str(running[0]["id"]), "completed", duration_ms=300_000, score=0.75)
    if start:
        world.add_run(benchmark_id="bmd_beta", state="running", start_ms=NOW_MS)


def expected(world: World) -> Samples:
    return expected_samples(world.runs(), NAMES)


def errors(exporter: Exporter) -> list[dict[str, Any]]:
    return [e for e in json_lines(exporter.logs()) if e.get("level") == "error"]


def value(samples: Samples, name: str, **labels: str) -> float:
    found = sample(samples, name, **labels)
    return 0.0 if found is None else found


def wait_for_failures(exporter: Exporter, more_than: float, timeout: float = 30.0) -> Samples:
    exporter.wait_until(
        lambda: exporter.failures() > more_than, timeout, f"more than {more_than} failed syncs"
    )
    return exporter.scrape()


def wait_for_success_after(exporter: Exporter, successes: float, timeout: float = 30.0) -> Samples:
    exporter.wait_until(lambda: exporter.successes() > successes, timeout, "a successful sync")
    return exporter.scrape()


def assert_degraded(scraped: Samples, good: Samples, last_success: float) -> None:
    """During a failure: the last good figures, `runloop_up` 0, the last success where it was."""
    assert benchmark_part(scraped) == good
    assert value(scraped, "runloop_up") == 0
    assert value(scraped, "runloop_exporter_last_successful_sync_timestamp_seconds") == last_success
    assert 0 < last_success < time.time()


def assert_recovered(exporter: Exporter, world: World, successes: float, last_success: float) -> None:
    """After the fault is gone: a new sync shows the world as it is now, with no restart."""
    scraped = wait_for_success_after(exporter, successes)
    assert value(scraped, "runloop_up") == 1
    assert_samples(benchmark_part(scraped), expected(world))
    assert value(scraped, "runloop_exporter_last_successful_sync_timestamp_seconds") > last_success


@pytest.fixture
def seeded(world: World) -> World:
    seed(world)
    return world


@pytest.fixture
def start_exporter(start_exporter: Callable[..., Exporter]) -> Callable[..., Exporter]:
    """These tests count and time the run sync's requests, one stream of them: the benchmark jobs, a loop
    of their own with their own faults (tests/integration/test_jobs.py), are off here."""

    def start(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> Exporter:
        return start_exporter(*args, env={"RUNLOOP_EXPORTER_JOBS": "false", **(env or {})}, **kwargs)

    return start


def start_synced(start: Callable[..., Exporter], world: World, **env: str) -> tuple[Exporter, Samples]:
    """An exporter that has synced successfully; returns it with its benchmark figures."""
    exporter = start(env=env)
    scraped = exporter.wait_for_sync()
    assert_samples(benchmark_part(scraped), expected(world))
    return exporter, benchmark_part(scraped)


# --- transient faults ------------------------------------------------------------------------------

# What each fault looks like from outside: the request counter's code and the cause in the log line.
TRANSIENT: dict[str, tuple[Callable[[Simulator], None], str, str]] = {
    "http_503": (lambda s: s.faults.fail_next(100_000, 503), "503", "HTTP 503"),
    "timeout": (lambda s: setattr(s.faults, "delay_seconds", 3.0), "timeout", "timed out"),
    "closed_mid_body": (lambda s: s.faults.close_mid_body_next(100_000), "network_error", "Protocol"),
    "malformed_json": (lambda s: s.faults.malformed_json_next(100_000), "200", "not valid JSON"),
    "wrong_shape": (lambda s: s.faults.wrong_shape_next(100_000), "200", "no 'runs' array"),
}


@pytest.mark.parametrize("kind", list(TRANSIENT))
def test_fault_keeps_last_snapshot_says_why_and_recovers(
    kind: str, seeded: World, simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    inject, code, cause = TRANSIENT[kind]
    # A fault that is retried (503, a broken connection) may have its retry cut short by the sync's
    # deadline: the line then names the fault and the cut (tests/unit/test_api.py), so it still holds.
    env = {"RUNLOOP_EXPORTER_REQUEST_TIMEOUT_SECONDS": "0.5"}
    exporter, good = start_synced(start_exporter, seeded, **env)
    before = exporter.scrape()
    logged_before = len(errors(exporter))  # a healthy sync on a busy machine may overrun its deadline
    inject(simulator)
    change(seeded)

    first = wait_for_failures(exporter, exporter.failures())
    last_success = value(first, "runloop_exporter_last_successful_sync_timestamp_seconds")
    scraped = wait_for_failures(exporter, value(first, "runloop_exporter_syncs_total", result="failure") + 1)
    assert_degraded(scraped, good, last_success)
    counted = value(scraped, "runloop_exporter_api_requests_total", path=RUNS, code=code)
    assert counted > value(before, "runloop_exporter_api_requests_total", path=RUNS, code=code)
    assert exporter.get("/readyz").status_code == 200  # it has figures to serve, stale or not
    causes = [str(e.get("error")) for e in errors(exporter)[logged_before:]]
    assert causes
    assert all(cause in text for text in causes), causes

    successes = exporter.successes()
    simulator.faults.clear()
    assert_recovered(exporter, seeded, successes, last_success)


def test_connection_refused_keeps_last_snapshot_and_recovers(
    seeded: World, start_exporter: Callable[..., Exporter]
) -> None:
    port = free_port()
    api = Simulator(seeded, port=port)
    api.start()
    try:
        exporter, good = start_synced(start_exporter, seeded, RUNLOOP_BASE_URL=api.url)
        api.stop()  # nothing listens on the port any more: connection refused
        change(seeded)
        first = wait_for_failures(exporter, exporter.failures())
        last_success = value(first, "runloop_exporter_last_successful_sync_timestamp_seconds")
        scraped = wait_for_failures(exporter, exporter.failures())
        assert_degraded(scraped, good, last_success)
        assert value(scraped, "runloop_exporter_api_requests_total", path=RUNS, code="network_error") > 0
        logged = [str(e.get("error")) for e in errors(exporter)]
        assert logged  # a check over no lines would pass whatever the exporter logged
        assert all("ConnectError" in text for text in logged), logged

        successes = exporter.successes()
        api.start()  # same port again: Runloop is back
        assert_recovered(exporter, seeded, successes, last_success)
    finally:
        api.stop()


# --- retries, backoff and the sync deadline ---------------------------------------------------------


def gaps(requests: list[RequestRecord]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(requests)]


def test_transient_errors_are_retried_with_exponential_backoff(
    seeded: World, simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    # The first sync (the backfill) meets two 503s; with a 5 s interval its deadline (4.5 s, fresh for
    # each page of a full read) leaves time for both backoffs (at most 1 + 2 s), so it must succeed.
    simulator.faults.fail_next(2, 503, path_prefix=RUNS)
    exporter = start_exporter(env={"RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": "5"})
    scraped = exporter.wait_for_sync(after=0)
    assert value(scraped, "runloop_exporter_syncs_total", result="failure") == 0
    assert value(scraped, "runloop_up") == 1
    assert value(scraped, "runloop_exporter_api_requests_total", path=RUNS, code="503") == 2
    # The backfill's first page comes first, tried again twice; the benchmark listing once it is read.
    first_three = simulator.requests[:3]
    assert [r.path for r in first_three] == [RUNS] * 3
    assert "/v1/benchmarks" in [r.path for r in simulator.requests[3:]]
    assert first_three[0].query == first_three[2].query  # the same request, tried again
    # Full jitter within [ceiling/2, ceiling], ceilings 1 s then 2 s: the waits are at least 0.5 and 1 s.
    first_wait, second_wait = gaps(first_three)
    assert first_wait >= 0.5
    assert second_wait >= 1.0


def test_backoff_has_jitter_and_doubles_up_to_the_cap() -> None:
    """The policy the exporter uses: delays spread (no thundering herd), doubling, capped at 60 s."""
    policy = RetryPolicy()
    rng = random.Random(4)
    for attempt, ceiling in enumerate([1, 2, 4, 8, 16, 32, 60, 60]):
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # spread, not one fixed value


def test_no_sync_outlives_its_deadline(
    seeded: World, simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    # Without deadlines, five retries back off for at least 0.5+1+2+4+8 = 15.5 s per sync.
    simulator.faults.fail_next(100_000, 503)
    exporter = start_exporter(
        env={
            "RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": "2",
            "RUNLOOP_EXPORTER_SYNC_TIMEOUT_SECONDS": "1.5",
            "RUNLOOP_EXPORTER_FULL_READ_TIMEOUT_SECONDS": "1.5",
        }
    )
    # The backfill (a full read, with its own deadline) fails within it ...
    scraped = wait_for_failures(exporter, 1)
    count = value(scraped, "runloop_exporter_sync_duration_seconds_count")
    assert value(scraped, "runloop_exporter_sync_duration_seconds_bucket", le="5.0") == count
    simulator.faults.clear()
    exporter.wait_for_sync(after=0)
    # ... and so does an incremental sync.
    simulator.faults.fail_next(100_000, 503)
    mark = len(simulator.requests)
    failures = exporter.failures()
    scraped = wait_for_failures(exporter, failures + 1)
    count = value(scraped, "runloop_exporter_sync_duration_seconds_count")
    assert value(scraped, "runloop_exporter_sync_duration_seconds_bucket", le="5.0") == count
    # Within 1.5 s there is room for the first try and at most two retries (waits of >= 0.5 and >= 1 s).
    failed = value(scraped, "runloop_exporter_syncs_total", result="failure") - failures
    assert len(simulator.requests) - mark <= 3 * (failed + 1)
    assert any(
        "deadline" in str(e.get("error")) and "HTTP 503" in str(e.get("error")) for e in errors(exporter)
    )


class _Trickle(BaseHTTPRequestHandler):
    """Answers 200 at once, then sends the body one byte every 0.1 s: no single read ever times out."""

    protocol_version = "HTTP/1.1"
    stop = threading.Event()

    def do_GET(self) -> None:
        body = b'{"runs":[],"has_more":false,"total_count":0}' + b" " * 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(len(body)):
            try:
                self.wfile.write(body[i : i + 1])
            except OSError:
                return
            if self.stop.wait(0.1):
                return

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def trickling_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    _Trickle.stop.set()
    server.shutdown()
    server.server_close()
    _Trickle.stop.clear()


def test_a_body_sent_byte_by_byte_cannot_hold_a_sync_past_its_deadline(
    trickling_api: str, start_exporter: Callable[..., Exporter]
) -> None:
    # The whole body would take 25 s to arrive; each byte comes well within the request timeout.
    exporter = start_exporter(
        env={
            "RUNLOOP_BASE_URL": trickling_api,
            "RUNLOOP_EXPORTER_REQUEST_TIMEOUT_SECONDS": "2",
            "RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": "2",
            "RUNLOOP_EXPORTER_FULL_READ_TIMEOUT_SECONDS": "1.5",
        }
    )
    scraped = wait_for_failures(exporter, 1, timeout=15)
    count = value(scraped, "runloop_exporter_sync_duration_seconds_count")
    assert value(scraped, "runloop_exporter_sync_duration_seconds_bucket", le="5.0") == count
    assert value(scraped, "runloop_exporter_syncs_total", result="success") == 0
    assert value(scraped, "runloop_exporter_api_requests_total", path=RUNS, code="timeout") >= 2
    logged = [str(e.get("error")) for e in errors(exporter)]
    assert logged
    assert all("timed out" in text for text in logged), logged


# --- rate limits ----------------------------------------------------------------------------------


def test_retry_after_seconds_holds_every_request_back(
    seeded: World, simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    exporter, good = start_synced(start_exporter, seeded)
    simulator.faults.fail_next(100_000, 429, headers={"Retry-After": "3"})
    mark = len(simulator.requests)  # every request from here on is answered 429
    exporter.wait_until(lambda: len(simulator.requests) >= mark + 3, 30, "three rate-limited requests")
    limited = simulator.requests[mark:]
    # The interval is 1 s and the sync deadline 0.9 s: only the Retry-After can space requests this far.
    assert all(gap >= 3.0 for gap in gaps(limited)), gaps(limited)
    scraped = exporter.scrape()
    assert value(scraped, "runloop_exporter_rate_limited_total") >= len(limited)
    assert value(scraped, "runloop_exporter_rate_limited_total") == value(
        scraped, "runloop_exporter_api_requests_total", path=RUNS, code="429"
    )
    assert value(scraped, "runloop_up") == 0
    assert benchmark_part(scraped) == good

    successes = exporter.successes()
    simulator.faults.clear()
    wait_for_success_after(exporter, successes)


def test_retry_after_http_date_holds_every_request_back(
    seeded: World, simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    exporter, good = start_synced(start_exporter, seeded)
    until = time.time() + 4
    date = email.utils.formatdate(until, usegmt=True)  # whole seconds: the date is up to 1 s earlier
    until_monotonic = email.utils.parsedate_to_datetime(date).timestamp() - (time.time() - time.monotonic())
    simulator.faults.fail_next(1, 429, headers={"Retry-After": date})
    mark = len(simulator.requests)
    exporter.wait_until(lambda: simulator.faults.pending() == 0, 10, "the 429 to be served")
    successes = exporter.successes()
    scraped = wait_for_success_after(exporter, successes)
    # The exporter sends one request at a time, so the 429 went to request mark - 1 or mark: every
    # request from mark + 1 on was sent after it, and none may come before the date.
    after = simulator.requests[mark + 1 :]
    assert after
    assert min(r.at for r in after) >= until_monotonic - 0.05
    assert value(scraped, "runloop_exporter_rate_limited_total") == 1
    assert benchmark_part(scraped) == good


# --- a refused key --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_one_request_and_one_line_per_interval(
    status: int, seeded: World, simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    exporter, good = start_synced(start_exporter, seeded)
    if status == 401:
        simulator.api_key = "revoked-and-replaced"  # the simulator now refuses our key
    else:
        simulator.faults.fail_next(100_000, 403)
    first = wait_for_failures(exporter, exporter.failures())
    failures_before = value(first, "runloop_exporter_syncs_total", result="failure")
    last_success = value(first, "runloop_exporter_last_successful_sync_timestamp_seconds")
    mark = len(simulator.requests)
    lines_before = len([e for e in errors(exporter) if "the API key was refused" in e["event"]])
    scraped = wait_for_failures(exporter, failures_before + 3)
    failed = value(scraped, "runloop_exporter_syncs_total", result="failure") - failures_before
    sent = len(simulator.requests) - mark
    # One request per sync, however many syncs (a sync may be in flight at either end of the window).
    assert failed - 1 <= sent <= failed + 1
    assert_degraded(scraped, good, last_success)
    refused = [e for e in errors(exporter) if "the API key was refused" in e["event"]]
    assert failed - 1 <= len(refused) - lines_before <= failed + 1
    assert all(e["error_type"] == "AuthError" for e in errors(exporter))
    assert "sim-key" not in exporter.logs()

    successes = exporter.successes()
    simulator.api_key = "sim-key"
    simulator.faults.clear()
    assert_recovered(exporter, seeded, successes, last_success)


# --- paging that does not advance -----------------------------------------------------------------


@pytest.mark.parametrize("broken", ["stuck_cursor", "has_more_forever"])
def test_paging_that_does_not_advance_stops_after_a_bounded_number_of_requests(
    broken: str, seeded: World, simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    setattr(simulator.faults, broken, True)
    exporter = start_exporter(env={"RUNLOOP_EXPORTER_PAGE_SIZE": "2"})
    scraped = wait_for_failures(exporter, 2)
    failed = value(scraped, "runloop_exporter_syncs_total", result="failure")
    listings = [r for r in simulator.requests if r.path == RUNS]
    # 9 runs in pages of 2 are 5 pages; the bound from total_count is 2 * 5 + 2 pages per sync.
    assert len(listings) <= 12 * (failed + 1)
    assert exporter.get("/readyz").status_code == 503
    assert value(scraped, "runloop_up") == 0
    causes = {str(e.get("error_type")) for e in errors(exporter)}
    assert causes == {"PaginationError"}

    simulator.faults.clear()
    scraped = exporter.wait_for_sync(after=0)
    assert_samples(benchmark_part(scraped), expected(seeded))


# --- bad records ----------------------------------------------------------------------------------

SECRET = "do-not-log-this-secret"

# Each invalid record, with the reason it must be counted under.
BAD_RECORDS: list[tuple[str, dict[str, Any]]] = [
    ("invalid_state", {"state": ""}),
    ("invalid_state", {"state": 7}),
    ("invalid_state", {"state": "Paused"}),
    ("invalid_state", {"state": "on hold"}),
    ("invalid_score", {"state": "completed", "duration_ms": 1000, "score": "0.9"}),
    ("invalid_score", {"state": "completed", "duration_ms": 1000, "score": 1.5}),
    ("invalid_score", {"state": "completed", "duration_ms": 1000, "score": -0.2}),
    ("invalid_score", {"state": "completed", "duration_ms": 1000, "score": float("nan")}),
    ("invalid_score", {"state": "completed", "duration_ms": 1000, "score": float("inf")}),
    ("invalid_score", {"state": "running", "score": True}),
    ("invalid_duration", {"state": "failed", "duration_ms": -1}),
    ("invalid_duration", {"state": "failed", "duration_ms": 40 * 365 * 86_400_000}),
    ("invalid_duration", {"state": "failed", "duration_ms": float("nan")}),
    ("invalid_duration", {"state": "canceled", "duration_ms": 12.5}),
    ("invalid_start_time", {"state": "failed", "start_time_ms": -5}),
    ("missing_field", {"state": "completed", "start_time_ms": None}),
    ("missing_field", {"state": "completed", "metadata": None}),
    ("invalid_metadata", {"state": "completed", "metadata": {"k": 1}}),
    ("invalid_benchmark_id", {"state": "completed", "benchmark_id": 12}),
]


def add_bad_records(world: World) -> dict[str, str]:
    """The invalid records, each with a unique id; returns id -> reason."""
    reasons = {}
    for i, (reason, fields) in enumerate(BAD_RECORDS):
        record: dict[str, Any] = {
            "id": f"bmr_bad_{i:02d}",
            "benchmark_id": "bmd_alpha",
            "start_time_ms": NOW_MS,
            "metadata": {},
            "environment_variables": {"TOKEN": SECRET},
            "secrets_provided": {"DB": SECRET},
        }
        record.update(fields)
        for key in [k for k, v in fields.items() if v is None]:
            del record[key]  # None in the table means: the field is absent
        reasons[world.add_raw_run(record)] = reason
    return reasons


def valid_records(world: World) -> list[dict[str, Any]]:
    """The runs the exporter must count: not the bad ones, and a duplicated id only once."""
    out: dict[str, dict[str, Any]] = {}
    for run in world.runs():
        if not str(run["id"]).startswith("bmr_bad_"):
            out.setdefault(str(run["id"]), run)
    return list(out.values())


@pytest.mark.parametrize("mode", ["incremental", "full"])
def test_bad_records_are_skipped_counted_and_logged_once(
    mode: str, world: World, simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    seed(world)
    world.add_run(benchmark_id="bmd_beta", state="paused", start_ms=NOW_MS - 1_000)  # new, well formed
    reasons = add_bad_records(world)
    # A duplicated id, its two copies pages apart (and never at a page's end, where it would be a cursor).
    dup = world.runs()[-2]
    world.add_raw_run(dict(dup))
    order = [str(r["id"]) for r in world.runs()]
    positions = [i for i, rid in enumerate(order) if rid == dup["id"]]
    page = 3
    assert len(positions) == 2
    assert positions[1] // page - positions[0] // page >= 2
    assert all(p % page != page - 1 for p in positions)

    exporter = start_exporter(
        env={"RUNLOOP_EXPORTER_PAGE_SIZE": str(page), "RUNLOOP_EXPORTER_SYNC_MODE": mode}
    )
    scraped = exporter.wait_for_sync()
    names = {**NAMES}
    assert_samples(benchmark_part(scraped), expected_samples(valid_records(world), names))
    assert value(scraped, "runloop_benchmark_runs", benchmark_id="bmd_beta", state="paused") == 1

    # More syncs, the bad records read again (all in full mode; the running one in incremental mode).
    change(world, start=False)  # a new run would move the duplicate to a page's end
    successes = exporter.successes()
    wait_for_success_after(exporter, successes + 2)
    scraped = exporter.scrape()
    assert_samples(benchmark_part(scraped), expected_samples(valid_records(world), names))
    counts: dict[str, int] = {}
    for reason in [*reasons.values(), "duplicate_id"]:
        counts[reason] = counts.get(reason, 0) + 1
    for reason, count in counts.items():
        assert value(scraped, "runloop_exporter_invalid_records_total", reason=reason) == count, reason
    assert value(scraped, "runloop_up") == 1

    skipped = [e for e in json_lines(exporter.logs()) if e["event"] == "skipped an invalid run record"]
    logged = [(e["run_id"], e["reason"]) for e in skipped]
    assert sorted(logged) == sorted([*reasons.items(), (str(dup["id"]), "duplicate_id")])
    assert SECRET not in exporter.logs()


def test_a_duplicated_id_does_not_force_a_full_read_every_sync(
    world: World, start_exporter: Callable[..., Exporter]
) -> None:
    seed(world)
    dup = world.runs()[-2]
    world.add_raw_run(dict(dup))
    exporter = start_exporter()
    exporter.wait_for_sync()
    scraped = exporter.wait_for_sync()
    assert value(scraped, "runloop_exporter_full_reads_total", reason="probe_mismatch") == 0


def test_a_reconcile_that_finds_no_drift_says_so(world: World, simulator: Simulator) -> None:
    """runloop_exporter_reconcile_drift_total is an alarm: it must not go up when nothing drifted."""
    for bid in ("bmd_alpha", "bmd_beta"):
        world.add_benchmark(bid, bid)
    world.add_many_finished(500, ["bmd_alpha", "bmd_beta"], NOW_MS - 86_400_000, seed=5)
    clock = [0.0]
    sync, telemetry = new_sync(
        simulator.url, page_size=100, clock=lambda: clock[0], reconcile_interval_s=3600
    )
    rng = random.Random(3)
    sync.run()
    for _ in range(20):  # runs start and finish; each sync learns of them incrementally
        run_id = world.add_run(
            benchmark_id=rng.choice(["bmd_alpha", "bmd_beta"]), state="running", start_ms=NOW_MS
        )
        sync.run()
        world.finish_run(run_id, "completed", duration_ms=rng.randint(1_000, 9_000_000), score=rng.random())
        sync.run()
    clock[0] = 7200.0  # the hourly reconcile is due: a full read, compared with what the syncs held
    sync.run()
    assert (
        telemetry.registry.get_sample_value("runloop_exporter_full_reads_total", {"reason": "scheduled"}) == 1
    )
    assert telemetry.registry.get_sample_value("runloop_exporter_reconcile_drift_total") == 0


# --- stopping -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("moment", ["idle", "mid_request", "mid_backoff"])
def test_signal_exits_0_within_5_seconds(
    sig: int, moment: str, seeded: World, simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    if moment == "mid_request":
        simulator.faults.delay_seconds = 60  # the first request hangs: the backfill is in flight
    if moment == "mid_backoff":
        simulator.faults.fail_next(100_000, 503)  # the backfill backs off, for up to a minute
    exporter = start_exporter(env={"RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": "60"})
    if moment == "idle":
        exporter.wait_for_sync(after=0)
    else:
        exporter.wait_until(
            lambda: len(simulator.requests) >= (1 if moment == "mid_request" else 2), 10, "a sync"
        )
    assert exporter.proc is not None
    exporter.proc.send_signal(sig)
    try:
        code = exporter.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 5 s after the signal:\n{exporter.logs()}")
    assert code == 0, exporter.logs()
    events = [e["event"] for e in json_lines(exporter.logs())]
    assert "stopping" in events
    assert events[-1] == "stopped"
    assert "Traceback" not in exporter.logs()
    assert errors(exporter) == []  # a normal stop is no error, even in the middle of a sync
    # A hanging request is abandoned after the grace period; a backoff wakes up at once.
    assert json_lines(exporter.logs())[-1]["sync_interrupted"] is (moment == "mid_request")
