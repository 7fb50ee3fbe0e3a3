"""Scale benchmark: what a sync costs as history grows, incremental vs full rescan.

The simulator (one World with 1,000 benchmarks, answering at `--latency-ms` plus 20 MB/s) runs in this
process; the exporter side runs in a child process (`bench.probe`) so that its max RSS is its own. For each history size and each mode the
child backfills, runs a steady sync with nothing changed, then a sync after 100 changes (50 running runs
finish, 25 start, 25 appear already finished), serves the snapshot on 127.0.0.1 and this process times
scrapes of it. Prints one table, then the ratio full / incremental. `backfill_s` is the backfill's time
and `cpu_s` the exporter's CPU time over it (decoding and validating every run, on a shared machine a
steadier figure than the time).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from exporter.simulator import Latency, Simulator, World

T0 = 1_700_000_000_000
RUNNING = 50
SCRAPES = 50


@dataclass
class Result:
    history: int
    mode: str
    steady_requests: int
    changed_requests: int
    backfill_s: float
    backfill_cpu_s: float
    max_rss_mb: float
    scrape_median_ms: float


def make_world(history: int, benchmarks: int) -> tuple[World, list[str]]:
    world = World(order="newest_first", seed=history)
    ids = [f"bmd_{i:04d}" for i in range(benchmarks)]
    for bid in ids:
        world.add_benchmark(bid, f"benchmark {bid}")
    world.add_many_finished(history - RUNNING, ids, start_ms=T0)
    running = [
        world.add_run(benchmark_id=ids[i % benchmarks], state="running", start_ms=T0 + i)
        for i in range(RUNNING)
    ]
    return world, running


def change(world: World, running: list[str], benchmarks: int) -> None:
    """100 changes: every running run ends, 25 runs start, 25 appear already finished."""
    for i, run_id in enumerate(running):
        world.finish_run(
            run_id, ("completed", "failed", "canceled")[i % 3], duration_ms=60_000 * (i + 1), score=0.5
        )
    running.clear()
    for i in range(25):
        bid = f"bmd_{i % benchmarks:04d}"
        running.append(world.add_run(benchmark_id=bid, state="running", start_ms=T0 + 10**9 + i))
        world.add_run(
            benchmark_id=bid, state="completed", start_ms=T0 + 10**9 + i, duration_ms=1000, score=0.9
        )


def measure(history: int, mode: str, benchmarks: int, page_size: int, latency_ms: float) -> Result:
    world, running = make_world(history, benchmarks)
    with Simulator(world, latency=Latency.realistic(latency_ms, latency_ms)) as sim:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.probe", sim.url, mode, str(page_size)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdin is not None
        assert child.stdout is not None

        def ask(command: str) -> list[str]:
            assert child.stdin is not None
            assert child.stdout is not None
            child.stdin.write(command + "\n")
            child.stdin.flush()
            return child.stdout.readline().split()

        backfill_s, backfill_cpu_s = (float(x) for x in ask("backfill"))
        ask("sync")  # the first sync after a backfill
        steady = int(ask("sync")[0])
        change(world, running, benchmarks)
        changed = int(ask("sync")[0])
        port = int(ask("serve")[0])
        timings = []
        with httpx.Client(headers={"Accept-Encoding": "gzip"}) as http:
            for _ in range(SCRAPES):
                started = time.perf_counter()
                http.get(f"http://127.0.0.1:{port}/metrics").raise_for_status()
                timings.append(time.perf_counter() - started)
        rss_mb = float(ask("rss")[0])
        child.stdin.close()
        child.wait(30)
    return Result(
        history, mode, steady, changed, backfill_s, backfill_cpu_s, rss_mb, statistics.median(timings) * 1000
    )


def main(argv: list[str]) -> int:
    """Run the table; see --help."""
    parser = argparse.ArgumentParser(prog="./dev bench scale", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="history sizes, comma-separated")
    parser.add_argument("--benchmarks", type=int, default=1000)
    parser.add_argument("--page-size", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="per request, plus 20 MB/s")
    args = parser.parse_args(argv)
    print(f"latency {args.latency_ms:g} ms a request plus 20 MB/s; page size {args.page_size}")
    sizes = [int(s) for s in args.sizes.split(",")]
    results: list[Result] = []
    header = (
        f"{'history':>9} {'mode':<12} {'req/steady':>10} {'req/100chg':>10} "
        f"{'backfill_s':>10} {'cpu_s':>6} {'maxRSS_MB':>9} {'scrape_ms':>9}"
    )
    print(header)
    for history in sizes:
        for mode in ("incremental", "full"):
            r = measure(history, mode, args.benchmarks, args.page_size, args.latency_ms)
            results.append(r)
            print(
                f"{r.history:>9} {r.mode:<12} {r.steady_requests:>10} {r.changed_requests:>10} "
                f"{r.backfill_s:>10.2f} {r.backfill_cpu_s:>6.1f} {r.max_rss_mb:>9.1f} {r.scrape_median_ms:>9.2f}",
                flush=True,
            )
    print("\nratio full / incremental (requests per sync):")
    for history in sizes:
        inc = next(r for r in results if r.history == history and r.mode == "incremental")
        full = next(r for r in results if r.history == history and r.mode == "full")
        print(
            f"{history:>9}  steady {full.steady_requests / inc.steady_requests:6.1f}x"
            f"  100 changes {full.changed_requests / inc.changed_requests:6.1f}x"
        )
    return 0
