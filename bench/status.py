"""Status page benchmark: what rendering the page costs per snapshot, in time and bytes, as accounts grow.

For each size it builds, in this process and through the exporter's own aggregation (`Totals.add`,
`JobsTotals.add`, `build_snapshot`, `build_jobs_snapshot`), `--benchmarks` benchmarks of finished and
running runs (some failed), and benchmark jobs giving every benchmark `--pairs` agent and model pairs with
`--jobs` scored outcomes each, a few of them now below their mean. Then it renders the page as a sync
publishes it (`render_table`, then `render`) `--repeat` times and prints the time (median and worst),
its CPU time (`cpu_ms`, the median: what the render costs when the machine is shared), the page's size,
what it shows (table rows, sections, agent rows) and what the kept scores hold in memory; `snap_ms` and
`jobs_ms` are what building the two halves of the snapshot took (once per sync, not per render). No
request is made: the page renders from a snapshot, whatever the API costs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import dataclass

from exporter.http import status
from exporter.metrics.agents import AgentCaps, JobsTotals, build_jobs_snapshot
from exporter.metrics.aggregate import (
    DEFAULT_DURATION_BUCKETS,
    DEFAULT_SCORE_BUCKETS,
    GroupKey,
    RunningRun,
    Snapshot,
    Totals,
    build_snapshot,
)
from exporter.runloop.jobs import Job, Outcome
from exporter.runloop.models import Run

NOW_MS = 1_750_000_000_000
HOUR_MS = 3_600_000
RUNS_PER_BENCHMARK = 60  # finished; a fifth of them failed
RUNNING_PER_BENCHMARK = 2
EXCEPTIONS = ("AssertionError", "TimeoutError", "KeyError", "RuntimeError")


@dataclass
class Result:
    benchmarks: int
    pairs: int
    outcomes: int
    snapshot_ms: float
    jobs_snapshot_ms: float
    median_ms: float
    worst_ms: float
    cpu_ms: float
    page_bytes: int
    table_rows: int
    sections: int
    agent_rows: int
    history_mb: float


def build(benchmarks: int, pairs: int, jobs: int, seed: int = 1) -> tuple[Snapshot, float, float, float]:
    """A snapshot with jobs, and how long its two halves took to build (ms), and the kept scores (MB)."""
    rng = random.Random(seed)
    totals = Totals(DEFAULT_SCORE_BUCKETS, DEFAULT_DURATION_BUCKETS)
    running = []
    names = {}
    for b in range(benchmarks):
        bid = f"bmd_{b:05d}"
        names[bid] = f"benchmark {b}"
        failing = rng.random() * 0.4
        for r in range(RUNS_PER_BENCHMARK):
            start = NOW_MS - (r + 2) * HOUR_MS
            state = "failed" if rng.random() < failing else "completed"
            score = round(rng.random(), 4) if state == "completed" else None
            totals.add(
                Run(f"run_{b}_{r}", bid, state, start, 600_000 + r * 1000, score, {}, None), GroupKey(bid)
            )
        for r in range(RUNNING_PER_BENCHMARK):
            running.append(RunningRun(f"live_{b}_{r}", GroupKey(bid), NOW_MS - (r + 1) * 60_000))
    caps = AgentCaps(pairs, 50)
    jobs_totals = JobsTotals(DEFAULT_SCORE_BUCKETS)
    configs = [(f"agent-{p // 5}", f"model-{p % 5}") for p in range(pairs)]
    levels = [0.3 + 0.6 * rng.random() for _ in range(pairs)]
    for b in range(benchmarks):
        for j in range(jobs):
            newest = j == jobs - 1
            outcomes = []
            for p, (agent, model) in enumerate(configs):
                drop = 0.5 if newest and p % 17 == 0 else 1.0  # a few pairs got worse in the newest job
                score = min(1.0, max(0.0, levels[p] * drop + rng.gauss(0, 0.03)))
                failed = rng.randint(0, 5)
                outcomes.append(
                    Outcome(
                        agent,
                        model,
                        f"run_{b}_{j}_{p}",
                        20 - failed,
                        failed,
                        0,
                        score,
                        ((EXCEPTIONS[p % len(EXCEPTIONS)], failed),) if failed else (),
                    )
                )
            create_ms = NOW_MS - (jobs - j) * 6 * HOUR_MS
            job = Job(f"bmj_{b}_{j}", "completed", create_ms, f"bmd_{b:05d}", tuple(outcomes), ())
            jobs_totals.add(job, caps)
    started = time.perf_counter()
    snapshot = build_snapshot(totals, running, names)
    snapshot_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    jobs_snapshot = build_jobs_snapshot(jobs_totals, (), caps, now_s=NOW_MS / 1000)
    jobs_ms = (time.perf_counter() - started) * 1000
    history = sum(
        sys.getsizeof(g.recent.times) + sys.getsizeof(g.recent.scores) + sys.getsizeof(g.recent)
        for g in jobs_totals.groups.values()
    )
    snapshot = Snapshot(snapshot.groups, snapshot.benchmark_names, snapshot.runs, jobs_snapshot)
    return snapshot, snapshot_ms, jobs_ms, history / 1e6


def measure(benchmarks: int, pairs: int, jobs: int, repeat: int) -> Result:
    snapshot, snapshot_ms, jobs_ms, history_mb = build(benchmarks, pairs, jobs)
    last = status.LastSync(NOW_MS / 1000, 1.2, 3, ok=True)
    times, cpu = [], []
    page = b""
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        table = status.render_table(snapshot, NOW_MS / 1000)
        page = status.render(demo=False, last=last, table=table)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    text = page.decode()
    agent_tables = [part.split("</tbody>", 1)[0] for part in text.split('<table class="agents">')[1:]]
    return Result(
        benchmarks,
        pairs,
        pairs * jobs * benchmarks,
        snapshot_ms,
        jobs_ms,
        statistics.median(times),
        max(times),
        statistics.median(cpu),
        len(page),
        text.split("</table>", 1)[0].count("<tr") - 1,  # less the head's row
        text.count('<section class="bench"'),
        sum(table.count("<tr") - 1 for table in agent_tables),
        history_mb,
    )


def main(argv: list[str]) -> int:
    """Run the table; see --help."""
    parser = argparse.ArgumentParser(prog="./dev bench status", description=__doc__)
    parser.add_argument("--sizes", default="10,100,1000", help="numbers of benchmarks, comma-separated")
    parser.add_argument("--pairs", type=int, default=50, help="agent and model pairs per benchmark")
    parser.add_argument("--jobs", type=int, default=8, help="jobs per benchmark (scored outcomes per pair)")
    parser.add_argument("--repeat", type=int, default=20, help="renders per size")
    args = parser.parse_args(argv)
    print(f"{args.pairs} agent/model pairs per benchmark, {args.jobs} outcomes each; {args.repeat} renders")
    print(
        f"{'benchmarks':>10} {'outcomes':>8} {'snap_ms':>7} {'jobs_ms':>7} {'render_ms':>9} {'worst_ms':>8} "
        f"{'cpu_ms':>6} {'page_KB':>7} {'rows':>5} {'sections':>8} {'agent_rows':>10} {'scores_MB':>9}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        r = measure(size, args.pairs, args.jobs, args.repeat)
        print(
            f"{r.benchmarks:>10} {r.outcomes:>8} {r.snapshot_ms:>7.1f} {r.jobs_snapshot_ms:>7.1f} "
            f"{r.median_ms:>9.1f} {r.worst_ms:>8.1f} {r.cpu_ms:>6.1f} {r.page_bytes / 1024:>7.0f} {r.table_rows:>5} "
            f"{r.sections:>8} {r.agent_rows:>10} {r.history_mb:>9.1f}",
            flush=True,
        )
    return 0
