"""Benchmark jobs against the simulator over 127.0.0.1: exact figures in any order, cost, failures kept
away from the run metrics, invalid jobs, caps, filters, and secrets that never leave the JSON."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from exporter.app import build_sync
from exporter.metrics.agents import AgentCaps
from exporter.metrics.aggregate import Snapshot
from exporter.metrics.exposition import Rendered
from exporter.metrics.filters import BenchmarkFilter
from exporter.metrics.telemetry import Telemetry
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.politeness import RequestGate
from exporter.settings import Settings
from exporter.simulator import DEFAULT_API_KEY, Order, Simulator, World
from exporter.sync.jobs import JobsSync, WithJobs
from exporter.sync.records import InvalidRecords
from tests.integration.harness import Samples, parse, run_cli
from tests.integration.syncing import assert_exact, new_sync
from tests.jobs_oracle import expected_job_samples, job_part

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
) -> tuple[WithJobs, JobsSync, Telemetry]:
    """The run sync wrapped with the jobs sync, as cli.build_sync does, with a clock of our own."""
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
        **kwargs,
    )
    telemetry.init_jobs()
    wrapped = WithJobs(
        sync,
        jobs,
        available=telemetry.set_jobs_available,
        count_folded=telemetry.count_folded,
        retry_s=3600.0,
        **kwargs,
    )
    return wrapped, jobs, telemetry


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


def test_a_steady_sync_costs_one_request_and_each_live_job_one_more() -> None:
    world = World(order="newest_first", seed=1)
    ended = seed(world, 40)
    with Simulator(world) as sim:
        sync, _, _ = build(sim.url, page_size=10)
        sync.run()
        sim.reset_requests()
        sync.run()
        assert job_requests(sim) == ["/v1/benchmark_jobs"]
        live = world.jobs.add(benchmark_id="bmd_0", agents=AGENTS, create_ms=T0 + 10**6, state="running")
        older_live = world.jobs.add(benchmark_id="bmd_0", agents=AGENTS, create_ms=T0 + 10**6, state="queued")
        sync.run()  # learns the two new jobs
        sim.reset_requests()
        sync.run()  # steady, two live jobs: the probe shows the first, the other is looked up
        # newest first: the queued job is listed first and comes with the probe; the other is looked up
        assert sorted(job_requests(sim)) == ["/v1/benchmark_jobs", f"/v1/benchmark_jobs/{live}"]
        world.jobs.finish(live)
        world.jobs.finish(older_live, "cancelled")
        sync.run()
        sim.reset_requests()
        for _ in range(3):
            sync.run()
        paths = job_requests(sim)
        assert paths == ["/v1/benchmark_jobs"] * 3  # ended jobs are never read again
        assert not any(p.endswith(tuple(ended)) for p in paths)
        assert_jobs_exact(sync.run(), world)


def test_new_jobs_are_found_without_reading_history_again() -> None:
    world = World(order="newest_first", seed=1)
    seed(world, 200)
    with Simulator(world) as sim:
        sync, _, _ = build(sim.url, page_size=50)
        sync.run()
        sim.reset_requests()
        seed(world, 3, start=300)
        assert_jobs_exact(sync.run(), world)
        assert len(job_requests(sim)) <= 2  # the probe and one page above the old head


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
        assert_exact(second, world)
        assert telemetry.registry.get_sample_value("runloop_exporter_jobs_available") == 0
        told = [e for e in logs if "cannot be read with this key" in e["event"]]
        assert len(told) == 1
        assert told[0]["status"] == status
        assert len(job_requests(sim)) == 1  # not asked again before the reconcile interval
        sim.jobs_status = None
        clock.now += 3601
        assert_jobs_exact(sync.run(), world)
        assert telemetry.registry.get_sample_value("runloop_exporter_jobs_available") == 1


def test_a_failing_jobs_endpoint_keeps_the_last_jobs_figures_and_the_runs() -> None:
    world = World(seed=2)
    seed(world, 5)
    with Simulator(world) as sim:
        sync, _, telemetry = build(sim.url)
        good = sync.run()
        sim.faults.fail_next(3, status=503, path_prefix="/v1/benchmark_jobs")
        after = sync.run()
        assert after.jobs == good.jobs
        assert telemetry.registry.get_sample_value("runloop_exporter_jobs_available") == 0
        assert_exact(after, world)


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
    assert len(skipped) == 3
    assert "SECRET" not in repr(logs)
    valid = [v for v in world.jobs.views() if isinstance(v, dict) and v.get("name") != "SECRET-NAME"]
    actual, expected = shown(snapshot), expected_job_samples(valid)
    assert actual == pytest.approx(expected)


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
    snapshot = build_sync(settings, client, Telemetry()).run()
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
