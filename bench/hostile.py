"""Hostile clients: scrape latency, threads and memory of the exporter under a flood of half-sent requests.

The real exporter runs as a child process against the simulator (in this process) on 127.0.0.1. For
each flood size, this process opens that many connections that send `GET /metrics HTTP/1.1\\r\\n` and
then nothing (a slowloris, or a scraper bug), waits a little, and measures scrapes made meanwhile on
fresh connections (p50, p99, failures), the exporter's threads and RSS (now and peak), and how the
syncs went. Then it closes every hostile connection at once and measures the scrapes and syncs of the
seconds after. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.support import free_port
from exporter.simulator import DEFAULT_API_KEY, Simulator, World

T0 = 1_700_000_000_000
SCRAPES = 40
SCRAPE_TIMEOUT_S = 5.0
HALF_SENT = b"GET /metrics HTTP/1.1\r\n"


@dataclass
class Row:
    """What one flood size did to the exporter."""

    hostile: int
    still_open: int
    threads: int
    rss_mb: float
    peak_mb: float
    p50_ms: float
    p99_ms: float
    failed: int
    syncs_ok: int
    syncs_failed: int
    after_p99_ms: float
    after_failed: int
    after_syncs_failed: int


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a mapping (Linux)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def kib_to_mb(value: str) -> float:
    return int(value.split(maxsplit=1)[0]) / 1024


def syncs(text: str) -> tuple[float, float]:
    """(successful, failed) syncs from a scrape."""
    found = {"success": 0.0, "failure": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "runloop_exporter_syncs_total":
                found[s.labels["result"]] = s.value
    return found["success"], found["failure"]


def scrape(url: str) -> tuple[float | None, str]:
    """One gzip scrape on a fresh connection: seconds taken (None when it failed) and the body."""
    started = time.perf_counter()
    try:
        response = httpx.get(f"{url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=SCRAPE_TIMEOUT_S)
    except httpx.HTTPError:
        return None, ""
    if response.status_code != 200:
        return None, ""
    return time.perf_counter() - started, response.text


def scrapes(url: str, n: int, pause_s: float) -> tuple[list[float], int, str]:
    """n scrapes: the times of those that worked, the number that failed, the last good body."""
    times: list[float] = []
    failed = 0
    last = ""
    for _ in range(n):
        took, body = scrape(url)
        if took is None:
            failed += 1
        else:
            times.append(took)
            last = body
        time.sleep(pause_s)
    return times, failed, last


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000


def open_flood(port: int, n: int) -> list[socket.socket]:
    flood = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(HALF_SENT)
        flood.append(sock)
    return flood


def count_open(flood: list[socket.socket]) -> int:
    """Hostile connections the exporter has not closed (a closed one reads as EOF or a reset)."""
    still = 0
    for sock in flood:
        sock.setblocking(False)
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            still += 1
            continue
        except OSError:
            continue
        if data and b"HTTP/1." not in data:
            still += 1
    return still


def measure(url: str, pid: int, port: int, hostile: int, hold_s: float) -> Row:
    before_ok, before_failed = syncs(scrapes(url, 1, 0)[2])
    flood = open_flood(port, hostile)
    try:
        time.sleep(hold_s)
        times, failed, last = scrapes(url, SCRAPES, 0.05)
        status = proc_status(pid)
        ok, bad = syncs(last) if last else (before_ok, before_failed)
        still_open = count_open(flood)
    finally:
        for sock in flood:
            sock.close()
    after, after_failed, after_last = scrapes(url, 20, 0.25)
    _, after_bad = syncs(after_last) if after_last else (0.0, bad)
    peak = kib_to_mb(proc_status(pid)["VmHWM"])
    return Row(
        hostile=hostile,
        still_open=still_open,
        threads=int(status["Threads"]),
        rss_mb=kib_to_mb(status["VmRSS"]),
        peak_mb=peak,
        p50_ms=statistics.median(times) * 1000 if times else float("nan"),
        p99_ms=p99(times),
        failed=failed,
        syncs_ok=int(ok - before_ok),
        syncs_failed=int(bad - before_failed),
        after_p99_ms=p99(after),
        after_failed=after_failed,
        after_syncs_failed=int(after_bad - bad),
    )


def make_world(benchmarks: int, runs: int) -> World:
    world = World(order="newest_first", seed=5)
    ids = [f"bmd_{i:04d}" for i in range(benchmarks)]
    for i, bid in enumerate(ids):
        world.add_benchmark(bid, f"Bench {i}")
    world.add_many_finished(runs, ids, T0, seed=5)
    return world


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: Sequence[str]) -> int:
    """Print one row per flood size; see --help."""
    parser = argparse.ArgumentParser(prog="./dev bench hostile", description=__doc__)
    parser.add_argument("--sizes", default="0,1000,5000", help="hostile connections, comma-separated")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds to hold the flood before scraping")
    parser.add_argument("--benchmarks", type=int, default=100)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--env", action="append", default=[], help="extra NAME=VALUE for the exporter")
    args = parser.parse_args(argv)
    raise_fd_limit()
    world = make_world(args.benchmarks, args.runs)
    port = free_port()
    with Simulator(world) as sim, tempfile.TemporaryFile("w+") as log:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOOP")}
        env |= {
            "RUNLOOP_BASE_URL": sim.url,
            "RUNLOOP_API_KEY": DEFAULT_API_KEY,
            "RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": "1",
            "RUNLOOP_EXPORTER_LOG_LEVEL": "warning",
        }
        env |= dict(item.split("=", 1) for item in args.env)
        child = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--address", "127.0.0.1", "--port", str(port)],
            env=env,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and syncs(scrapes(url, 1, 0.2)[2])[0] < 1:
                pass
            print(
                f"{'hostile':>7} {'open':>5} {'threads':>7} {'rss_MB':>6} {'peak_MB':>7} "
                f"{'p50_ms':>7} {'p99_ms':>7} {'failed':>6} {'syncs_ok':>8} {'syncs_bad':>9} "
                f"{'after_p99_ms':>12} {'after_failed':>12} {'after_syncs_bad':>15}"
            )
            for size in (int(s) for s in args.sizes.split(",")):
                r = measure(url, child.pid, port, size, args.hold)
                print(
                    f"{r.hostile:>7} {r.still_open:>5} {r.threads:>7} {r.rss_mb:>6.1f} {r.peak_mb:>7.1f} "
                    f"{r.p50_ms:>7.1f} {r.p99_ms:>7.1f} {r.failed:>6} {r.syncs_ok:>8} {r.syncs_failed:>9} "
                    f"{r.after_p99_ms:>12.1f} {r.after_failed:>12} {r.after_syncs_failed:>15}",
                    flush=True,
                )
        finally:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return 0
