"""The real exporter process against the simulator: every series, right to the last sample."""

from __future__ import annotations

import subprocess
import zlib
from collections.abc import Callable
from typing import Any

import httpx

from exporter.simulator import Simulator, World
from tests.support.exporter_process import Exporter
from tests.support.runs_oracle import expected_samples
from tests.support.samples import assert_samples, benchmark_part, parse, sample

NOW_MS = 1_760_000_000_000
AWKWARD_NAME = 'Alpha "quoted" \\ back\\slash\nsecond line'
NAMES = {"bmd_alpha": AWKWARD_NAME, "bmd_beta": "Beta ünïcode ✓"}


def seed(world: World) -> list[dict[str, Any]]:
    """A known dataset; returns the valid runs as the API serves them."""
    for bid, name in NAMES.items():
        world.add_benchmark(bid, name)
    specs: list[dict[str, Any]] = [
        # alpha: scores on and around bucket bounds, durations across buckets
        {
            "benchmark_id": "bmd_alpha",
            "state": "completed",
            "start_ms": NOW_MS - 90_000_000,
            "duration_ms": 60_000,
            "score": 0.5,
        },
        {
            "benchmark_id": "bmd_alpha",
            "state": "completed",
            "start_ms": NOW_MS - 80_000_000,
            "duration_ms": 60_001,
            "score": 1.0,
        },
        {
            "benchmark_id": "bmd_alpha",
            "state": "completed",
            "start_ms": NOW_MS - 70_000_000,
            "duration_ms": 7_200_000,
            "score": 0.05,
        },
        {
            "benchmark_id": "bmd_alpha",
            "state": "completed",
            "start_ms": NOW_MS - 60_000_000,
            "duration_ms": 3_000,
            "score": 0.999,
        },
        {
            "benchmark_id": "bmd_alpha",
            "state": "completed",
            "start_ms": NOW_MS - 10_000_000,
            "duration_ms": None,
            "score": 0.3,
        },
        {
            "benchmark_id": "bmd_alpha",
            "state": "completed",
            "start_ms": NOW_MS - 9_000_000,
            "duration_ms": 100_000,
            "score": None,
        },
        {
            "benchmark_id": "bmd_alpha",
            "state": "failed",
            "start_ms": NOW_MS - 50_000_000,
            "duration_ms": 90_000_000,
        },
        {
            "benchmark_id": "bmd_alpha",
            "state": "canceled",
            "start_ms": NOW_MS - 40_000_000,
            "duration_ms": 600_000,
        },
        {"benchmark_id": "bmd_alpha", "state": "running", "start_ms": NOW_MS - 5_000_000},
        {"benchmark_id": "bmd_alpha", "state": "running", "start_ms": NOW_MS - 1_000_000},
        # beta: only failures and a state new to us
        {
            "benchmark_id": "bmd_beta",
            "state": "failed",
            "start_ms": NOW_MS - 30_000_000,
            "duration_ms": 1_800_000,
        },
        {"benchmark_id": "bmd_beta", "state": "paused", "start_ms": NOW_MS - 20_000_000},
        # a benchmark whose name cannot be looked up
        {
            "benchmark_id": "bmd_nameless",
            "state": "completed",
            "start_ms": NOW_MS - 3_000_000,
            "duration_ms": 120_000,
            "score": 0.7,
        },
        # runs from benchmark jobs: no benchmark_id at all
        {
            "benchmark_id": None,
            "state": "completed",
            "start_ms": NOW_MS - 2_000_000,
            "duration_ms": 1_000_000,
            "score": 0.8,
        },
        {"benchmark_id": None, "state": "running", "start_ms": NOW_MS - 500_000},
    ]
    for spec in specs:
        world.add_run(
            benchmark_id=spec["benchmark_id"],
            state=spec["state"],
            start_ms=spec["start_ms"],
            duration_ms=spec.get("duration_ms"),
            score=spec.get("score"),
            name="run name must not leak",
            metadata={"team": "evals"},
            environment_variables={"TOKEN": "env-secret-value"},
            secrets_provided={"DB": "SECRET_NAME_VALUE"},
        )
    # Invalid records: skipped and counted, never part of any figure.
    world.add_raw_run(
        {
            "id": "bmr_bad_score",
            "benchmark_id": "bmd_alpha",
            "state": "completed",
            "start_time_ms": NOW_MS,
            "duration_ms": 1,
            "score": "high",
            "metadata": {},
        }
    )
    world.add_raw_run(
        {
            "id": "bmr_bad_duration",
            "benchmark_id": "bmd_alpha",
            "state": "failed",
            "start_time_ms": NOW_MS,
            "duration_ms": -5,
            "metadata": {},
        }
    )
    world.add_raw_run(
        {"id": "bmr_no_state", "benchmark_id": "bmd_beta", "start_time_ms": NOW_MS, "metadata": {}}
    )
    return valid_runs(world)


def valid_runs(world: World) -> list[dict[str, Any]]:
    return [r for r in world.runs() if not str(r["id"]).startswith("bmr_bad") and r["id"] != "bmr_no_state"]


def check_figures(scraped: dict[Any, float], runs: list[dict[str, Any]], names: dict[str, str]) -> None:
    assert_samples(benchmark_part(scraped), expected_samples(runs, names))


def test_every_series_matches_the_dataset_and_follows_changes(
    world: World, simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    runs = seed(world)
    exporter = start_exporter(env={"RUNLOOP_EXPORTER_PAGE_SIZE": "4"})
    exporter.wait_until(lambda: exporter.get("/readyz").status_code == 200, what="ready")
    scraped = exporter.wait_for_sync()
    known_names = dict(NAMES)
    check_figures(scraped, runs, known_names)

    # the exporter's own series
    assert sample(scraped, "runloop_up") == 1
    assert sample(scraped, "runloop_exporter_invalid_records_total", reason="invalid_score") == 1
    assert sample(scraped, "runloop_exporter_invalid_records_total", reason="invalid_duration") == 1
    assert sample(scraped, "runloop_exporter_invalid_records_total", reason="missing_field") == 1
    assert (sample(scraped, "runloop_exporter_last_successful_sync_timestamp_seconds") or 0) > NOW_MS / 1000
    assert (sample(scraped, "runloop_exporter_sync_duration_seconds_count") or 0) >= 1
    assert (
        sample(scraped, "runloop_exporter_api_requests_total", path="/v1/benchmark_runs", code="200") or 0
    ) >= 5
    assert sample(scraped, "runloop_exporter_api_requests_total", path="/v1/benchmarks/{id}", code="404") == 1
    assert any(k[0] == "runloop_exporter_build_info" for k in scraped)

    # the world changes: runs finish and fail, new ones start, a new benchmark appears
    running = [
        r for r in world.runs() if r.get("state") == "running" and r.get("benchmark_id") == "bmd_alpha"
    ]
    world.finish_run(str(running[0]["id"]), "completed", duration_ms=4_000_000, score=0.95)
    world.finish_run(str(running[1]["id"]), "failed", duration_ms=30_000)
    world.add_benchmark("bmd_gamma", "Gamma")
    world.add_run(benchmark_id="bmd_gamma", state="running", start_ms=NOW_MS - 42_000)
    world.add_run(benchmark_id="bmd_beta", state="canceled", start_ms=NOW_MS - 1_000, duration_ms=500)
    known_names["bmd_gamma"] = "Gamma"
    scraped = exporter.wait_for_sync()
    check_figures(scraped, valid_runs(world), known_names)
    # the invalid records were counted once, not once per sync
    assert sample(scraped, "runloop_exporter_invalid_records_total", reason="invalid_score") == 1


def test_nothing_secret_or_per_run_reaches_metrics_or_logs(
    world: World, start_exporter: Callable[..., Exporter]
) -> None:
    seed(world)
    exporter = start_exporter()
    exporter.wait_for_sync()
    text = exporter.get("/metrics").text + exporter.logs()
    for needle in (
        "env-secret-value",
        "SECRET_NAME_VALUE",
        "TOKEN",
        "run name must not leak",
        "evals",
        "sim-key",
    ):
        assert needle not in text
    for run in world.runs():
        assert str(run["id"]) not in exporter.get("/metrics").text


def test_promtool_check_metrics_is_silent_on_a_live_scrape(
    world: World, start_exporter: Callable[..., Exporter], promtool: str
) -> None:
    seed(world)
    exporter = start_exporter()
    exporter.wait_for_sync()
    text = exporter.get("/metrics").text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_readyz_503_until_first_sync_and_endpoints(
    world: World, simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    simulator.faults.fail_next(1000, 503)
    exporter = start_exporter()
    assert exporter.get("/readyz").status_code == 503
    assert exporter.get("/healthz").status_code == 200
    landing = exporter.get("/")
    assert landing.status_code == 200
    assert 'href="/metrics"' in landing.text
    assert exporter.get("/nope").status_code == 404
    simulator.faults.clear()
    exporter.wait_until(
        lambda: exporter.get("/readyz").status_code == 200, timeout=30, what="ready after recovery"
    )


def test_gzip_scrape_is_one_valid_stream(world: World, start_exporter: Callable[..., Exporter]) -> None:
    seed(world)
    exporter = start_exporter()
    exporter.wait_for_sync()
    plain = httpx.get(f"{exporter.url}/metrics", headers={"Accept-Encoding": "identity"}).text
    with httpx.stream("GET", f"{exporter.url}/metrics", headers={"Accept-Encoding": "gzip"}) as zipped:
        assert zipped.headers["Content-Encoding"] == "gzip"
        raw = b"".join(zipped.iter_raw())
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = inflate.decompress(raw).decode()
    assert inflate.eof  # one complete gzip stream...
    assert inflate.unused_data == b""  # ...and nothing after it
    # The whole exposition, snapshot and self-metrics: the same families in the same order as the plain
    # body (the self-metrics' values move between two scrapes; their names do not).
    assert families(text) == families(plain)
    assert "runloop_up" in families(text)
    scraped = parse(text)
    assert benchmark_part(scraped) == benchmark_part(parse(plain)) != {}
    assert sample(scraped, "runloop_up") == 1


def families(text: str) -> list[str]:
    """The metric families of an exposition, in order."""
    return [line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")]


def test_accept_picks_openmetrics_or_text_with_the_same_figures(
    world: World, start_exporter: Callable[..., Exporter]
) -> None:
    """Prometheus asks for OpenMetrics first and gets it (gzip too); curl gets the text format."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    seed(world)
    exporter = start_exporter()
    exporter.wait_for_sync()
    accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
        "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    plain = httpx.get(f"{exporter.url}/metrics", headers={"Accept-Encoding": "identity"})
    assert plain.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# EOF" not in plain.text
    om = httpx.get(f"{exporter.url}/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"})
    assert om.headers["Content-Type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    assert om.headers["Content-Encoding"] == "gzip"  # httpx inflated it for om.text
    assert om.text.endswith("# EOF\n")
    om_samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(om.text)  # type: ignore[no-untyped-call]
        for s in family.samples
    }
    assert benchmark_part(om_samples) == benchmark_part(parse(plain.text)) != {}
    assert om_samples[("runloop_up", frozenset())] == 1
    assert ("runloop_exporter_syncs_total", frozenset({("result", "success")})) in om_samples
