"""Servers that stray from the happy path: the figures must stay those of a full read."""

from __future__ import annotations

import time

import pytest
from structlog.testing import capture_logs

from exporter.metrics.telemetry import Telemetry
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.errors import CancelledError, RunloopError
from exporter.simulator import DEFAULT_API_KEY, Order, Simulator, World
from exporter.sync import BenchmarkNames, CombinedSync, IncrementalSync, InvalidRecords, SyncConfig
from tests.support.syncing import assert_exact, figures, full_figures, new_sync

T0 = 1_750_000_000_000


def seeded(order: Order, n: int = 300) -> World:
    world = World(order=order, seed=n)
    world.add_benchmark("bmd_a", "A")
    world.add_benchmark("bmd_b", "B")
    world.add_many_finished(n, ["bmd_a", "bmd_b"], start_ms=T0)
    return world


def churn(world: World, step: int) -> None:
    run_id = world.add_run(benchmark_id="bmd_a", state="running", start_ms=T0 + step)
    world.add_run(benchmark_id="bmd_b", state="failed", start_ms=T0 + step, duration_ms=1000 + step)
    if step % 2:
        world.finish_run(run_id, "completed", duration_ms=60_000, score=0.5)


def full_reads(telemetry: Telemetry, reason: str) -> float:
    return telemetry.registry.get_sample_value("runloop_exporter_full_reads_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize("order", ["newest_first", "oldest_first", "shuffled"])
@pytest.mark.parametrize("mode", ["null", "page"])
def test_without_a_trustworthy_total_count_every_sync_is_a_full_read(order: Order, mode: str) -> None:
    world = seeded(order)
    with Simulator(world) as sim:
        sim.faults.total_count = mode  # type: ignore[assignment]
        sync, telemetry = new_sync(sim.url, page_size=50)
        with capture_logs() as logs:
            for step in range(4):
                churn(world, step)
                assert_exact(sync.run(), world)
        assert full_reads(telemetry, "probe_mismatch") == 3
        warnings = [e for e in logs if e["event"].startswith("total_count is missing")]
        assert len(warnings) == 1


@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
def test_entries_without_an_id_at_either_end_cost_nothing_in_steady_state(order: Order) -> None:
    world = World(order=order, seed=1)
    world.add_raw_run({"id": None, "state": "completed", "start_time_ms": T0, "metadata": {}})
    world.add_many_finished(200, ["bmd_a"], start_ms=T0)
    world.add_raw_run({"id": None, "state": "failed", "start_time_ms": T0, "metadata": {}})
    with Simulator(world) as sim:
        sync, telemetry = new_sync(sim.url, page_size=50)
        sync.run()
        for _ in range(3):
            sim.reset_requests()
            sync.run()
            assert len(sim.requests) <= 3
        for step in range(3):
            churn(world, step)
            assert_exact(sync.run(), world)
        assert full_reads(telemetry, "probe_mismatch") == 0


@pytest.mark.parametrize("order", ["newest_first", "oldest_first", "shuffled"])
def test_a_state_new_to_us_is_followed_until_it_ends(order: Order) -> None:
    world = seeded(order, 100)
    with Simulator(world) as sim:
        queued = world.add_run(benchmark_id="bmd_a", state="queued", start_ms=T0)
        sync, _ = new_sync(sim.url, page_size=40)
        (group,) = [g for g in sync.run().groups if g.key.benchmark_id == "bmd_a"]
        assert group.counts["queued"] == 1
        sim.reset_requests()
        sync.run()
        assert len(sim.requests) == 4  # the usual three, and the runs listed as queued
        world.update_run(queued, state="running")
        assert_exact(sync.run(), world)
        world.update_run(queued, state="scoring")
        assert_exact(sync.run(), world)
        world.finish_run(queued, "canceled", duration_ms=5_000)
        assert_exact(sync.run(), world)
        sim.reset_requests()
        sync.run()
        assert len(sim.requests) == 3  # nothing in a new state is held any more


def per_benchmark(client: RunloopClient, names: BenchmarkNames) -> CombinedSync:
    """One listing per benchmark, as RUNLOOP_EXPORTER_INCLUDE_BENCHMARK_IDS sets it up."""
    listings = [
        IncrementalSync(
            client,
            SyncConfig(page_size=30),
            names=names,
            invalid=InvalidRecords(lambda reason: None),
            telemetry=Telemetry(),
            benchmark_id=bid,
        )
        for bid in ("bmd_a", "bmd_b")
    ]
    return CombinedSync(listings, names, Telemetry())


def test_a_server_that_ignores_the_benchmark_filter_does_not_double_count() -> None:
    world = seeded("newest_first", 100)
    world.add_run(benchmark_id="bmd_a", state="running", start_ms=T0)
    with Simulator(world) as sim:
        client = RunloopClient(sim.url, lambda: DEFAULT_API_KEY)
        names = BenchmarkNames(client)
        honest = figures(per_benchmark(client, names).run())
        sim.faults.ignore_benchmark_filter = True
        assert figures(per_benchmark(client, names).run()) == honest == full_figures(sim.url)


def test_a_listing_empty_at_backfill_learns_its_tail() -> None:
    world = World(order="oldest_first", seed=3)
    with Simulator(world) as sim:
        sync, telemetry = new_sync(sim.url, page_size=10)
        sync.run()
        for step in range(4):
            churn(world, step)
            assert_exact(sync.run(), world)
        assert sync.ledger is not None
        assert sync.ledger.tail is not None
        assert full_reads(telemetry, "probe_mismatch") == 0


def test_a_stalled_api_stops_a_backfill_at_the_sync_deadline_not_the_full_read_timeout() -> None:
    world = seeded("newest_first", 50)
    with Simulator(world) as sim:
        sim.faults.delay_seconds = 5.0
        client = RunloopClient(sim.url, lambda: DEFAULT_API_KEY, retry=RetryPolicy(max_retries=5))
        sync = IncrementalSync(
            client,
            SyncConfig(page_size=10, full_read_timeout_s=1800, page_floor_s=1.0),
            names=BenchmarkNames(client),
            invalid=InvalidRecords(lambda reason: None),
            telemetry=Telemetry(),
        )
        # The backfill goes on beside the syncs (each returns None meanwhile), but each of its pages has
        # one sync's time: the stalled first page fails it, and the next sync raises its error.
        assert sync.run(time.monotonic() + 1.0) is None
        with pytest.raises(RunloopError) as info:  # noqa: PT012 - a few syncs until the read has failed
            for _ in range(5):
                assert sync.run(time.monotonic() + 1.0) is None
        assert isinstance(info.value, CancelledError) or "timed out" in str(info.value)
        # One request for the first page: no retry can fit in a page's time.
        assert [r.path for r in sim.requests if r.path == "/v1/benchmark_runs"] == ["/v1/benchmark_runs"]
