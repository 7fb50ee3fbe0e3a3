"""Never blind (issue 18): each part publishes on its own loop, full reads go on beside it, a live job
that does not change costs less and less, and the jobs never hold the run sync back.

In-process syncs against the simulator on 127.0.0.1, costs counted at the simulator, figures against
the oracles; the exporter process where the loops themselves are the point.
"""

from __future__ import annotations

import time
from pathlib import Path

from structlog.testing import capture_logs

from exporter.metrics.agents import AgentCaps, JobsSnapshot
from exporter.metrics.aggregate import Snapshot
from exporter.metrics.telemetry import Telemetry
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.politeness import RequestGate
from exporter.simulator import DEFAULT_API_KEY, Latency, Simulator, World
from exporter.sync.jobs import JobsSync
from exporter.sync.records import InvalidRecords
from tests.integration.test_churn import end, start, world_of
from tests.integration.test_incremental import big_world
from tests.integration.test_jobs import AGENTS, T0, Clock, assert_jobs_exact, job_requests, seed
from tests.support.exporter_process import Exporter
from tests.support.samples import assert_samples, benchmark_part, job_part, sample
from tests.support.syncing import assert_exact, new_sync, truth

SCORES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def jobs_sync(url: str, clock: Clock, *, interval_s: float, cap_s: float, page_size: int) -> JobsSync:
    client = RunloopClient(
        url, lambda: DEFAULT_API_KEY, retry=RetryPolicy(max_retries=0), gate=RequestGate(4, 1000.0)
    )
    return JobsSync(
        client,
        score_buckets=SCORES,
        caps=AgentCaps(),
        admits=lambda benchmark_id: True,
        invalid=InvalidRecords(lambda reason: None, kind="benchmark job"),
        page_size=page_size,
        recheck_min_s=interval_s,
        recheck_max_s=cap_s,
        clock=clock,
    )


def stuck_world(total: int, every: int) -> tuple[World, list[str]]:
    """`total` jobs, one in `every` left live (running, its runs started) through the whole history."""
    world = World(order="newest_first", seed=18)
    stuck = []
    for i in range(total):
        live = i % every == every // 2
        jid = world.jobs.add(
            benchmark_id=f"bmd_{i % 3}",
            agents=AGENTS[:2],
            create_ms=T0 + i * 1000,
            state="running" if live else "completed",
            n_scenarios=3,
        )
        if live:
            stuck.append(jid)
    return world, stuck


def test_stuck_live_jobs_cost_at_most_three_requests_a_sync_and_an_ending_one_is_counted_within_the_cap() -> (
    None
):
    """3,000 jobs, 13% of them live and stuck across the history, 5 to a page; a 3 s interval."""
    world, stuck = stuck_world(3000, 8)
    assert len(stuck) == 375
    clock = Clock()
    with Simulator(world) as sim:
        sync = jobs_sync(sim.url, clock, interval_s=3.0, cap_s=600.0, page_size=5)
        sync.run()
        for _ in range(200):  # warm-up: every stuck job read once or twice, none changed
            clock.now += 3.0
            sync.run()
        costs = []
        for _ in range(200):  # 10 minutes at rest
            clock.now += 3.0
            sim.reset_requests()
            sync.run()
            costs.append(len(job_requests(sim)))
        assert max(costs) <= 3, costs  # the probe and at most two stuck jobs a sync
        assert sum(costs) >= 200 + 375  # and every stuck job was read within those 10 minutes
        # A stuck job that ends is counted within the cap (600 s), and the figures are exact.
        world.jobs.finish(stuck[100])
        world.jobs.finish(stuck[-1], "failed")
        for _ in range(200):
            clock.now += 3.0
            snapshot = sync.run()
        assert_jobs_exact_of(snapshot, world)


def assert_jobs_exact_of(jobs: JobsSnapshot | None, world: World) -> None:
    assert jobs is not None
    assert_jobs_exact(Snapshot((), {}, 0, jobs=jobs), world)


def test_a_job_that_changes_is_read_again_at_the_next_sync() -> None:
    world = World(order="newest_first", seed=5)
    seed(world, 40)
    live = world.jobs.add(benchmark_id="bmd_0", agents=AGENTS[:2], create_ms=T0, state="queued")
    seed(world, 40, start=100)  # the live job is 40 down, below the probe's page
    clock = Clock()
    with Simulator(world) as sim:
        sync = jobs_sync(sim.url, clock, interval_s=5.0, cap_s=600.0, page_size=10)
        sync.run()
        for _ in range(30):  # quiet: read less and less often
            clock.now += 5.0
            sync.run()
        world.jobs.start(live)  # it moves (queued -> running): read within the cap, then at every sync
        reads = []
        for _ in range(130):
            clock.now += 5.0
            sim.reset_requests()
            sync.run()
            reads.append(f"/v1/benchmark_jobs/{live}" in job_requests(sim))
        first = reads.index(True)
        assert first * 5.0 <= 600.0
        assert reads[first + 1]  # seen changing: read again at the very next sync


def test_run_metrics_are_served_while_the_jobs_backfill_reads_for_many_intervals(tmp_path: Path) -> None:
    """The jobs backfill takes over ten 1 s intervals (heavy jobs at 0.5 MB/s); the runs are served first,
    exact, and keep being published; the progress of the jobs read shows; then the jobs appear.

    Runs first: no jobs request before the runs' backfill (6 pages of 50) has been read."""
    world = World(order="newest_first", seed=7)
    for i in range(300):
        world.add_run(
            benchmark_id=f"bmd_{i % 4}", state="completed", start_ms=T0 + i, duration_ms=900, score=0.5
        )
    for i in range(40):
        world.jobs.add(benchmark_id="bmd_1", agents=AGENTS, create_ms=T0 + i, n_scenarios=300)
    with Simulator(world, latency=Latency(base_s=0.05, bytes_per_s=0.5e6)) as sim:
        exporter = Exporter(
            [],
            {
                "RUNLOOP_BASE_URL": sim.url,
                "RUNLOOP_API_KEY": DEFAULT_API_KEY,
                "RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": "1",
                "RUNLOOP_EXPORTER_JOBS_PAGE_SIZE": "4",
                "RUNLOOP_EXPORTER_PAGE_SIZE": "50",
            },
        ).start(tmp_path)
        try:
            scraped = exporter.wait_for_sync(after=0)
            exporter.wait_until(lambda: job_requests(sim), what="the first jobs request")
            paths = [r.path for r in list(sim.requests)]
            first_job = next(i for i, path in enumerate(paths) if path.startswith("/v1/benchmark_jobs"))
            assert paths[:first_job].count("/v1/benchmark_runs") >= 6  # the whole runs backfill came first

            def jobs_progress() -> float | None:
                return sample(
                    exporter.scrape(), "runloop_exporter_read_progress_ratio", part="jobs", reason="backfill"
                )

            exporter.wait_until(lambda: jobs_progress() is not None, what="the jobs backfill's progress")
            assert not job_part(exporter.scrape())  # the jobs are still being read
            ratio = jobs_progress()
            assert ratio is not None
            assert 0 <= ratio < 1
            assert exporter.get("/readyz").status_code == 200  # ready: the runs are read
            assert_samples(benchmark_part(scraped), truth(world))
            syncs = [exporter.successes()]
            while not job_part(scraped := exporter.scrape()):
                syncs.append(exporter.successes())
                time.sleep(0.5)
            assert syncs[-1] - syncs[0] >= 10  # the runs kept being published while the jobs were read
            agent_runs = job_part(scraped).items()
            runs = sum(v for (name, _), v in agent_runs if name == "runloop_agent_benchmark_runs")
            assert runs == 40 * len(AGENTS)
            assert sim.max_in_flight_by.get("/v1/benchmark_jobs", 0) == 1  # never more than one at once
        finally:
            exporter.stop()


def test_the_jobs_are_read_when_the_runs_cannot_be(tmp_path: Path) -> None:
    """Runs first, not runs only: a runs' first cycle that fails lets the jobs' first read start."""
    world = World(order="newest_first", seed=9)
    seed(world, 12)
    with Simulator(world) as sim:
        sim.faults.fail_next(100_000, status=500, path_prefix="/v1/benchmark_runs")
        exporter = Exporter(
            [],
            {
                "RUNLOOP_BASE_URL": sim.url,
                "RUNLOOP_API_KEY": DEFAULT_API_KEY,
                "RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": "1",
            },
        ).start(tmp_path)
        try:

            def jobs_read() -> float | None:
                return sample(exporter.scrape(), "runloop_exporter_jobs_syncs_total", result="success")

            exporter.wait_until(jobs_read, what="a jobs sync that succeeded")
            scraped = exporter.scrape()
            assert sample(scraped, "runloop_up") == 0  # the runs were never read: no figures are served
            assert sample(scraped, "runloop_exporter_jobs_available") == 1
            assert not benchmark_part(scraped)
        finally:
            exporter.stop()


def test_a_scheduled_reconcile_reads_beside_the_syncs_which_publish_exact_figures_throughout() -> None:
    """A reconcile of 20,000 runs takes several 2 s syncs at 150 ms a page of 500; every one of them
    publishes exact figures under churn, and the reconcile, caught up when it ends, heals drift."""
    now = [0.0]
    world, running = world_of(20_000, 40)
    with Simulator(world) as sim:
        sync, telemetry = new_sync(sim.url, page_size=500, clock=lambda: now[0], reconcile_interval_s=600)
        sync.run()  # the backfill, not under test: without latency
        sim.latency = Latency(base_s=0.15)
        finished = str(world.runs()[5000]["id"])  # drift no probe sees: an ended run changed in place
        world.update_run(finished, score=0.01, state="completed", duration_ms=10)
        now[0] = 601.0
        published = 0
        for i in range(100):
            if i < 20:  # churn while the reconcile reads
                end(world, running[i : i + 1], "failed")
                start(world, 1, i)
            snapshot = sync.run(time.monotonic() + 2.0)
            assert snapshot is not None  # never blind: every sync publishes
            published += 1
            if sync.reading is None and reads(telemetry, "scheduled") == 1:
                break
        assert published > 2, "the reconcile must outlast a few syncs for this test to mean anything"
        assert reads(telemetry, "scheduled") == 1
        assert telemetry.registry.get_sample_value("runloop_exporter_reconcile_drift_total") == 1
        assert_exact(sync.run(time.monotonic() + 2.0), world)


def test_a_reconcile_that_fails_keeps_the_sync_publishing_and_is_tried_again() -> None:
    now = [0.0]
    world, _ = big_world("newest_first", 3_000, running=5)
    with Simulator(world, latency=Latency(base_s=0.01)) as sim:
        sync, telemetry = new_sync(sim.url, page_size=500, clock=lambda: now[0], reconcile_interval_s=600)
        sync.run()
        now[0] = 601.0
        sim.faults.fail_next(1, 500, path_prefix="/v1/benchmark_runs", query={"limit": "500"})
        with capture_logs() as logs:
            for _ in range(20):
                assert_exact(sync.run(time.monotonic() + 2.0), world)
                if sync.reading is None and any(e["event"].startswith("full read failed") for e in logs):
                    break
        assert (
            telemetry.registry.get_sample_value("runloop_exporter_full_read_failures_total", {"part": "runs"})
            == 1
        )
        assert reads(telemetry, "scheduled") == 0
        for _ in range(20):  # still due: the next sync reads again, and this time it ends
            assert_exact(sync.run(time.monotonic() + 2.0), world)
            if reads(telemetry, "scheduled") == 1:
                break
        assert reads(telemetry, "scheduled") == 1


def reads(telemetry: Telemetry, reason: str) -> float | None:
    return telemetry.registry.get_sample_value("runloop_exporter_full_reads_total", {"reason": reason})
