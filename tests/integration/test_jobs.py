"""Benchmark jobs against the simulator over 127.0.0.1: exact figures in any order, cost, failures kept
away from the run metrics, invalid jobs, caps, filters, and secrets that never leave the JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from exporter.app import build_runs, jobs_cycle, runs_cycle
from exporter.http.state import State
from exporter.metrics.agents import AgentCaps
from exporter.metrics.aggregate import Snapshot
from exporter.metrics.exposition import Rendered
from exporter.metrics.filters import BenchmarkFilter
from exporter.metrics.telemetry import Telemetry
from exporter.publisher import StatePublisher
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.politeness import RequestGate
from exporter.settings import Settings
from exporter.simulator import DEFAULT_API_KEY, Latency, Order, Simulator, World
from exporter.sync import IncrementalSync
from exporter.sync.jobs import JobsSync
from exporter.sync.jobspart import JobsPart
from exporter.sync.records import InvalidRecords
from tests.support.exporter_process import run_cli
from tests.support.jobs_oracle import expected_job_samples
from tests.support.samples import Samples, job_part, parse
from tests.support.syncing import assert_exact, new_sync

T0 = 1_760_000_000_000
AGENTS = [("claude-code", "claude-opus-4"), ("openhands", "gpt-5"), ("aider", None)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def build(
    url: str,
    *,
    clock: Clock | None = None,
    caps: AgentCaps | None = None,
    admits: Callable[[str | None], bool] = lambda bid: True,
    page_size: int = 100,
    full_reads: list[str] | None = None,
) -> tuple[Both, JobsSync, Telemetry]:
    """The run sync wrapped with the jobs sync, as app.build does, with a clock of our own."""
    sync, telemetry = new_sync(url)
    client = RunloopClient(
        url, lambda: DEFAULT_API_KEY, retry=RetryPolicy(max_retries=0), gate=RequestGate(4, 1000.0)
    )
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
    jobs = JobsSync(
        client,
        score_buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
        caps=caps or AgentCaps(),
        admits=admits,
        invalid=InvalidRecords(
            lambda reason: telemetry.invalid_records.labels(reason).inc(), kind="benchmark job"
        ),
        page_size=page_size,
        reconcile_interval_s=3600.0,
        on_full_read=None if full_reads is None else full_reads.append,
        **kwargs,
    )
    telemetry.init_jobs()
    part = JobsPart(jobs, count_folded=telemetry.count_folded, retry_s=3600.0, **kwargs)
    return Both(sync, part, client, telemetry), jobs, telemetry


class Both:
    """Both parts' cycles, one after the other and without deadlines, published by the real
    app.StatePublisher: `run()` returns what /metrics serves, as one snapshot."""

    def __init__(self, runs: IncrementalSync, jobs: JobsPart, client: RunloopClient, t: Telemetry) -> None:
        self.publisher = StatePublisher(State(lambda: b""))
        self._runs = runs_cycle(runs, [client], t, self.publisher, deadline_s=None)
        self._jobs = jobs_cycle(jobs, [client], t, self.publisher, deadline_s=None)

    def run(self) -> Snapshot:
        self._runs()
        self._jobs()
        served = self.publisher.served
        assert served is not None
        return served


def shown(snapshot: Snapshot) -> Samples:
    return job_part(parse(Rendered.of(snapshot).body(b"", gzip=False).decode()))


def assert_jobs_exact(
    snapshot: Snapshot, world: World, admits: Callable[[str | None], bool] = lambda b: True
) -> None:
    actual, expected = shown(snapshot), expected_job_samples(world.jobs.views(), admits=admits)
    assert set(actual) == set(expected), {
        "missing": sorted(map(str, set(expected) - set(actual)))[:5],
        "extra": sorted(map(str, set(actual) - set(expected)))[:5],
    }
    wrong = {k: (v, actual[k]) for k, v in expected.items() if actual[k] != pytest.approx(v)}
    assert not wrong, list(wrong.items())[:5]


def job_requests(simulator: Simulator) -> list[str]:
    return [r.path for r in simulator.requests if r.path.startswith("/v1/benchmark_jobs")]


def seed(world: World, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        state = ("completed", "failed", "timeout", "cancelled", "completed")[i % 5]
        ids.append(
            world.jobs.add(
                benchmark_id=f"bmd_{i % 3}",
                agents=AGENTS[: 1 + i % 3],
                levels=[0.3, 0.6, 0.8][: 1 + i % 3],
                create_ms=T0 + (i // 2) * 1000,  # pairs share a millisecond: the tie rule decides
                state=state,
                n_scenarios=6,
            )
        )
    return ids


@pytest.mark.parametrize("order", ["newest_first", "oldest_first", "shuffled"])
def test_jobs_are_exact_through_churn_in_every_order(order: Order) -> None:
    world = World(order=order, seed=3)
    seed(world, 30)
    clock = Clock()
    with Simulator(world) as sim:
        sync, jobs, telemetry = build(sim.url, clock=clock, page_size=7)
        snapshot = sync.run()
        assert_jobs_exact(snapshot, world)
        assert_exact(snapshot, world)  # the runs of jobs are runs of the listing, counted there too
        live = world.jobs.add(
            benchmark_id="bmd_1", agents=AGENTS, create_ms=T0 + 99_000, state="running", started=2
        )
        queued = world.jobs.add(
            benchmark_id="bmd_2", agents=AGENTS[:2], create_ms=T0 + 99_500, state="queued"
        )
        assert_jobs_exact(sync.run(), world)
        world.jobs.start(queued)
        seed(world, 4, start=100)
        assert_jobs_exact(sync.run(), world)
        world.jobs.finish(live, "completed")
        world.jobs.finish(queued, "timeout")
        snapshot = sync.run()
        assert_jobs_exact(snapshot, world)
        assert jobs.ledger is not None
        assert not jobs.ledger.live
        # A job that ended long ago is deleted while another appears: no probe can see that; the
        # reconcile does, and the deleted job takes its figures with it.
        world.jobs.delete(world.jobs.views()[-1]["id"])
        seed(world, 1, start=200)
        sync.run()
        clock.now += 3601
        assert_jobs_exact(sync.run(), world)
    assert telemetry.registry.get_sample_value("runloop_exporter_jobs_available") == 1


def job_requests_with_query(simulator: Simulator) -> list[tuple[str, dict[str, str]]]:
    return [(r.path, r.query) for r in simulator.requests if r.path.startswith("/v1/benchmark_jobs")]


def add_live(world: World, n: int, start_ms: int) -> list[str]:
    """n live jobs (running with started runs, queued, initializing), newest last."""
    states = ("running", "queued", "initializing", "running")
    return [
        world.jobs.add(
            benchmark_id=f"bmd_{i % 3}",
            agents=AGENTS[: 1 + i % 3],
            create_ms=start_ms + i,
            state=states[i % 4],
            started=1 if i % 8 == 0 else None,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("n_live", [0, 1, 10, 50])
def test_a_steady_sync_costs_one_request_whatever_the_live_jobs_at_the_top(n_live: int) -> None:
    world = World(order="newest_first", seed=1)
    ended = seed(world, 120)
    live = add_live(world, n_live, T0 + 10**6)
    full_reads: list[str] = []
    with Simulator(world, latency=Latency.realistic()) as sim:
        sync, _, _ = build(sim.url, full_reads=full_reads)
        sync.run()
        for _ in range(2):
            sim.reset_requests()
            assert_jobs_exact(sync.run(), world)
            # One page from the top down to the deepest live job: the probe and every live job in one.
            assert job_requests(sim) == ["/v1/benchmark_jobs"]
            (_, query), *_ = job_requests_with_query(sim)
            assert int(query["limit"]) == max(n_live, 1)
            assert "starting_after" not in query
        # Live jobs change and end: still one request, still exact.
        for i, job_id in enumerate(live[::2]):
            if i % 2:
                world.jobs.finish(job_id, "failed")
            else:
                world.jobs.start(job_id)
        sim.reset_requests()
        assert_jobs_exact(sync.run(), world)
        assert job_requests(sim) == ["/v1/benchmark_jobs"]
        paths = [p for p, _ in job_requests_with_query(sim)]
        assert not any(p.endswith(tuple(ended)) for p in paths)  # ended jobs are never read again
    assert full_reads == ["backfill"]


def test_new_jobs_and_live_jobs_below_them_cost_at_most_two_requests() -> None:
    world = World(order="newest_first", seed=1)
    seed(world, 150)
    live = add_live(world, 10, T0 + 10**6)
    full_reads: list[str] = []
    with Simulator(world, latency=Latency.realistic()) as sim:
        sync, _, _ = build(sim.url, full_reads=full_reads)
        sync.run()
        sync.run()
        world.jobs.finish(live[-1])
        seed(world, 5, start=1000)  # five new ended jobs above the ten live ones
        sim.reset_requests()
        assert_jobs_exact(sync.run(), world)
        requests = job_requests_with_query(sim)
        assert len(requests) <= 2
        assert [p for p, _ in requests] == ["/v1/benchmark_jobs"] * len(requests)  # no lookup by id
        # Read no deeper than the deepest live job: history below it is not read again.
        assert sum(int(q["limit"]) for _, q in requests) <= 5 + 10
        sim.reset_requests()
        assert_jobs_exact(sync.run(), world)
        assert job_requests(sim) == ["/v1/benchmark_jobs"]  # steady again: one request
    assert full_reads == ["backfill"]


def test_a_live_job_far_down_is_looked_up_and_many_are_read_on_in_pages() -> None:
    world = World(order="newest_first", seed=1)
    seed(world, 20)
    deep = add_live(world, 1, T0 + 10**5)
    seed(world, 150, start=100)  # the live job now sits 150 jobs down, deeper than a page of 40
    full_reads: list[str] = []
    with Simulator(world, latency=Latency.realistic()) as sim:
        sync, _, _ = build(sim.url, page_size=40, full_reads=full_reads)
        sync.run()
        sim.reset_requests()
        assert_jobs_exact(sync.run(), world)
        # One live job: one lookup is cheaper than the four pages down to it.
        assert job_requests(sim) == ["/v1/benchmark_jobs", f"/v1/benchmark_jobs/{deep[0]}"]
        more = add_live(world, 6, T0 + 10**5 + 10)
        seed(world, 50, start=400)  # six more live jobs, 50 jobs down
        sync.run()
        sim.reset_requests()
        assert_jobs_exact(sync.run(), world)
        # Six live jobs some 50 down: two pages (the probe and one more) beat six lookups; the one
        # deepest down is still looked up.
        paths = job_requests(sim)
        assert paths.count("/v1/benchmark_jobs") == 2
        assert sorted(p for p in paths if p != "/v1/benchmark_jobs") == [f"/v1/benchmark_jobs/{deep[0]}"]
        assert not any(p.endswith(tuple(more)) for p in paths)
    assert full_reads == ["backfill"]


@pytest.mark.parametrize("order", ["oldest_first", "shuffled"])
def test_other_orders_cost_a_bounded_number_of_requests_and_stay_exact(order: Order) -> None:
    world = World(order=order, seed=4)
    seed(world, 60)
    live = add_live(world, 8, T0 + 10**6)
    full_reads: list[str] = []
    with Simulator(world, latency=Latency.realistic()) as sim:
        sync, _, _ = build(sim.url, page_size=25, full_reads=full_reads)
        sync.run()
        for _ in range(2):
            sim.reset_requests()
            assert_jobs_exact(sync.run(), world)
            # The probe, then the cheaper of pages down to the live jobs and one lookup per live job.
            assert 1 <= len(job_requests(sim)) <= 1 + len(live)
        world.jobs.finish(live[0])
        world.jobs.start(live[1])
        sim.reset_requests()
        assert_jobs_exact(sync.run(), world)
        assert len(job_requests(sim)) <= 1 + len(live)
    assert full_reads == ["backfill"]


@pytest.mark.parametrize("status", [403, 404])
def test_a_key_without_jobs_keeps_every_run_metric(status: int) -> None:
    world = World(seed=2)
    world.add_run(benchmark_id="bmd_x", state="completed", start_ms=T0, duration_ms=5000, score=0.5)
    seed(world, 3)
    clock = Clock()
    with Simulator(world) as sim:
        sim.jobs_status = status
        sync, _, telemetry = build(sim.url, clock=clock)
        with capture_logs() as logs:
            first = sync.run()
            second = sync.run()
        assert first.jobs is None
        assert second.jobs is None
        for snapshot in (first, second):  # the status page's one line on why, also when not asked again
            assert snapshot.jobs_note is not None
            assert f"cannot be read with this key (HTTP {status})" in snapshot.jobs_note
        assert_exact(second, world)
        assert telemetry.registry.get_sample_value("runloop_exporter_jobs_available") == 0
        told = [e for e in logs if "cannot be read with this key" in e["event"]]
        assert len(told) == 1
        assert told[0]["status"] == status
        assert len(job_requests(sim)) == 1  # not asked again before the reconcile interval
        sim.jobs_status = None
        clock.now += 3601
        with capture_logs() as logs:
            healed = sync.run()
        assert_jobs_exact(healed, world)
        assert healed.jobs_note is None
        assert telemetry.registry.get_sample_value("runloop_exporter_jobs_available") == 1
        assert [e["event"] for e in logs if "can be read again" in e["event"]] == [
            "benchmark jobs can be read again"
        ]


def test_a_failing_jobs_endpoint_keeps_the_last_jobs_figures_and_the_runs() -> None:
    world = World(seed=2)
    seed(world, 5)
    with Simulator(world) as sim:
        sync, _, telemetry = build(sim.url)
        good = sync.run()
        sim.faults.fail_next(1, status=503, path_prefix="/v1/benchmark_jobs")  # no retries here
        with capture_logs() as logs:
            after = sync.run()
        assert after.jobs == good.jobs
        assert good.jobs_note is None
        assert (
            after.jobs_note
            == "The last benchmark jobs sync failed: these are the figures of the last good one."
        )
        assert telemetry.registry.get_sample_value("runloop_exporter_jobs_available") == 0
        assert_exact(after, world)
        failed = [e for e in logs if e["event"] == "benchmark jobs sync failed; keeping the last figures"]
        assert len(failed) == 1
        assert failed[0]["error_type"] == "TransientError"
        # Tried again at the very next sync (not at the reconcile interval), and it heals.
        seed(world, 2, start=50)
        sim.reset_requests()
        healed = sync.run()
        assert_jobs_exact(healed, world)
        assert healed.jobs_note is None
        assert job_requests(sim)
        assert telemetry.registry.get_sample_value("runloop_exporter_jobs_available") == 1


def test_jobs_failing_from_the_start_are_absent_and_say_why() -> None:
    world = World(seed=2)
    seed(world, 3)
    with Simulator(world) as sim:
        sync, _, _ = build(sim.url)
        sim.faults.fail_next(1, status=503, path_prefix="/v1/benchmark_jobs")
        first = sync.run()
        assert first.jobs is None
        assert first.jobs_note == "The benchmark jobs sync failed and none has succeeded yet (see the logs)."
        assert_exact(first, world)
        assert sync.run().jobs_note is None


def test_a_bug_in_the_jobs_part_keeps_the_last_jobs_figures_and_the_runs() -> None:
    world = World(seed=2)
    seed(world, 5)
    broken = {"now": False}

    def admits(benchmark_id: str | None) -> bool:
        if broken["now"]:
            raise RuntimeError("a bug in a filter")
        return True

    with Simulator(world) as sim:
        sync, _, telemetry = build(sim.url, admits=admits)
        good = sync.run()
        seed(world, 2, start=50)  # new jobs, so the sync files (and admits) some
        broken["now"] = True
        with capture_logs() as logs:
            after = sync.run()
        assert after.jobs == good.jobs
        assert after.jobs_note is not None
        assert "last good one" in after.jobs_note
        assert_exact(after, world)  # the run metrics are those of now
        assert telemetry.registry.get_sample_value("runloop_exporter_jobs_available") == 0
        assert [e["event"] for e in logs if "crashed" in e["event"]] == [
            "benchmark jobs sync crashed; keeping the last figures"
        ]
        broken["now"] = False
        assert_jobs_exact(sync.run(), world)
        assert telemetry.registry.get_sample_value("runloop_exporter_jobs_available") == 1


def test_invalid_jobs_are_counted_and_logged_once_without_their_data() -> None:
    world = World(seed=2)
    seed(world, 4)
    world.jobs.add_raw({"id": "bmj_bad", "state": "Completed!", "create_time_ms": T0, "name": "SECRET-NAME"})
    world.jobs.add_raw(
        {
            "id": "bmj_bad2",
            "state": "completed",
            "create_time_ms": T0,
            "name": "SECRET-NAME",
            "benchmark_outcomes": [{"agent_name": "a", "n_completed": -1, "n_failed": 0, "n_timeout": 0}],
        }
    )
    world.jobs.add_raw("not a job")
    twice = seed(world, 1, start=10)[0]
    world.jobs.add_raw(json.loads(world.jobs.get(twice) or b""))  # listed twice: once is a duplicate
    with Simulator(world) as sim:
        sync, _, telemetry = build(sim.url)
        with capture_logs() as logs:
            sync.run()
            sync.run()
            snapshot = sync.run()
    value = telemetry.registry.get_sample_value
    assert value("runloop_exporter_invalid_records_total", {"reason": "job_invalid_state"}) == 1
    assert value("runloop_exporter_invalid_records_total", {"reason": "job_invalid_outcome"}) == 1
    assert value("runloop_exporter_invalid_records_total", {"reason": "job_not_an_object"}) == 1
    skipped = [e for e in logs if e["event"] == "skipped an invalid benchmark job record"]
    assert len(skipped) == 4
    assert "SECRET" not in repr(logs)
    assert value("runloop_exporter_invalid_records_total", {"reason": "job_duplicate_id"}) == 1
    valid = [v for v in world.jobs.views() if isinstance(v, dict) and v.get("name") != "SECRET-NAME"]
    valid = list({v["id"]: v for v in valid}.values())  # the job listed twice counts once
    actual, expected = shown(snapshot), expected_job_samples(valid)
    assert actual == pytest.approx(expected)


def test_jobs_of_shapes_new_to_a_typed_decoder_are_decided_as_before_each_alone() -> None:
    """A number where a string was, a null, a huge integer, NaN: that job alone is invalid, counted and
    logged once; an extra field is ignored and a duplicated key keeps its last value (exporter/runloop/
    decode.py); every other job is counted. Invalid UTF-8 is no JSON: the page is refused, as before."""
    world = World(seed=5)
    good = seed(world, 4)
    view = json.loads(world.jobs.get(good[0]) or b"")

    def job(job_id: str, **changes: Any) -> dict[str, Any]:
        return {**view, "id": job_id, "name": "SECRET-NAME", **changes}

    outcome = {**view["benchmark_outcomes"][0], "average_score": None}
    valid = [json.loads(world.jobs.get(jid) or b"") for jid in good]
    for record, reason in [
        (job("bmj_number", state=5), "job_invalid_state"),
        (job("bmj_null_time", create_time_ms=None), "job_invalid_create_time"),
        (job("bmj_huge_time", create_time_ms=10**400), "job_invalid_create_time"),
        (job("bmj_null_score", benchmark_outcomes=[outcome]), None),
        (job("bmj_extra", in_the_future={"deep": [1, None]}), None),
    ]:
        world.jobs.add_raw(record)
        if reason is None:
            valid.append(record)
    twice = job("bmj_twice", state="running")
    world.jobs.add_raw(json.dumps(twice).encode()[:-1] + b', "state": "failed"}', job_id="bmj_twice")
    valid.append({**twice, "state": "failed"})
    nan = b'{"id": "bmj_nan", "state": "completed", "create_time_ms": 1, "name": "SECRET-NAME", '
    world.jobs.add_raw(
        nan + b'"benchmark_outcomes": [{"agent_name": "a", "average_score": NaN}]}', job_id="bmj_nan"
    )
    with Simulator(world) as sim:
        sync, _, telemetry = build(sim.url)
        with capture_logs() as logs:
            sync.run()
            sync.run()
            snapshot = sync.run()
        value = telemetry.registry.get_sample_value
        reasons = {"job_invalid_state": 1, "job_invalid_create_time": 2, "job_invalid_outcome": 1}
        for reason, count in reasons.items():
            assert value("runloop_exporter_invalid_records_total", {"reason": reason}) == count, reason
        skipped = [e for e in logs if e["event"] == "skipped an invalid benchmark job record"]
        assert sorted(e["job_id"] for e in skipped) == [
            "bmj_huge_time",
            "bmj_nan",
            "bmj_null_time",
            "bmj_number",
        ]
        assert "SECRET" not in repr(logs)
        actual, expected = shown(snapshot), expected_job_samples(valid)
        assert actual == pytest.approx(expected)

        world.jobs.add_raw(
            json.dumps(job("bmj_latin1")).encode().replace(b"SECRET-NAME", b"caf\xe9"), job_id="x"
        )
        with capture_logs() as logs:
            after = sync.run()
        assert after.jobs == snapshot.jobs  # the last figures kept
        assert value("runloop_exporter_jobs_available") == 0
        failed = [e for e in logs if e["event"] == "benchmark jobs sync failed; keeping the last figures"]
        assert [e["error_type"] for e in failed] == ["BadResponseError"]


def test_caps_fold_pairs_and_exception_types_into_other_and_count_them() -> None:
    world = World(seed=2)
    for i in range(6):
        world.jobs.add(
            benchmark_id="bmd_cap",
            agents=[(f"agent-{i}", f"model-{i}")],
            create_ms=T0 + i,
            n_scenarios=30,
        )
    with Simulator(world) as sim:
        sync, _, telemetry = build(sim.url, caps=AgentCaps(max_pairs=2, max_types=2))
        samples = shown(sync.run())
        sync.run()
    runs = {dict(k[1])["agent_name"]: v for k, v in samples.items() if k[0] == "runloop_agent_benchmark_runs"}
    assert len(runs) == 3
    assert runs["__other__"] == 4
    assert sum(runs.values()) == 6
    kinds = {dict(k[1])["exception_type"] for k in samples if k[0] == "runloop_agent_scenario_failures"}
    assert "__other__" in kinds
    assert len(kinds - {"__other__"}) == 2
    folded = telemetry.registry.get_sample_value
    assert folded("runloop_exporter_label_values_folded_total", {"label": "agent_name"}) == 4
    other_failures = sum(
        v
        for k, v in samples.items()
        if k[0] == "runloop_agent_scenario_failures" and ("exception_type", "__other__") in k[1]
    )
    assert folded("runloop_exporter_label_values_folded_total", {"label": "exception_type"}) == other_failures
    # The totals are kept whatever the cap: every outcome and every failure is still counted.
    expected = expected_job_samples(world.jobs.views())
    total = sum(v for k, v in expected.items() if k[0] == "runloop_agent_scenario_failures")
    assert sum(v for k, v in samples.items() if k[0] == "runloop_agent_scenario_failures") == total


def test_benchmark_filters_apply_to_jobs() -> None:
    world = World(seed=2)
    seed(world, 12)
    world.jobs.add(benchmark_id=None, agents=AGENTS, create_ms=T0)  # a job over a list of scenarios
    keep = BenchmarkFilter(include_ids=frozenset({"bmd_1"}))

    def admits(bid: str | None) -> bool:
        return keep.admits(bid, lambda _: None)

    with Simulator(world) as sim:
        sync, _, _ = build(sim.url, admits=admits)
        snapshot = sync.run()
    assert_jobs_exact(snapshot, world, admits)
    assert {dict(k[1]).get("benchmark_id") for k in shown(snapshot) if k[0] != "runloop_benchmark_jobs"} == {
        "bmd_1"
    }


SECRETS = {
    "env": "PLANTED-ENV-7f3a",
    "secret": "PLANTED-SECRET-9c1d",
    "kwarg": "PLANTED-KWARG-2b8e",
    "yaml": "PLANTED-YAML-5e6f",
    "message": "PLANTED-MESSAGE-0a4c",
}


def test_planted_secrets_reach_neither_metrics_nor_logs(simulator: Simulator, world: World) -> None:
    for i, state in enumerate(["completed", "failed", "running"]):
        world.jobs.add(
            benchmark_id="bmd_s" if i else None,
            agents=AGENTS,
            create_ms=T0 + i,
            state=state,
            n_scenarios=40,
            name="PLANTED-JOBNAME-1d2e",
            secrets=SECRETS,
        )
    world.jobs.add_raw({"id": "bmj_x", "state": "BAD", "create_time_ms": 1, "name": "PLANTED-JOBNAME-1d2e"})
    served = b"".join(world.jobs.get(v["id"]) or b"" for v in world.jobs.views() if v.get("id") != "bmj_x")
    assert all(s.encode() in served for s in SECRETS.values())  # the simulator does serve them
    env = {
        "RUNLOOP_BASE_URL": simulator.url,
        "RUNLOOP_API_KEY": DEFAULT_API_KEY,
        "RUNLOOP_EXPORTER_LOG_LEVEL": "debug",
    }
    result = run_cli(["--once"], env)
    assert result.returncode == 0, result.stderr
    assert "runloop_agent_benchmark_runs{" in result.stdout
    leaked = re.findall(r"PLANTED-[A-Z]+", result.stdout + result.stderr)
    assert not leaked
    assert "scenario-" not in result.stdout + result.stderr  # scenario names


def test_jobs_can_be_turned_off(simulator: Simulator, world: World) -> None:
    seed(world, 3)
    settings = Settings(base_url=simulator.url, jobs=False, api_key=SecretStr(DEFAULT_API_KEY))
    client = RunloopClient(simulator.url, lambda: DEFAULT_API_KEY)
    snapshot = build_runs(settings, client, Telemetry())[0].run()
    assert snapshot.jobs is None
    assert job_requests(simulator) == []


def test_check_says_how_many_jobs_or_that_the_key_cannot_read_them(
    simulator: Simulator, world: World
) -> None:
    seed(world, 4)
    env = {"RUNLOOP_BASE_URL": simulator.url, "RUNLOOP_API_KEY": DEFAULT_API_KEY}
    result = run_cli(["check"], env)
    assert result.returncode == 0, result.stderr
    assert "benchmark jobs: 4" in result.stdout.splitlines()
    simulator.jobs_status = 403
    result = run_cli(["check"], env)
    assert result.returncode == 0, result.stderr
    assert "benchmark jobs: not readable with this key (403); run metrics are unaffected" in result.stdout
    result = run_cli(["check"], {**env, "RUNLOOP_EXPORTER_JOBS": "false"})
    assert "benchmark jobs: off (RUNLOOP_EXPORTER_JOBS=false)" in result.stdout
