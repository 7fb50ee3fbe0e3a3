"""Soak: 1,000 syncs with churn against the simulator, printing the RSS curve and a verdict.

Everything runs in this process, as in the integration tests: the simulator's World on 127.0.0.1, and
the exporter's own parts (RunloopClient, IncrementalSync, the run cycle, the rendered snapshot a scrape
sends). Between syncs the world changes: runs start and finish, a new benchmark appears now and then,
a run is deleted (which forces a full read), and the API fails now and then (503, malformed JSON, 429)
so the error paths run too. The sync's clock advances a minute per sync, so the hourly reconcile (a
full read) runs every 60 syncs.

RSS is sampled every 100 syncs. Python's allocator keeps freed memory, so RSS reaches a plateau after
the first full reads; the verdict compares the plateau (after the warm-up) with the end. The number
of live Python objects is printed too: it does not depend on the allocator, so a leak shows there first.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from exporter.app import runs_cycle
from exporter.http.state import State
from exporter.logs import configure
from exporter.metrics.exposition import Rendered, render_registry
from exporter.metrics.telemetry import Telemetry
from exporter.publisher import StatePublisher
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.simulator import DEFAULT_API_KEY, Simulator, World
from exporter.sync import BenchmarkNames, IncrementalSync, InvalidRecords, SyncConfig

T0 = 1_700_000_000_000
SYNC_CLOCK_STEP_S = 60.0


def rss_mb() -> float:
    """Resident set size of this process now, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Churn:
    """Changes the world between syncs, and now and then makes the API misbehave."""

    def __init__(self, world: World, simulator: Simulator, benchmarks: list[str], seed: int) -> None:
        self.world = world
        self.simulator = simulator
        self.benchmarks = benchmarks
        self.rng = random.Random(seed)
        self.running: list[str] = []
        self.started = 0
        self.finished = 0
        self.deleted = 0
        self.faults = 0

    def step(self, n: int) -> None:
        rng = self.rng
        for _ in range(rng.randint(0, 6)):
            bid = rng.choice([*self.benchmarks, None])
            self.running.append(self.world.add_run(benchmark_id=bid, state="running", start_ms=T0 + n))
            self.started += 1
        while self.running and (len(self.running) > 40 or rng.random() < 0.6):
            run_id = self.running.pop(rng.randrange(len(self.running)))
            state = rng.choice(("completed", "completed", "completed", "failed", "canceled"))
            score = round(rng.random(), 4) if state == "completed" else None
            self.world.finish_run(run_id, state, duration_ms=rng.randint(10_000, 7_200_000), score=score)
            self.finished += 1
        if n % 97 == 0:
            bid = f"bmd_soak_{len(self.benchmarks):04d}"
            self.world.add_benchmark(bid, f"soak {len(self.benchmarks)}")
            self.benchmarks.append(bid)
        if n % 150 == 0 and self.running:
            self.world.delete_run(self.running.pop())  # the listing shrinks: probes disagree, full read
            self.deleted += 1
        faults = self.simulator.faults
        if n % 50 == 0:
            faults.fail_next(1, 503)  # retried within the sync
            self.faults += 1
        if n % 70 == 0:
            faults.malformed_json_next(1)  # the sync fails; the next one recovers
            self.faults += 1
        if n % 90 == 0:
            faults.fail_next(1, 429, headers={"Retry-After": "0"})
            self.faults += 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; exit 1 when memory grows."""
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100, help="syncs between RSS samples")
    parser.add_argument("--history", type=int, default=20_000, help="finished runs before the first sync")
    parser.add_argument("--benchmarks", type=int, default=50)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200, help="syncs before the plateau is measured")
    parser.add_argument("--tolerance-mb", type=float, default=3.0, help="growth allowed after the warm-up")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-level", default="error", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    configure("console", args.log_level, sys.stderr)

    world = World(order="newest_first", seed=args.seed)
    benchmarks = [f"bmd_soak_{i:04d}" for i in range(args.benchmarks)]
    for i, bid in enumerate(benchmarks):
        world.add_benchmark(bid, f"soak {i}")
    world.add_many_finished(args.history, benchmarks, T0 - 30 * 86_400_000, seed=args.seed)

    simulator = Simulator(world)
    simulator.start()
    telemetry = Telemetry()
    state = State(lambda: render_registry(telemetry.registry))
    client = RunloopClient(
        simulator.url,
        lambda: DEFAULT_API_KEY,
        retry=RetryPolicy(max_retries=3, base_delay_s=0.01, max_delay_s=0.05),
        on_request=telemetry.count_request,
        on_rate_limited=telemetry.rate_limited.inc,
    )
    clock = [0.0]
    sync = IncrementalSync(
        client,
        SyncConfig(page_size=args.page_size),
        names=BenchmarkNames(client),
        invalid=InvalidRecords(telemetry.count_invalid),
        telemetry=telemetry,
        clock=lambda: clock[0],
    )
    job = runs_cycle(sync, [client], telemetry, StatePublisher(state), deadline_s=30.0)
    churn = Churn(world, simulator, benchmarks, args.seed)

    print(f"soak: {args.syncs} syncs, {args.history} runs of history, {args.benchmarks} benchmarks")
    print(
        f"{'syncs':>6} {'rss_mb':>8} {'objects':>9} {'runs':>7} {'running':>7} {'ok':>5} {'failed':>6} {'s':>6}"
    )
    curve: list[tuple[int, float, int]] = []
    ok = failed = 0
    started = time.monotonic()
    scraped = 0
    try:
        for n in range(args.syncs + 1):
            if n:
                churn.step(n)
                clock[0] += SYNC_CLOCK_STEP_S
            if job().ok:
                ok += 1
            else:
                failed += 1
            rendered: Rendered | None = state.rendered
            if rendered is not None:  # what a scrape costs and keeps: both bodies
                scraped += len(rendered.body(state.self_metrics(), gzip=True))
                scraped += len(rendered.body(state.self_metrics(), gzip=False))
            simulator.reset_requests()  # the simulator's request log is the harness's, not the exporter's
            if n % args.every == 0:
                gc.collect()
                runs = world.run_count()
                held = 0 if sync.ledger is None else len(sync.ledger.running)
                point = (n, rss_mb(), len(gc.get_objects()))
                curve.append(point)
                elapsed = time.monotonic() - started
                print(
                    f"{n:>6} {point[1]:>8.1f} {point[2]:>9} {runs:>7} {held:>7} {ok:>5} {failed:>6} {elapsed:>6.1f}",
                    flush=True,
                )
    finally:
        client.close()
        simulator.stop()

    full_reads = {
        reason: telemetry.registry.get_sample_value("runloop_exporter_full_reads_total", {"reason": reason})
        for reason in ("backfill", "scheduled", "probe_mismatch")
    }
    print(
        f"churn: {churn.started} runs started, {churn.finished} finished, {churn.deleted} deleted, "
        f"{len(churn.benchmarks) - args.benchmarks} benchmarks added, {churn.faults} faults injected"
    )
    drift = telemetry.registry.get_sample_value("runloop_exporter_reconcile_drift_total")
    print(f"syncs: {ok} succeeded, {failed} failed; full reads: {full_reads}; reconciles with drift: {drift}")
    plateau = [p for p in curve if p[0] >= args.warmup]
    first, last = plateau[0], plateau[-1]
    peak = max(p[1] for p in plateau)
    growth = last[1] - first[1]
    objects = last[2] - first[2]
    flat = growth <= args.tolerance_mb and peak - first[1] <= args.tolerance_mb
    verdict = "flat" if flat else "growing"
    print(
        f"verdict: {verdict} (RSS {first[1]:.1f} MB at sync {first[0]}, {last[1]:.1f} MB at sync {last[0]}, "
        f"peak {peak:.1f} MB: {growth:+.1f} MB; live objects {objects:+d}; tolerance {args.tolerance_mb} MB)"
    )
    return 0 if flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
