"""Freshness benchmark (issue 18): how soon the figures come and how old they get, with the runs and the
benchmark jobs on loops of their own and every full read beside them.

The simulator runs in this process: `--runs` runs in the listing in all (each job's runs, one an agent
config, among them) and `--jobs` heavy jobs (`--scenarios` scenarios over 4
agent configs, 5 live jobs at the top), newest first, every request answered after a fixed latency (each
value of `--latency-ms`) plus the body's transfer at 20 MB/s. The real exporter runs in a child process
(`python -m exporter`) with a `--interval` of 5 s and both reconcile intervals at their minimum, 60 s, so
that `--watch` seconds (150 by default) after the first jobs metrics span two reconciles of each part.
Polling /metrics every 0.25 s, it prints per latency:

- `runs_s`, `jobs_s`: seconds from start to the first run metrics and to the first jobs metrics;
- `old_runs_s`, `old_jobs_s`: the oldest the run and jobs figures got while watched (now minus the
  part's last successful sync), and how many intervals that is;
- `req_h`, `GB_h`: requests and GB an hour at rest at the defaults (60 s interval, runs reconciled every
  hour, jobs every day): the steady requests per cycle of each part measured in the watch window outside its own full
  read, times 60 cycles, plus one full read of the runs and 1/24 of one of the jobs, as measured at
  start;
- `RSS_MB`: the exporter's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.support import free_port, peak_rss_mb
from exporter.simulator import DEFAULT_API_KEY, Latency, Simulator, World

T0 = 1_750_000_000_000
BENCHMARKS = 20
LIVE_JOBS = 5
RUNNING = 100
AGENTS = [("agent-a", "model-a"), ("agent-b", "model-b"), ("agent-c", None), ("agent-d", "model-d")]
JOBS_PATH = "/v1/benchmark_jobs"


@dataclass
class Row:
    latency_ms: float
    runs_s: float
    jobs_s: float
    old_runs_s: float
    old_jobs_s: float
    requests_h: float
    gb_h: float
    rss_mb: float


def make_world(runs: int, jobs: int, scenarios: int) -> World:
    """`runs` runs in the listing in all: the jobs' own (one an agent config) and the rest."""
    standalone = runs - RUNNING - jobs * len(AGENTS)
    if standalone < 0:
        raise SystemExit(
            f"--runs must be at least {RUNNING + jobs * len(AGENTS)}: the jobs' runs are runs too"
        )
    world = World(order="newest_first", seed=runs + jobs)
    ids = [f"bmd_{i:02d}" for i in range(BENCHMARKS)]
    for bid in ids:
        world.add_benchmark(bid, f"benchmark {bid}")
    world.add_many_finished(standalone, ids, start_ms=T0)
    for i in range(RUNNING):
        world.add_run(benchmark_id=ids[i % BENCHMARKS], state="running", start_ms=T0 + 10**9 + i)
    for i in range(jobs):
        world.jobs.add(
            benchmark_id=ids[i % BENCHMARKS],
            agents=AGENTS,
            create_ms=T0 + i * 60_000,
            state="running" if i >= jobs - LIVE_JOBS else "completed",
            n_scenarios=scenarios,
            seed=i % 40,
        )
    assert world.run_count() == runs, (world.run_count(), runs)
    return world


def scrape(http: httpx.Client, url: str) -> dict[str, float]:
    """The exporter's figures that say how fresh it is (absent ones left out)."""
    try:
        text = http.get(f"{url}/metrics").text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name
                in (
                    "runloop_exporter_last_successful_sync_timestamp_seconds",
                    "runloop_exporter_jobs_last_successful_sync_timestamp_seconds",
                    "runloop_exporter_syncs_total",
                    "runloop_exporter_jobs_syncs_total",
                )
                and sample.labels.get("result", "success") == "success"
            ):
                out[sample.name] = sample.value
            elif sample.name == "runloop_exporter_read_progress_ratio":
                out[f"reading_{sample.labels['part']}"] = 1.0
            elif sample.name == "runloop_benchmark_jobs":
                out["jobs_shown"] = 1.0
    return out


def measure(world: World, latency_ms: float, interval: float, watch: float) -> Row:
    with Simulator(world, latency=Latency(base_s=latency_ms / 1000, bytes_per_s=20e6)) as sim:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOOP")}
        env.update(
            {
                "RUNLOOP_BASE_URL": sim.url,
                "RUNLOOP_API_KEY": DEFAULT_API_KEY,
                "RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": str(interval),
                "RUNLOOP_EXPORTER_RECONCILE_INTERVAL_SECONDS": "60",
                "RUNLOOP_EXPORTER_JOBS_RECONCILE_INTERVAL_SECONDS": "60",
                "RUNLOOP_EXPORTER_PAGE_SIZE": "5000",
                "RUNLOOP_EXPORTER_LOG_LEVEL": "warning",
            }
        )
        with tempfile.TemporaryDirectory() as tmp, Path(tmp, "exporter.log").open("w") as log:
            started = time.monotonic()
            child = subprocess.Popen(
                [sys.executable, "-m", "exporter", "--address", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            try:
                return _watch(sim, child, url, started=started, watch=watch, latency_ms=latency_ms)
            finally:
                child.terminate()
                child.wait(30)


def _watch(
    sim: Simulator,
    child: subprocess.Popen[bytes],
    url: str,
    *,
    started: float,
    watch: float,
    latency_ms: float,
) -> Row:
    runs_s: float | None = None
    jobs_s: float | None = None
    oldest = {"runs": 0.0, "jobs": 0.0}
    steady: dict[str, list[int]] = {"runs": [], "jobs": []}
    backfill = {"requests": 0, "bytes": 0, "job_requests": 0, "job_bytes": 0}
    last_cycles: dict[str, tuple[float, int]] = {}
    with httpx.Client(timeout=5) as http:
        while True:
            figures = scrape(http, url)
            now = time.monotonic()
            if figures.get("runloop_exporter_syncs_total") and runs_s is None:
                runs_s = now - started
                backfill["requests"] = sum(1 for r in sim.requests if not r.path.startswith(JOBS_PATH))
                backfill["bytes"] = sum(v for k, v in sim.bytes_sent_by.items() if k != JOBS_PATH)
            if figures.get("jobs_shown") and jobs_s is None:
                jobs_s = now - started
                backfill["job_requests"] = sum(1 for r in sim.requests if r.path.startswith(JOBS_PATH))
                backfill["job_bytes"] = sim.bytes_sent_by.get(JOBS_PATH, 0)
            if jobs_s is not None and runs_s is not None:  # both shown: watch
                wall = time.time()
                for part, name in (
                    ("runs", "runloop_exporter_last_successful_sync_timestamp_seconds"),
                    ("jobs", "runloop_exporter_jobs_last_successful_sync_timestamp_seconds"),
                ):
                    oldest[part] = max(oldest[part], wall - figures.get(name, wall))
                _steady(sim, figures, last_cycles, steady)
                if now - started - jobs_s >= watch:
                    break
            if child.poll() is not None:
                raise SystemExit(f"the exporter exited with {child.returncode}")
            time.sleep(0.25)
        rss = peak_rss_mb(child.pid)
    assert runs_s is not None
    assert jobs_s is not None
    per_cycle = {part: (sorted(v)[len(v) // 2] if v else 0) for part, v in steady.items()}
    requests_h = (
        60 * (per_cycle["runs"] + per_cycle["jobs"]) + backfill["requests"] + backfill["job_requests"] / 24
    )
    gb_h = (backfill["bytes"] + backfill["job_bytes"] / 24) / 1e9
    return Row(latency_ms, runs_s, jobs_s, oldest["runs"], oldest["jobs"], requests_h, gb_h, rss)


def _steady(
    sim: Simulator,
    figures: dict[str, float],
    last: dict[str, tuple[float, int]],
    steady: dict[str, list[int]],
) -> None:
    """Requests per cycle of each part while none of its full reads goes on (their median is its steady
    cost)."""
    counts = {
        "runs": sum(1 for r in sim.requests if not r.path.startswith(JOBS_PATH)),
        "jobs": sum(1 for r in sim.requests if r.path.startswith(JOBS_PATH)),
    }
    for part, name in (
        ("runs", "runloop_exporter_syncs_total"),
        ("jobs", "runloop_exporter_jobs_syncs_total"),
    ):
        cycles = figures.get(name, 0.0)
        previous = last.get(part)
        if previous is not None and cycles == previous[0] + 1 and f"reading_{part}" not in figures:
            steady[part].append(counts[part] - previous[1])
        if previous is None or cycles != previous[0]:
            last[part] = (cycles, counts[part])


def main(argv: list[str]) -> int:
    """Run the table; see --help."""
    parser = argparse.ArgumentParser(prog="./dev bench freshness", description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--scenarios", type=int, default=500, help="scenarios per job")
    parser.add_argument("--latency-ms", default="50,100", help="fixed latencies, comma-separated")
    parser.add_argument("--interval", type=float, default=5.0, help="the exporter's sync interval")
    parser.add_argument(
        "--watch", type=float, default=150.0, help="seconds watched after the first jobs metrics"
    )
    args = parser.parse_args(argv)
    world = make_world(args.runs, args.jobs, args.scenarios)
    print(
        f"{args.runs} runs ({args.jobs * len(AGENTS)} of them the jobs'), {args.jobs} jobs of {args.scenarios} "
        f"scenarios x {len(AGENTS)} agents; interval {args.interval:g} s, reconciles every 60 s, "
        f"watched {args.watch:g} s"
    )
    print(
        f"{'lat_ms':>6} {'runs_s':>7} {'jobs_s':>7} {'old_runs_s':>10} {'old_jobs_s':>10} "
        f"{'req_h':>8} {'GB_h':>6} {'RSS_MB':>6}"
    )
    for latency in (float(x) for x in args.latency_ms.split(",")):
        r = measure(world, latency, args.interval, args.watch)
        print(
            f"{r.latency_ms:>6g} {r.runs_s:>7.1f} {r.jobs_s:>7.1f} {r.old_runs_s:>10.1f} {r.old_jobs_s:>10.1f} "
            f"{r.requests_h:>8.0f} {r.gb_h:>6.2f} {r.rss_mb:>6.1f}",
            flush=True,
        )
    return 0
