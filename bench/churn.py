"""Churn benchmark: does the sync keep up with a busy account at real latency, and at what cost?

For each history size, churn rate, latency and mode, a simulated account (newest first, 20 benchmarks)
is served in this process with that latency per request (plus 20 MB/s of transfer), and the real
exporter runs as a child process against it. After the backfill, the driver ends the oldest running
runs and starts as many new ones, spread over each interval, for a few intervals; this process scrapes
the exporter every 0.1 s and reads its log.

Intervals are scaled down by `--scale` to keep the benchmark short, with the churn scaled alike (a
time-lapse: each scaled interval sees the churn of a whole real one), so the API's latency weighs
`--scale` times more than it would in real time. Per cell it prints:

- published: publishes during the measured intervals per interval (capped at 100%), and max_gap, the
  longest time without a publish, in intervals (the exporter must never go more than two);
- req/sync: requests per sync after the backfill (from the exporter's `sync finished` log lines);
- sync p50/p99: sync duration, successful or not, in seconds;
- fresh p50/p99: from the moment the simulator ended a run to the first published snapshot that counts
  it, in intervals (the batch of a tick counts as learned once the published finished-count reaches
  the count at that tick);
- peak RSS of the exporter, in MB.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.support import free_port, peak_rss_mb
from exporter.simulator import DEFAULT_API_KEY, Latency, Simulator, World

T0 = 1_700_000_000_000
BENCHMARKS = [f"bmd_{i:02d}" for i in range(20)]
TICKS = 10  # churn events per interval
FINISHED = ("completed", "failed", "canceled")


@dataclass
class Cell:
    history: int
    churn_per_min: int
    latency_ms: int
    mode: str
    published: float = 0.0
    max_gap: float = 0.0
    requests: float = 0.0
    sync_p50: float = 0.0
    sync_p99: float = 0.0
    fresh_p50: float = 0.0
    fresh_p99: float = 0.0
    peak_rss_mb: float = 0.0


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Driver:
    """Ends the oldest running runs and starts as many, `per_tick` each tick; remembers when."""

    def __init__(self, world: World, running: list[str], per_tick: int) -> None:
        self.world = world
        self.running = running
        self.per_tick = per_tick
        self.ended = 0
        self.events: list[tuple[float, int]] = []  # (when, runs ended so far)
        self._serial = itertools.count()

    def tick(self) -> None:
        ending, self.running = self.running[: self.per_tick], self.running[self.per_tick :]
        for i, run_id in enumerate(ending):
            state = FINISHED[i % 7 % 3]
            self.world.finish_run(
                run_id, state, duration_ms=60_000 + i, score=0.7 if state == "completed" else None
            )
        for _ in range(self.per_tick):
            n = next(self._serial)
            self.running.append(
                self.world.add_run(benchmark_id=BENCHMARKS[n % 20], state="running", start_ms=T0 + 10**9 + n)
            )
        self.ended += len(ending)
        self.events.append((time.monotonic(), self.ended))


class Watcher(threading.Thread):
    """Scrapes the exporter every 0.1 s: when it published, and how many finished runs it counted."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.publishes: list[tuple[float, float]] = []  # (when seen, finished runs counted)
        self.stop = threading.Event()

    def run(self) -> None:
        last = -1.0
        with httpx.Client(timeout=5) as http:
            while not self.stop.wait(0.1):
                try:
                    text = http.get(self.url).text
                except httpx.HTTPError:
                    continue
                samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
                successes = sum(
                    s.value
                    for s in samples
                    if s.name == "runloop_exporter_syncs_total" and s.labels["result"] == "success"
                )
                if successes == last:
                    continue
                last = successes
                finished = sum(
                    s.value
                    for s in samples
                    if s.name == "runloop_benchmark_runs" and s.labels["state"] in FINISHED
                )
                self.publishes.append((time.monotonic(), finished))


def measure(cell: Cell, interval_s: float, scale: float, intervals: int, page_size: int) -> Cell:
    scaled = interval_s / scale
    per_interval = round(cell.churn_per_min * interval_s / 60)
    per_tick = per_interval // TICKS
    world = World(order="newest_first", seed=cell.history)
    for bid in BENCHMARKS:
        world.add_benchmark(bid, f"benchmark {bid}")
    pool = max(min(2 * per_interval, cell.history // 2), 20)  # running runs, started last
    world.add_many_finished(cell.history - pool, BENCHMARKS, start_ms=T0)
    running = [
        world.add_run(benchmark_id=BENCHMARKS[i % 20], state="running", start_ms=T0 + 10**8 + i)
        for i in range(pool)
    ]
    latency = Latency.realistic(cell.latency_ms, cell.latency_ms)
    port = free_port()
    with Simulator(world, latency=latency) as sim, tempfile.TemporaryFile("w+") as logs:
        env = {
            **os.environ,
            "RUNLOOP_BASE_URL": sim.url,
            "RUNLOOP_API_KEY": DEFAULT_API_KEY,
            "RUNLOOP_EXPORTER_ADDRESS": "127.0.0.1",
            "RUNLOOP_EXPORTER_PORT": str(port),
            "RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": f"{max(scaled, 1.0):g}",
            "RUNLOOP_EXPORTER_PAGE_SIZE": str(page_size),
            "RUNLOOP_EXPORTER_SYNC_MODE": cell.mode,
            "RUNLOOP_EXPORTER_FULL_READ_TIMEOUT_SECONDS": "3600",
            "RUNLOOP_EXPORTER_JOBS": "false",  # the run listing's cost alone
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "exporter"], env=env, stdout=subprocess.DEVNULL, stderr=logs, text=True
        )
        try:
            metrics = f"http://127.0.0.1:{port}/metrics"
            while not _ready(port):
                if child.poll() is not None:
                    raise RuntimeError("the exporter exited during the backfill")
                time.sleep(0.2)
            watcher = Watcher(metrics)
            watcher.start()
            driver = Driver(world, running, per_tick)
            begin = time.monotonic()
            for tick in range(intervals * TICKS):
                time.sleep(max(begin + tick * scaled / TICKS - time.monotonic(), 0))
                if per_tick:
                    driver.tick()
            time.sleep(max(begin + (intervals + 2) * scaled - time.monotonic(), 0))
            watcher.stop.set()
            watcher.join()
            cell.peak_rss_mb = peak_rss_mb(child.pid)
        finally:
            child.terminate()
            child.wait(30)
        logs.seek(0)
        lines = [json.loads(line) for line in logs if line.startswith("{")]
    syncs = [e for e in lines if e.get("event") in ("sync finished", "sync stopped", "sync failed")][1:]
    finished = [e for e in syncs if e["event"] == "sync finished"]
    cell.requests = statistics.mean(e["requests"] for e in finished) if finished else float("nan")
    durations = [float(e["duration_s"]) for e in syncs]
    cell.sync_p50, cell.sync_p99 = percentile(durations, 0.5), percentile(durations, 0.99)
    end = begin + intervals * scaled
    times = [when for when, _ in watcher.publishes if begin <= when < end]
    cell.published = min(len(times) / intervals, 1.0)
    marks = [begin, *times, end]
    cell.max_gap = max(b - a for a, b in itertools.pairwise(marks)) / scaled
    base = watcher.publishes[0][1] if watcher.publishes else 0.0
    fresh = []
    for when, ended in driver.events:
        seen = next((at for at, count in watcher.publishes if at >= when and count - base >= ended), None)
        fresh.append(float("inf") if seen is None else (seen - when) / scaled)
    cell.fresh_p50, cell.fresh_p99 = percentile(fresh, 0.5), percentile(fresh, 0.99)
    return cell


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main(argv: list[str]) -> int:
    """Run the grid; see --help."""
    parser = argparse.ArgumentParser(prog="./dev bench churn", description=__doc__)
    parser.add_argument("--histories", default="10000,100000,1000000")
    parser.add_argument("--churns", default="0,1000,10000", help="run completions per minute")
    parser.add_argument("--latencies", default="50,100", help="ms per request")
    parser.add_argument("--modes", default="incremental,full")
    parser.add_argument("--interval", type=float, default=60.0, help="the real sync interval, seconds")
    parser.add_argument("--scale", type=float, default=10.0, help="intervals run this many times faster")
    parser.add_argument("--intervals", type=int, default=5)
    parser.add_argument("--page-size", type=int, default=5000)
    args = parser.parse_args(argv)
    print(
        f"interval {args.interval:g} s scaled to {args.interval / args.scale:g} s; "
        f"{args.intervals} intervals a cell; page size {args.page_size}"
    )
    header = (
        f"{'history':>8} {'churn/min':>9} {'lat_ms':>6} {'mode':<11} {'published':>9} {'max_gap':>7} {'req/sync':>8} "
        f"{'sync_p50':>8} {'sync_p99':>8} {'fresh_p50':>9} {'fresh_p99':>9} {'peakRSS':>7}"
    )
    print(header, flush=True)
    for history, churn, latency, mode in itertools.product(
        [int(h) for h in args.histories.split(",")],
        [int(c) for c in args.churns.split(",")],
        [int(lat) for lat in args.latencies.split(",")],
        args.modes.split(","),
    ):
        c = measure(
            Cell(history, churn, latency, mode), args.interval, args.scale, args.intervals, args.page_size
        )
        print(
            f"{c.history:>8} {c.churn_per_min:>9} {c.latency_ms:>6} {c.mode:<11} {c.published:>9.0%} {c.max_gap:>7.2f} "
            f"{c.requests:>8.1f} {c.sync_p50:>8.2f} {c.sync_p99:>8.2f} {c.fresh_p50:>9.2f} {c.fresh_p99:>9.2f} "
            f"{c.peak_rss_mb:>7.1f}",
            flush=True,
        )
    print("fresh_* are in intervals; published is the share of intervals with a new snapshot.")
    return 0
