"""`runloop-exporter --demo`, the README's first command: every contract series, with no key."""

from __future__ import annotations

from pathlib import Path

from tests.support.exporter_process import Exporter
from tests.support.samples import sample
from tests.support.waiting import wait_until

CONTRACT = [
    "runloop_benchmark_runs",
    "runloop_benchmark_run_duration_seconds_bucket",
    "runloop_benchmark_run_duration_seconds_sum",
    "runloop_benchmark_run_duration_seconds_count",
    "runloop_benchmark_run_score_bucket",
    "runloop_benchmark_run_score_sum",
    "runloop_benchmark_run_score_count",
    "runloop_benchmark_last_completed_run_score",
    "runloop_benchmark_last_completed_run_timestamp_seconds",
    "runloop_benchmark_oldest_running_run_start_timestamp_seconds",
    "runloop_benchmark_info",
    "runloop_up",
    "runloop_exporter_last_successful_sync_timestamp_seconds",
    "runloop_exporter_sync_duration_seconds_count",
    "runloop_exporter_syncs_total",
    "runloop_exporter_api_requests_total",
    "runloop_exporter_invalid_records_total",
    "runloop_exporter_build_info",
]


def test_demo_serves_every_series_within_ten_seconds(tmp_path: Path) -> None:
    exporter = Exporter(["--demo"]).start(tmp_path)
    try:
        # Ten seconds is the promise of the README's quick start: a bound on behaviour, not a benchmark.
        wait_until(
            lambda: exporter.get("/readyz").status_code == 200, timeout=10, what="the demo to be ready"
        )
        scraped = exporter.scrape()
        names = {name for name, _ in scraped}
        assert [name for name in CONTRACT if name not in names] == []
        assert sample(scraped, "runloop_up") == 1
        states = {dict(labels).get("state") for name, labels in scraped if name == "runloop_benchmark_runs"}
        assert {"running", "completed", "failed", "canceled"} <= states
    finally:
        assert exporter.stop() == 0
