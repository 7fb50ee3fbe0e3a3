"""Restart benchmark (issue 19): how soon the figures come back after a restart, with and without the
checkpoint (RUNLOOP_EXPORTER_STATE_DIR), and what it costs.

The world is bench/freshness.py's: `--runs` runs and `--jobs` heavy jobs (`--scenarios` scenarios over 4
agent configs, 5 live jobs at the top), newest first, served by one simulator in this process (its latency
set per row: a fixed `--latency-ms` per request plus the body's transfer at 20 MB/s). The checkpoint is made
once, by one full read at no latency, and copied for each restart. Before each set of restarts the world
moves by `--changes` (cumulative from the checkpoint's state): half of them runs that start, half runs that
end (the oldest running first), and a tenth as many jobs (half new live jobs, half live jobs that end).
The real exporter then starts in a child process (`python -m exporter`, pages of 5,000 runs and of at most
`--jobs-page-size` jobs, the default intervals, so only its first cycles count) on a copy of the
checkpoint, or without one (`full read`: the backfill, once per latency; the full-read deadline is raised
to a day so that it ends at any size). Polling /metrics every 0.1 s, it prints per row:

- `runs_s`, `jobs_s`: seconds from the process start to the first run metrics and the first jobs metrics;
- `requests`, `MB`: requests to the API and the bytes of their answers until both were shown.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.freshness import AGENTS, BENCHMARKS, LIVE_JOBS, T0, make_world
from bench.support import free_port
from exporter.simulator import DEFAULT_API_KEY, Latency, Simulator, World

TRANSFER = 20e6  # bytes per second of a body, on top of the latency


@dataclass
class Row:
    mode: str
    changes: int | None
    latency_ms: float
    runs_s: float
    jobs_s: float
    requests: int
    mb: float


def exporter_env(sim: Simulator, state: Path | None, jobs_page_size: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOOP")}
    env.update(
        {
            "RUNLOOP_BASE_URL": sim.url,
            "RUNLOOP_API_KEY": DEFAULT_API_KEY,
            "RUNLOOP_EXPORTER_PAGE_SIZE": "5000",
            "RUNLOOP_EXPORTER_JOBS_PAGE_SIZE": str(jobs_page_size),
            # 100,000 heavy jobs are 35 GB: at 20 MB/s a full read outlasts the default deadline (1800 s)
            # and would start again for ever; the `full read` rows measure one that ends.
            "RUNLOOP_EXPORTER_FULL_READ_TIMEOUT_SECONDS": "86400",
            "RUNLOOP_EXPORTER_LOG_LEVEL": "warning",
            "RUNLOOP_EXPORTER_STATE_DIR": "" if state is None else str(state),
        }
    )
    return env


def shown(http: httpx.Client, url: str) -> tuple[bool, bool, dict[str, float]]:
    """Whether run metrics and jobs metrics are served, and the checkpoint counters."""
    try:
        text = http.get(f"{url}/metrics").text
    except httpx.HTTPError:
        return False, False, {}
    runs = jobs = False
    counters: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "runloop_benchmark_runs":
                runs = True
            elif sample.name == "runloop_benchmark_jobs":
                jobs = True
            elif (
                sample.name == "runloop_exporter_checkpoint_writes_total"
                and sample.labels["result"] == "success"
            ):
                counters[f"wrote_{sample.labels['part']}"] = sample.value
            elif sample.name == "runloop_exporter_checkpoint_loads_total" and sample.value:
                counters[f"{sample.labels['part']}_{sample.labels['result']}"] = sample.value
    return runs, jobs, counters


def start(
    sim: Simulator, state: Path | None, log: Path, jobs_page_size: int
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--address", "127.0.0.1", "--port", str(port)],
            env=exporter_env(sim, state, jobs_page_size),
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    return child, f"http://127.0.0.1:{port}"


def stop(child: subprocess.Popen[bytes]) -> None:
    child.terminate()
    try:
        child.wait(60)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def make_checkpoint(sim: Simulator, state: Path, log: Path, jobs_page_size: int) -> None:
    """One full read at no latency, then a clean stop, which writes both parts."""
    sim.latency = Latency()
    child, url = start(sim, state, log, jobs_page_size)
    try:
        with httpx.Client(timeout=10) as http:
            while True:
                runs, jobs, counters = shown(http, url)
                if runs and jobs and counters.get("wrote_runs") and counters.get("wrote_jobs"):
                    break
                if child.poll() is not None:
                    raise SystemExit(f"the exporter exited with {child.returncode}; see {log}")
                time.sleep(0.2)
    finally:
        stop(child)


def measure(
    sim: Simulator,
    state: Path | None,
    log: Path,
    *,
    mode: str,
    changes: int | None,
    latency_ms: float,
    jobs_page_size: int,
) -> Row:
    sim.latency = Latency(base_s=latency_ms / 1000, bytes_per_s=TRANSFER)
    sim.reset_requests()
    sent_before = sum(sim.bytes_sent_by.values())
    started = time.monotonic()
    child, url = start(sim, state, log, jobs_page_size)
    runs_s: float | None = None
    jobs_s: float | None = None
    try:
        with httpx.Client(timeout=10) as http:
            while runs_s is None or jobs_s is None:
                runs, jobs, counters = shown(http, url)
                now = time.monotonic() - started
                if runs and runs_s is None:
                    runs_s = now
                if jobs and jobs_s is None:
                    jobs_s = now
                if child.poll() is not None:
                    raise SystemExit(f"the exporter exited with {child.returncode}; see {log}")
                time.sleep(0.1)
            requests = len(sim.requests)
            sent = sum(sim.bytes_sent_by.values()) - sent_before
            if state is not None and (counters.get("runs_used") != 1 or counters.get("jobs_used") != 1):
                raise SystemExit(f"the checkpoint was not used ({counters}); see {log}")
    finally:
        stop(child)
    return Row(mode, changes, latency_ms, runs_s, jobs_s, requests, sent / 1e6)


class Mover:
    """Moves the world by a number of changes: half runs that start, half runs that end (the oldest
    running first); a tenth as many jobs, half new live ones, half live ones that end (the oldest first).
    Live jobs are all at the top of the listing (the world's 5, then the new ones), so they are found by
    reading the top, never by rendering every heavy job."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.live_at_top = LIVE_JOBS
        self.step = 0

    def move(self, changes: int) -> None:
        world = self.world
        for i in range(changes // 2):
            self.step += 1
            world.add_run(
                benchmark_id=f"bmd_{i % BENCHMARKS:02d}", state="running", start_ms=T0 + 2 * 10**9 + self.step
            )
        for rid in self._running()[: changes - changes // 2]:
            world.finish_run(rid, "completed", 300_000, 0.5)
        jobs = changes // 10
        for i in range(jobs // 2):
            self.step += 1
            world.jobs.add(
                benchmark_id=f"bmd_{i % BENCHMARKS:02d}",
                agents=AGENTS,
                create_ms=T0 + 10**11 + self.step,
                state="running",
                n_scenarios=5,
            )
            self.live_at_top += 1
        for jid in self._live()[::-1][: jobs - jobs // 2]:
            world.jobs.finish(jid)

    def _running(self) -> list[str]:
        """Running runs of benchmarks (a job's runs end with their job), oldest first."""
        found: list[str] = []
        cursor = None
        while True:
            page = self.world.list_runs(
                state="running", limit=5000, starting_after=cursor, include_total_count=False
            )
            runs = [json.loads(text) for text in page.runs_json]
            found += [str(run["id"]) for run in runs if run.get("benchmark_id")]
            if not page.has_more or not runs:
                return found[::-1]  # the listing is newest first
            cursor = str(runs[-1]["id"])

    def _live(self) -> list[str]:
        """Live jobs, newest first."""
        top = json.loads(
            self.world.jobs.list_page(limit=self.live_at_top, starting_after=None, include_total_count=False)
        )
        return [
            str(job["id"])
            for job in top["jobs"]
            if job["state"] not in ("completed", "failed", "cancelled", "timeout")
        ]


def main(argv: list[str]) -> int:
    """Run the table; see --help."""
    parser = argparse.ArgumentParser(prog="./dev bench restart", description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--scenarios", type=int, default=500, help="scenarios per job")
    parser.add_argument("--latency-ms", default="50,100", help="fixed latencies, comma-separated")
    parser.add_argument(
        "--changes", default="0,1000,10000", help="changes before each restart, comma-separated"
    )
    parser.add_argument(
        "--jobs-page-size",
        type=int,
        default=100,
        help="RUNLOOP_EXPORTER_JOBS_PAGE_SIZE (5: as heavy as 5 a page)",
    )
    args = parser.parse_args(argv)
    latencies = [float(x) for x in args.latency_ms.split(",")]
    counts = sorted(int(x) for x in args.changes.split(","))
    world = make_world(args.runs, args.jobs, args.scenarios)
    print(
        f"{args.runs} runs, {args.jobs} jobs of {args.scenarios} scenarios x 4 agents; pages of 5000 runs "
        f"and of at most {args.jobs_page_size} jobs"
    )
    with tempfile.TemporaryDirectory() as tmp, Simulator(world) as sim:
        log = Path(tmp, "exporter.log")
        pristine = Path(tmp, "pristine")
        began = time.monotonic()
        make_checkpoint(sim, pristine, log, args.jobs_page_size)
        sizes = ", ".join(
            f"{p.name} {p.stat().st_size / 1e3:.1f} kB" for p in sorted(pristine.glob("*.json.gz"))
        )
        print(f"checkpoint made in {time.monotonic() - began:.1f} s: {sizes}")
        print(
            f"{'mode':>10} {'changes':>7} {'lat_ms':>6} {'runs_s':>7} {'jobs_s':>7} {'requests':>8} {'MB':>9}"
        )
        rows: list[Row] = []
        done = 0
        mover = Mover(world)
        for changes in counts:
            mover.move(changes - done)
            done = changes
            for latency in latencies:
                state = Path(tmp, "state")
                shutil.rmtree(state, ignore_errors=True)
                shutil.copytree(pristine, state)
                rows.append(
                    measure(
                        sim,
                        state,
                        log,
                        mode="checkpoint",
                        changes=changes,
                        latency_ms=latency,
                        jobs_page_size=args.jobs_page_size,
                    )
                )
                _print(rows[-1])
        for latency in latencies:
            rows.append(
                measure(
                    sim,
                    None,
                    log,
                    mode="full read",
                    changes=None,
                    latency_ms=latency,
                    jobs_page_size=args.jobs_page_size,
                )
            )
            _print(rows[-1])
    return 0


def _print(r: Row) -> None:
    changes = "-" if r.changes is None else str(r.changes)
    print(
        f"{r.mode:>10} {changes:>7} {r.latency_ms:>6g} {r.runs_s:>7.2f} {r.jobs_s:>7.2f} {r.requests:>8} {r.mb:>9.2f}",
        flush=True,
    )
