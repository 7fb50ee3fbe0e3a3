"""50 concurrent scrapers for 20 s while syncs run and the world keeps changing.

Every run the world holds is consistent: a finished run always has a duration, a completed one always
a score. So within one scrape, for every benchmark, each terminal state's duration histogram counts
exactly that state's runs and the score histogram counts exactly the completed runs. A scrape that
mixed two snapshots (counts of one sync, histograms of another) breaks those equalities at once.
"""

from __future__ import annotations

import gzip
import multiprocessing
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from exporter.simulator import World
from tests.support.exporter_process import Exporter
from tests.support.runs_oracle import STATES, TERMINAL, expected_samples
from tests.support.samples import Samples, benchmark_part, parse, sample

SCRAPERS = 50
PROCESSES = 5
DURATION_S = 20.0  # long enough for a dozen syncs to publish under the scrapers, 1.5 s apart
NOW_MS = 1_760_000_000_000


@dataclass
class Churn:
    """Starts and finishes runs (and now and then adds a benchmark) until stopped."""

    world: World
    benchmarks: list[str]
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    running: list[str] = field(default_factory=list)
    changes: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def step(self) -> None:
        rng = self.rng
        if rng.random() < 0.01:
            bid = f"bmd_load_{len(self.benchmarks):03d}"
            self.world.add_benchmark(bid, f"Load {len(self.benchmarks)}")
            self.benchmarks.append(bid)
        if self.running and (len(self.running) > 30 or rng.random() < 0.5):
            run_id = self.running.pop(rng.randrange(len(self.running)))
            state = rng.choice(("completed", "completed", "failed", "canceled"))
            score = round(rng.random(), 4) if state == "completed" else None
            self.world.finish_run(run_id, state, duration_ms=rng.randint(1_000, 90_000_000), score=score)
        else:
            owner: str | None = rng.choice([*self.benchmarks, None])
            start = NOW_MS + self.changes
            self.running.append(self.world.add_run(benchmark_id=owner, state="running", start_ms=start))
        self.changes += 1

    def loop(self) -> None:
        while not self.stop.wait(0.01):
            self.step()


def check_scrape(samples: Samples) -> int:
    """Raise AssertionError unless the scrape is one consistent snapshot; return its number of runs."""
    runs: dict[str | None, dict[str, float]] = {}
    for (name, labels), value in samples.items():
        if name == "runloop_benchmark_runs":
            lab = dict(labels)
            runs.setdefault(lab.get("benchmark_id"), {})[lab["state"]] = value
    for bid, counts in runs.items():
        assert set(STATES) <= counts.keys(), f"{bid}: states missing from {counts}"
        ident = {} if bid is None else {"benchmark_id": bid}
        for state in TERMINAL:
            hist = "runloop_benchmark_run_duration_seconds"
            got = sample(samples, f"{hist}_count", **ident, state=state)
            assert got == counts[state], f"{bid} {state}: {counts[state]} runs, {got} durations"
            got = sample(samples, f"{hist}_bucket", **ident, state=state, le="+Inf")
            assert got == counts[state], f"{bid} {state}: {counts[state]} runs, +Inf bucket {got}"
        got = sample(samples, "runloop_benchmark_run_score_count", **ident)
        assert got == counts["completed"], f"{bid}: {counts['completed']} completed, {got} scores"
        if bid is not None:
            assert any(
                name == "runloop_benchmark_info" and ("benchmark_id", bid) in labels
                for name, labels in samples
            ), f"{bid}: no runloop_benchmark_info"
    assert sample(samples, "runloop_up") == 1, "runloop_up is not 1: a sync failed"
    return int(sum(sum(counts.values()) for counts in runs.values()))


@dataclass
class Scraper:
    """One Prometheus: scrapes in a loop, gzip and plain in turn, checking each body."""

    url: str
    until: float
    scrapes: int = 0
    errors: list[str] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < self.until:
                try:
                    self.totals.append(check_scrape(parse(self.fetch(client, zipped=self.scrapes % 2 == 0))))
                except Exception as exc:  # every failure is a finding: collect, do not stop
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                self.scrapes += 1

    def fetch(self, client: httpx.Client, *, zipped: bool) -> str:
        encoding = "gzip" if zipped else "identity"
        with client.stream("GET", f"{self.url}/metrics", headers={"Accept-Encoding": encoding}) as response:
            raw = b"".join(response.iter_raw())
            assert response.status_code == 200, f"HTTP {response.status_code}"
            got = response.headers.get("Content-Encoding")
            assert got == ("gzip" if zipped else None), f"Content-Encoding {got} for {encoding}"
        return (gzip.decompress(raw) if zipped else raw).decode()


def scrape_for(url: str, seconds: float, threads: int) -> list[tuple[int, list[str], list[int]]]:
    """In a worker process: `threads` scrapers for `seconds`; per scraper (scrapes, errors, totals)."""
    until = time.monotonic() + seconds
    scrapers = [Scraper(url, until) for _ in range(threads)]
    running = [threading.Thread(target=s.run, name=f"scraper-{i}") for i, s in enumerate(scrapers)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    return [(s.scrapes, s.errors, s.totals) for s in scrapers]


@pytest.mark.slow
def test_fifty_scrapers_for_twenty_seconds_see_only_whole_snapshots(
    world: World, start_exporter: Callable[..., Exporter]
) -> None:
    benchmarks = [f"bmd_load_{i:03d}" for i in range(8)]
    for i, bid in enumerate(benchmarks):
        world.add_benchmark(bid, f"Load {i}")
    world.add_many_finished(5_000, benchmarks, NOW_MS - 86_400_000, seed=3)
    churn = Churn(world, benchmarks)
    for _ in range(20):
        churn.step()
    # A sync takes milliseconds alone, but 50 scrapers on a small CI machine can starve it for a while.
    exporter = start_exporter(
        env={"RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": "1.5", "RUNLOOP_EXPORTER_SYNC_TIMEOUT_SECONDS": "1.4"}
    )
    before = exporter.wait_for_sync(after=0)

    # The scrapers run in processes of their own, so that parsing 50 bodies at once competes neither
    # with the simulator nor with the churn for this process's interpreter lock.
    changer = threading.Thread(target=churn.loop, name="churn")
    changer.start()
    spawn = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(PROCESSES, mp_context=spawn) as pool:
            jobs = [
                pool.submit(scrape_for, exporter.url, DURATION_S, SCRAPERS // PROCESSES)
                for _ in range(PROCESSES)
            ]
            results = [r for job in jobs for r in job.result(timeout=DURATION_S + 120)]
    finally:
        churn.stop.set()
        changer.join()

    assert len(results) == SCRAPERS
    errors = [e for _, errs, _ in results for e in errs]
    scrapes = sum(n for n, _, _ in results)
    assert errors == [], f"{len(errors)} of {scrapes} scrapes failed, e.g. {errors[:3]}"
    assert all(n >= 10 for n, _, _ in results), [n for n, _, _ in results]
    # Runs are never deleted, so each scraper must see the number of runs grow, never shrink.
    for _, _, totals in results:
        assert totals == sorted(totals)
    seen_totals = {t for _, _, totals in results for t in totals}
    assert len(seen_totals) >= 10, "the world hardly changed during the test"
    after = exporter.scrape()
    syncs = sample(after, "runloop_exporter_syncs_total", result="success") or 0
    assert syncs - (sample(before, "runloop_exporter_syncs_total", result="success") or 0) >= 5
    assert sample(after, "runloop_exporter_syncs_total", result="failure") == 0
    assert '"level": "error"' not in exporter.logs()

    # Once the world stands still, the next sync shows it exactly: the next to start, that is. A sync
    # that ends after `after` may have begun while the churn still ran (syncs are slow under the load),
    # so wait_for_sync() waits for two more: the second began after the world stood still.
    final = exporter.wait_for_sync()
    names = {bid: f"Load {int(bid.rsplit('_', 1)[1])}" for bid in churn.benchmarks}
    want = expected_samples(world.runs(), names)
    got = benchmark_part(final)
    assert got.keys() == want.keys()
    assert {k: v for k, v in want.items() if got[k] != pytest.approx(v)} == {}


def test_scrapers_that_hang_up_leave_only_json_log_lines(
    world: World, start_exporter: Callable[..., Exporter]
) -> None:
    """Prometheus cancels a scrape at scrape_timeout; that must not print raw tracebacks into JSON logs."""
    world.add_benchmark("bmd_load_000", "Load 0")
    world.add_many_finished(2_000, ["bmd_load_000"], NOW_MS, seed=1)
    exporter = start_exporter()
    exporter.wait_for_sync(after=0)
    host, port = "127.0.0.1", int(exporter.url.rsplit(":", 1)[1])
    for _ in range(20):
        with socket.create_connection((host, port)) as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
            conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: exporter\r\n\r\n")
    exporter.wait_for_sync()
    lines = exporter.logs().splitlines()
    assert lines
    assert [line for line in lines if not line.startswith("{")] == []
