"""Decode benchmark: one page of heavy jobs, and one of runs, decoded by each candidate decoder.

Why exporter/runloop/decode.py uses msgspec into typed records: this prints, for a page of jobs as the
jobs sync asks for it (near TARGET_PAGE_BYTES, jobs of `--scenarios` scenarios and `--agents` agent
configs, from the simulator's own rendering) and for a page of 5,000 runs, the median CPU time of
`json.loads`, orjson (when installed: it is no dependency, `pip install orjson` to compare), msgspec
into plain objects, msgspec into the exporter's typed records (the page whole, and split record by
record as when one record does not fit), and end to end, decoding plus validating every record
(`parse_job`, `parse_run`) as the sync does, the old way (`json.loads`) and the new. `peak_MB` is the
peak of memory allocated while decoding (tracemalloc, measured apart from the timings).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import msgspec

from bench.jobs import make_world
from exporter.runloop.client import JOBS, RUNS
from exporter.runloop.decode import plain_page
from exporter.runloop.jobs import parse_job
from exporter.runloop.models import parse_run
from exporter.simulator import World
from exporter.sync.jobpages import TARGET_PAGE_BYTES


def jobs_page(scenarios: int, agents: int) -> bytes:
    """A page of ended and live jobs near TARGET_PAGE_BYTES, as the simulator serves it."""
    world = make_world(200, scenarios, agents)
    sample = world.jobs.list_page(limit=40, starting_after=None, include_total_count=False)
    limit = max(1, min(200, TARGET_PAGE_BYTES * 40 // len(sample)))  # as PageSizer sizes them
    return world.jobs.list_page(limit=limit, starting_after=None, include_total_count=True)


def runs_page() -> bytes:
    """A page of 5,000 runs (the API's largest), with metadata, as the simulator serves it."""
    world = World(seed=1)
    ids = [f"bmd_{i:03d}" for i in range(100)]
    world.add_many_finished(5000, ids, start_ms=1_700_000_000_000)
    page = world.list_runs(limit=5000, include_total_count=True)
    return b'{"runs":[' + ",".join(page.runs_json).encode() + b'],"has_more":true,"total_count":5000}'


def median_cpu_ms(work: Callable[[], object], repeat: int) -> float:
    work()
    times = []
    for _ in range(repeat):
        gc.collect()
        started = time.process_time()  # CPU time: the machine is shared, wall time would count others
        work()
        times.append(time.process_time() - started)
    return statistics.median(times) * 1000


def peak_mb(work: Callable[[], object]) -> float:
    gc.collect()
    tracemalloc.start()
    kept = work()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del kept
    return peak / 1e6


def candidates(
    body: bytes, key: str, parse: Callable[[Any], object]
) -> list[tuple[str, Callable[[], object]]]:
    wire = JOBS if key == "jobs" else RUNS
    endpoint = f"/v1/benchmark_{key}"
    plain = msgspec.json.Decoder()
    out: list[tuple[str, Callable[[], object]]] = [("json.loads", lambda: json.loads(body))]
    try:
        orjson: Any = importlib.import_module("orjson")
        out.append(("orjson.loads", lambda: orjson.loads(body)))
    except ImportError:
        pass
    out += [
        ("msgspec, plain objects", lambda: plain.decode(body)),
        ("msgspec, typed records", lambda: wire.page(body, endpoint)),
        ("msgspec, typed, split", lambda: wire._split(body, endpoint)),  # what a page with a bad record costs
        (
            f"json.loads + {parse.__name__}",
            lambda: [parse(r) for r in plain_page(json.loads(body), key)[0]],
        ),
        (f"typed + {parse.__name__}", lambda: [parse(r) for r in wire.page(body, endpoint)[0]]),
    ]
    return out


def main(argv: list[str]) -> int:
    """Print the table; see --help."""
    parser = argparse.ArgumentParser(prog="./dev bench decode", description=__doc__)
    parser.add_argument("--scenarios", type=int, default=500, help="scenarios per job")
    parser.add_argument("--agents", type=int, default=4, help="agent configs per job")
    parser.add_argument("--repeat", type=int, default=15, help="timings per decoder (the median is shown)")
    args = parser.parse_args(argv)
    pages = [
        ("jobs", jobs_page(args.scenarios, args.agents), parse_job),
        ("runs", runs_page(), parse_run),
    ]
    for key, body, parse in pages:
        records = len(plain_page(json.loads(body), key)[0])
        print(f"\na page of {records} {key}, {len(body) / 1e6:.2f} MB")
        print(f"{'decoder':<32} {'cpu_ms':>7} {'MB/s':>6} {'peak_MB':>7}")
        for name, work in candidates(body, key, parse):
            ms = median_cpu_ms(work, args.repeat)
            print(f"{name:<32} {ms:>7.1f} {len(body) / 1e3 / ms:>6.0f} {peak_mb(work):>7.1f}", flush=True)
    return 0
