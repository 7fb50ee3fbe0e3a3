"""Incremental sync against the simulator: request counts (never time) and figures equal to a full read."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from exporter.simulator import Order, Simulator, World
from tests.support.syncing import assert_exact, figures, full_figures, new_sync

ORDERS: list[Order] = ["newest_first", "oldest_first", "shuffled"]
T0 = 1_750_000_000_000
BENCHMARKS = [f"bmd_{i:02d}" for i in range(10)]


def big_world(order: Order, history: int, running: int = 20) -> tuple[World, list[str]]:
    world = World(order=order, seed=history)
    for bid in BENCHMARKS:
        world.add_benchmark(bid, f"Benchmark {bid}")
    world.add_many_finished(history, BENCHMARKS, start_ms=T0)
    ids = [
        world.add_run(benchmark_id=BENCHMARKS[i % 10], state="running", start_ms=T0 + i)
        for i in range(running)
    ]
    return world, ids


def requests_of(sim: Simulator, action: Callable[[], object]) -> int:
    sim.reset_requests()
    action()
    return len(sim.requests)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("history", [1_000, 20_000, 100_000])
def test_steady_state_is_at_most_three_requests(order: Order, history: int) -> None:
    world, _ = big_world(order, history)
    with Simulator(world) as sim:
        sync, telemetry = new_sync(sim.url, page_size=5000)
        backfill = requests_of(sim, sync.run)
        assert backfill >= history // 5000
        for _ in range(3):
            assert requests_of(sim, sync.run) <= 3
        assert sync.ledger is not None
        assert sync.ledger.listed == history + 20
        assert (
            telemetry.registry.get_sample_value("runloop_exporter_full_reads_total", {"reason": "backfill"})
            == 1
        )
        assert (
            telemetry.registry.get_sample_value(
                "runloop_exporter_full_reads_total", {"reason": "probe_mismatch"}
            )
            == 0
        )


@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
@pytest.mark.parametrize("history", [5_000, 50_000])
@pytest.mark.parametrize("k", [1, 10, 40])
def test_cost_of_k_changes_grows_with_k_not_history(order: Order, history: int, k: int) -> None:
    world, running = big_world(order, history, running=k)
    with Simulator(world) as sim:
        sync, telemetry = new_sync(sim.url, page_size=1000)
        sync.run()
        for i, run_id in enumerate(running):  # every running run ends
            world.finish_run(
                run_id, ("completed", "failed", "canceled")[i % 3], duration_ms=60_000 + i, score=0.5
            )
        for i in range(k):  # k runs start, k appear already finished
            world.add_run(benchmark_id=BENCHMARKS[i % 10], state="running", start_ms=T0 + 10**9 + i)
            world.add_run(
                benchmark_id=BENCHMARKS[i % 10],
                state="completed",
                start_ms=T0 + 10**9 + i,
                duration_ms=5,
                score=0.9,
            )
        cost = requests_of(sim, sync.run)
        # 3 probes, one GET per run that left running, and the new runs' pages (2k runs, 1000 a page)
        assert cost <= 3 + k + (2 * k) // 1000 + 2
        assert (
            telemetry.registry.get_sample_value(
                "runloop_exporter_full_reads_total", {"reason": "probe_mismatch"}
            )
            == 0
        )
        assert_exact(sync.run(), world)


@pytest.mark.parametrize("order", ORDERS)
def test_figures_match_a_full_read_through_every_kind_of_change(order: Order) -> None:
    world, running = big_world(order, 3_000, running=6)
    with Simulator(world) as sim:
        sync, _ = new_sync(sim.url, page_size=500)
        assert_exact(sync.run(), world)
        steps: list[Callable[[], object]] = [
            lambda: world.finish_run(running[0], "completed", duration_ms=120_000, score=0.25),
            lambda: world.finish_run(running[1], "failed", duration_ms=1_000),
            lambda: world.delete_run(running[2]),  # deleted while running
            lambda: world.add_run(benchmark_id="bmd_new", state="running", start_ms=T0 - 5),  # new benchmark
            lambda: world.add_run(
                benchmark_id=None, state="completed", start_ms=T0, duration_ms=9, score=1.0
            ),
            lambda: world.add_run(benchmark_id="bmd_01", state="paused", start_ms=T0),  # a state new to us
            lambda: world.delete_run(
                str(world.runs()[len(world.runs()) // 2]["id"])
            ),  # a finished run disappears
            lambda: world.finish_run(running[3], "canceled", duration_ms=30_000),
        ]
        for step in steps:
            step()
            assert_exact(sync.run(), world)


@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
def test_the_runs_at_either_end_may_disappear(order: Order) -> None:
    world, _ = big_world(order, 2_000, running=2)
    with Simulator(world) as sim:
        sync, _ = new_sync(sim.url, page_size=300)
        sync.run()
        listing = world.runs()
        world.delete_run(str(listing[0]["id"]))
        world.delete_run(str(listing[-1]["id"]))
        world.add_run(benchmark_id="bmd_03", state="completed", start_ms=T0, duration_ms=1, score=0.1)
        assert_exact(sync.run(), world)


def test_changing_order_between_syncs_changes_only_the_cost() -> None:
    world, running = big_world("newest_first", 2_000, running=3)
    with Simulator(world) as sim:
        sync, _ = new_sync(sim.url, page_size=400)
        sync.run()
        for order in ("oldest_first", "shuffled", "newest_first"):
            world.set_order(order)
            world.add_run(benchmark_id="bmd_02", state="failed", start_ms=T0, duration_ms=77)
            assert_exact(sync.run(), world)
        world.finish_run(running[0], "completed", duration_ms=1, score=0.3)
        assert_exact(sync.run(), world)


def test_scheduled_reconcile_heals_drift_no_probe_can_see_and_says_so() -> None:
    now = [0.0]
    world, _ = big_world("shuffled", 2_000, running=0)
    with Simulator(world) as sim:
        sync, telemetry = new_sync(sim.url, page_size=500, clock=lambda: now[0], reconcile_interval_s=600)
        sync.run()
        # A finished run is deleted while another appears already finished: same count, invisible to probes.
        world.delete_run(str(world.runs()[1000]["id"]))
        world.add_run(benchmark_id="bmd_07", state="completed", start_ms=T0, duration_ms=10, score=0.01)
        drifted = figures(sync.run())
        assert drifted != full_figures(sim.url)
        now[0] = 601.0
        with capture_logs() as logs:
            healed = figures(sync.run())
        assert healed == full_figures(sim.url)
        assert telemetry.registry.get_sample_value("runloop_exporter_reconcile_drift_total") == 1
        assert (
            telemetry.registry.get_sample_value("runloop_exporter_full_reads_total", {"reason": "scheduled"})
            == 1
        )
        assert any(entry["event"] == "reconcile found drift and healed it" for entry in logs)
        # the next reconcile finds nothing to heal
        now[0] = 1300.0
        sync.run()
        assert telemetry.registry.get_sample_value("runloop_exporter_reconcile_drift_total") == 1


def test_backfill_logs_progress_with_eta() -> None:
    world, _ = big_world("newest_first", 20_000, running=0)
    ticks = iter(range(10**6))
    with Simulator(world) as sim:
        sync, _ = new_sync(sim.url, page_size=1000, clock=lambda: float(next(ticks)) * 3)
        with capture_logs() as logs:
            sync.run()
    progress = [entry for entry in logs if entry["event"] == "read in progress"]
    assert len(progress) >= 5
    assert progress[0]["total_count"] == 20_000
    assert progress[-1]["eta_s"] is not None
    assert progress[-1]["records"] > progress[0]["records"]
    assert {"part", "pages", "records", "records_per_s", "reason"} <= set(progress[0])
    assert (progress[0]["part"], progress[0]["reason"]) == ("runs", "backfill")
