"""Benchmark names: in the first snapshot, however long the backfill, for one listing page per 5,000
benchmarks plus one lookup per archived benchmark, at real latency."""

from __future__ import annotations

import time

from exporter.simulator import Latency, Simulator, World
from tests.support.syncing import assert_exact, new_sync

T0 = 1_750_000_000_000
LISTING = "/v1/benchmarks"


def thousand_benchmarks(archived: int = 50, runs: int = 30_000) -> World:
    world = World(order="newest_first", seed=13)
    ids = [f"bmd_{i:04d}" for i in range(1000)]
    for i, bid in enumerate(ids):
        world.add_benchmark(bid, f'eval "{i}" \\ name', "archived" if i < archived else "active")
    world.add_many_finished(runs, ids, start_ms=T0)
    return world


def benchmark_requests(paths: list[str]) -> tuple[int, int]:
    """(listing pages, lookups by id) among the requests."""
    return paths.count(LISTING), sum(p.startswith(LISTING + "/") for p in paths)


def test_every_name_is_in_the_first_snapshot_after_a_backfill_longer_than_the_deadline() -> None:
    world = thousand_benchmarks(runs=15_000)  # 30 small pages: the latency, not parsing, takes the time
    with Simulator(world, latency=Latency(base_s=0.04)) as sim:
        sync, _ = new_sync(sim.url, page_size=500)
        started = time.monotonic()
        assert sync.run(started + 1.0) is None  # 30 pages at 40 ms and more: longer than the deadline
        snapshot = None
        while snapshot is None:  # the next syncs, each with its own deadline, publish once it is read
            assert time.monotonic() - started < 60, "the backfill never ended"
            snapshot = sync.run(time.monotonic() + 1.0)
        assert snapshot.benchmark_names == world.benchmark_names()  # all 1,000, archived ones too
        assert_exact(snapshot, world)
        assert benchmark_requests([r.path for r in sim.requests]) == (1, 50)
        sim.reset_requests()
        sync.run(time.monotonic() + 1.0)
        assert benchmark_requests([r.path for r in sim.requests]) == (0, 0)  # cached


def test_a_failed_listing_is_tried_again_at_the_next_sync_not_replaced_by_lookups() -> None:
    world = thousand_benchmarks(archived=0)
    with Simulator(world, latency=Latency(base_s=0.01)) as sim:
        sync, _ = new_sync(sim.url, page_size=5000)
        sim.faults.fail_next(1, 503, path_prefix=LISTING)
        first = sync.run()
        assert first.benchmark_names == {}
        assert benchmark_requests([r.path for r in sim.requests]) == (1, 0)  # no lookup per benchmark
        sim.reset_requests()
        second = sync.run()
        assert second.benchmark_names == world.benchmark_names()
        assert benchmark_requests([r.path for r in sim.requests]) == (1, 0)


def test_a_new_benchmark_later_costs_one_lookup() -> None:
    world = thousand_benchmarks(archived=0)
    with Simulator(world) as sim:
        sync, _ = new_sync(sim.url, page_size=5000)
        sync.run()
        world.add_benchmark("bmd_new", "brand new")
        world.add_run(benchmark_id="bmd_new", state="running", start_ms=T0 + 10**9)
        sim.reset_requests()
        assert sync.run().benchmark_names["bmd_new"] == "brand new"
        assert benchmark_requests([r.path for r in sim.requests]) == (0, 1)
