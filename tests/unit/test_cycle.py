"""The run sync's cycle: what it publishes and records on success, on failure and at the deadline.

No subprocess and no network: a scripted Sync sends its requests through a real RunloopClient over
httpx.MockTransport (so the job's request count is the transport's), and the outcome is published into
the real server State through app.StatePublisher; the cycle is app.runs_cycle. Expected figures come from the runs the test made,
not from the exporter's code.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import runs_cycle
from exporter.http.state import State
from exporter.metrics.aggregate import GroupKey, RunningRun, Snapshot, Totals, build_snapshot
from exporter.metrics.telemetry import Telemetry
from exporter.publisher import StatePublisher
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.errors import CancelledError, ShutdownError, TransientError
from exporter.runloop.models import Run
from exporter.sync.cycle import Outcome

DEADLINE_S = 12.5
NOW_MS = 1_700_000_000_000


def snapshot_of(completed: int, failed: int, running: int) -> Snapshot:
    """A snapshot of benchmark b1 with these runs (each finished run took a minute)."""
    totals = Totals((0.5, 1.0), (60.0, 3600.0))
    for i in range(completed):
        totals.add(Run(f"c{i}", "b1", "completed", NOW_MS, 60_000, 0.75, {}, None), GroupKey("b1"))
    for i in range(failed):
        totals.add(Run(f"f{i}", "b1", "failed", NOW_MS, 60_000, None, {}, None), GroupKey("b1"))
    live = [RunningRun(f"r{i}", GroupKey("b1"), NOW_MS) for i in range(running)]
    return build_snapshot(totals, live, {"b1": "Bench one"})


class Scripted:
    """A Sync that sends `requests` listing requests, then returns or raises what it is given next."""

    def __init__(self, client: RunloopClient, steps: list[tuple[int, Snapshot | BaseException]]) -> None:
        self._client = client
        self._steps = steps
        self.deadlines: list[float | None] = []

    def run(self, deadline: float | None = None) -> Snapshot:
        self.deadlines.append(deadline)
        requests, result = self._steps.pop(0)
        for _ in range(requests):
            self._client.list_runs(limit=1)
        if isinstance(result, BaseException):
            raise result
        return result


def client_counting(sent: list[httpx.Request]) -> RunloopClient:
    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"runs": [], "has_more": False})

    return RunloopClient(
        "http://runloop.invalid",
        lambda: "k",
        transport=httpx.MockTransport(answer),
        retry=RetryPolicy(max_retries=0),
    )


def figures(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def runs_in(text: bytes, state: str) -> float:
    return figures(text)[("runloop_benchmark_runs", frozenset({("benchmark_id", "b1"), ("state", state)}))]


def value(telemetry: Telemetry, name: str, labels: dict[str, str] | None = None) -> float:
    got = telemetry.registry.get_sample_value(name, labels or {})
    assert got is not None, name
    return got


class Harness:
    def __init__(self, steps: list[tuple[int, Snapshot | BaseException]]) -> None:
        self.sent: list[httpx.Request] = []
        self.client = client_counting(self.sent)
        self.sync = Scripted(self.client, steps)
        self.telemetry = Telemetry()
        self.state = State(lambda: b"", demo=False)
        self.published: list[Outcome[Snapshot]] = []
        publisher = StatePublisher(self.state, base_url="http://runloop.invalid")

        def publish(outcome: Outcome[Snapshot]) -> None:
            self.published.append(outcome)
            publisher(outcome)

        self.publish: Callable[[Outcome[Snapshot]], None] = publish
        self.job = runs_cycle(self.sync, [self.client], self.telemetry, publish, deadline_s=DEADLINE_S)


def test_a_success_publishes_its_figures_and_counts_its_requests() -> None:
    first = snapshot_of(completed=2, failed=1, running=3)
    h = Harness([(3, first)])
    before = time.time()
    outcome = h.job()
    assert outcome.ok
    assert outcome.error is None
    assert outcome.snapshot is first
    assert outcome.requests == len(h.sent) == 3
    assert h.published == [outcome]
    assert h.state.rendered is not None
    served = h.state.rendered.text if h.state.rendered else b""
    assert (runs_in(served, "completed"), runs_in(served, "failed"), runs_in(served, "running")) == (2, 1, 3)
    t = h.telemetry
    assert value(t, "runloop_up") == 1
    assert value(t, "runloop_exporter_syncs_total", {"result": "success"}) == 1
    assert value(t, "runloop_exporter_syncs_total", {"result": "failure"}) == 0
    assert value(t, "runloop_exporter_runs") == 6
    assert value(t, "runloop_exporter_sync_duration_seconds_count") == 1
    assert before <= value(t, "runloop_exporter_last_successful_sync_timestamp_seconds") <= time.time()
    assert b"Bench one" in h.state.page


def test_a_failure_carries_its_error_and_keeps_the_last_figures() -> None:
    error = TransientError("upstream said 503")
    h = Harness([(2, snapshot_of(completed=4, failed=0, running=1)), (5, error)])
    good = h.job()
    rendered = h.state.rendered
    last_success = value(h.telemetry, "runloop_exporter_last_successful_sync_timestamp_seconds")
    failed = h.job()
    assert not failed.ok
    assert failed.error is error
    assert failed.snapshot is None
    assert failed.requests == 5
    assert len(h.sent) == 7
    assert h.published == [good, failed]
    assert h.state.rendered is rendered  # the last good figures keep being served
    served = h.state.rendered.text if h.state.rendered else b""
    assert (runs_in(served, "completed"), runs_in(served, "running")) == (4, 1)
    t = h.telemetry
    assert value(t, "runloop_up") == 0
    assert value(t, "runloop_exporter_syncs_total", {"result": "failure"}) == 1
    assert value(t, "runloop_exporter_syncs_total", {"result": "success"}) == 1
    assert value(t, "runloop_exporter_runs") == 5
    assert value(t, "runloop_exporter_last_successful_sync_timestamp_seconds") == last_success
    assert "upstream said 503" in h.state.page.decode()


def test_the_sync_gets_the_deadline_and_a_passed_deadline_is_a_failure() -> None:
    error = CancelledError("deadline passed")
    h = Harness([(1, error)])
    started = time.monotonic()
    outcome = h.job()
    ended = time.monotonic()
    [deadline] = h.sync.deadlines
    assert deadline is not None
    assert started + DEADLINE_S <= deadline <= ended + DEADLINE_S
    assert outcome.error is error
    assert not isinstance(outcome.error, ShutdownError)
    assert h.published == [outcome]
    assert h.state.rendered is None
    assert value(h.telemetry, "runloop_up") == 0
    assert value(h.telemetry, "runloop_exporter_syncs_total", {"result": "failure"}) == 1


def test_a_shutdown_is_neither_published_nor_counted() -> None:
    h = Harness([(0, ShutdownError("stopping"))])
    page = h.state.page
    outcome = h.job()
    assert isinstance(outcome.error, ShutdownError)
    assert not outcome.ok
    assert h.published == []
    assert h.state.page == page
    assert value(h.telemetry, "runloop_exporter_syncs_total", {"result": "failure"}) == 0
    assert value(h.telemetry, "runloop_exporter_sync_duration_seconds_count") == 0


@pytest.mark.parametrize("error", [ValueError("a bug"), KeyError("missing")])
def test_a_crash_is_a_failure_not_an_exception(error: Exception) -> None:
    h = Harness([(1, error)])
    outcome = h.job()
    assert outcome.error is error
    assert h.published == [outcome]
    assert value(h.telemetry, "runloop_up") == 0
    assert value(h.telemetry, "runloop_exporter_syncs_total", {"result": "failure"}) == 1
