"""Jobs benchmark: what backfilling heavy benchmark jobs costs the exporter (requests, bytes, time, RSS).

The simulator (a World of `--jobs` jobs, each over `--scenarios` scenarios and `--agents` agent configs,
newest first, a few live ones at the top) runs in this process and answers at 50 to 150 ms a request;
the exporter side (`bench.jobs_probe`) runs in a child process so that its peak RSS is its own. The child
backfills the job listing (a full read, as at start-up) with the settings' defaults, then runs one steady
sync. The simulator serves ended jobs from a template per variant (`JobStore._body`), so it keeps up.
`cpu_s` is the exporter's CPU time (user + system) during the backfill and `cpu_s/GB` the same per GB of
job pages read (decoding and reducing them: what exporter/runloop/decode.py is for); `peakRSS_MB` is
the exporter's peak RSS (VmHWM) and `import` what it was after its imports, before the first request.

Transfer: `--mb-per-s` (0 by default: loopback speed) adds the body's transfer time to each answer. The
backfill reads its pages one after another, so its time at a given rate is the measured time plus bytes
/ rate: the table prints that for 20 MB/s (`at20MB/s`) without spending an hour sleeping on it, and
whether each time is within 1800 s (the full-read deadline's default until issue 18's bench) as measured and at 20 MB/s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass

from exporter.simulator import Latency, Simulator, World

T0 = 1_750_000_000_000
VARIANTS = 40  # distinct jobs but for ids and times (seed, benchmark, state): the simulator's templates
BENCHMARKS = 10
LIVE = 5
DEADLINE_S = 1800.0  # RUNLOOP_EXPORTER_FULL_READ_TIMEOUT_SECONDS' default until issue 18's bench
RATE = 20e6
MODELS = ("claude-opus-4", "gpt-5", "gemini-2.5-pro", "llama-4", None)


@dataclass
class Result:
    jobs: int
    scenarios: int
    agents: int
    requests: int
    bytes: int
    seconds: float
    cpu_s: float
    rss_mb: float
    rss_import_mb: float
    steady_requests: int
    build_s: float

    @property
    def at_rate_s(self) -> float:
        return self.seconds + self.bytes / RATE

    @property
    def cpu_per_gb(self) -> float:
        """CPU seconds of the exporter per GB of job pages read: what decoding and reducing them costs."""
        return self.cpu_s / (self.bytes / 1e9) if self.bytes else float("nan")


def _verdict(seconds: float) -> str:
    return "met" if seconds <= DEADLINE_S else "missed"


def make_world(jobs: int, scenarios: int, agents: int) -> World:
    """`jobs` jobs, newest first: all ended but the LIVE newest, which are running."""
    world = World(order="newest_first", seed=jobs)
    configs = [(f"agent-{a}", MODELS[a % len(MODELS)]) for a in range(agents)]
    levels = [0.35 + 0.5 * a / max(agents, 1) for a in range(agents)]
    ended = ("completed",) * 7 + ("failed", "timeout", "cancelled")
    for i in range(jobs):
        live = i >= jobs - LIVE
        world.jobs.add(
            benchmark_id=f"bmd_{i % BENCHMARKS:02d}",
            agents=configs,
            levels=levels,
            create_ms=T0 + i * 60_000,
            state="running" if live else ended[i % VARIANTS % len(ended)],  # one state per variant
            n_scenarios=scenarios,
            seed=i % VARIANTS,
        )
    return world


def measure(jobs: int, scenarios: int, agents: int, latency: Latency) -> Result:
    started = time.perf_counter()
    world = make_world(jobs, scenarios, agents)
    build_s = time.perf_counter() - started
    with Simulator(world, latency=latency) as sim:
        child = subprocess.run(
            [sys.executable, "-m", "bench.jobs_probe", sim.url],
            capture_output=True,
            text=True,
            check=False,
        )
    if child.returncode != 0:
        sys.stderr.write(child.stderr)
        raise SystemExit(f"the exporter side failed for {jobs} jobs")
    out = json.loads(child.stdout.strip().splitlines()[-1])
    if out["jobs"] != jobs or out["invalid"]:
        raise SystemExit(f"the exporter read {out['jobs']} of {jobs} jobs ({out['invalid']} invalid)")
    return Result(
        jobs,
        scenarios,
        agents,
        out["requests"],
        out["bytes"],
        out["seconds"],
        out["cpu_s"],
        out["rss_mb"],
        out["rss_import_mb"],
        out["steady_requests"],
        build_s,
    )


def main(argv: list[str]) -> int:
    """Run the table; see --help."""
    parser = argparse.ArgumentParser(prog="./dev bench jobs", description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000", help="numbers of jobs, comma-separated")
    parser.add_argument("--scenarios", type=int, default=500, help="scenarios per job")
    parser.add_argument("--agents", type=int, default=4, help="agent configs per job")
    parser.add_argument("--latency-ms", default="50,150", help="low,high per request (uniform)")
    parser.add_argument("--mb-per-s", type=float, default=0.0, help="transfer rate (0: loopback speed)")
    args = parser.parse_args(argv)
    low, high = (float(x) for x in args.latency_ms.split(","))
    latency = Latency(
        base_s=low / 1000, jitter_s=(high - low) / 1000, bytes_per_s=args.mb_per_s * 1e6 or None
    )
    rate = f"{args.mb_per_s:g} MB/s" if args.mb_per_s else "loopback speed"
    print(f"latency {low:g} to {high:g} ms a request, transfer at {rate}; {LIVE} live jobs at the top")
    print(
        f"{'jobs':>7} {'scen':>4} {'agents':>6} {'requests':>8} {'GB read':>7} {'time_s':>7} "
        f"{'at20MB/s':>8} {'cpu_s':>6} {'cpu_s/GB':>8} {'peakRSS_MB':>10} {'import':>6} {'steady':>6} "
        f"{'1800s':>6} {'1800s@20':>8}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        r = measure(size, args.scenarios, args.agents, latency)
        print(
            f"{r.jobs:>7} {r.scenarios:>4} {r.agents:>6} {r.requests:>8} {r.bytes / 1e9:>7.2f} "
            f"{r.seconds:>7.1f} {r.at_rate_s:>8.1f} {r.cpu_s:>6.1f} {r.cpu_per_gb:>8.2f} {r.rss_mb:>10.1f} "
            f"{r.rss_import_mb:>6.1f} {r.steady_requests:>6} {_verdict(r.seconds):>6} "
            f"{_verdict(r.at_rate_s if not args.mb_per_s else r.seconds):>8}",
            flush=True,
        )
    return 0
