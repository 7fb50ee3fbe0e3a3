"""`runloop-exporter --demo`, the README's first command: every contract series (runs and jobs), with no key."""

from __future__ import annotations

from pathlib import Path

from tests.support.deploy import CONTRACT
from tests.support.exporter_process import Exporter
from tests.support.samples import sample


def test_demo_serves_every_series_within_ten_seconds(tmp_path: Path) -> None:
    exporter = Exporter(["--demo"]).start(tmp_path)
    try:
        # Ten seconds is the promise of the README's quick start: a bound on behaviour, not a benchmark.
        exporter.wait_until(
            lambda: exporter.get("/readyz").status_code == 200, timeout=10, what="the demo to be ready"
        )
        scraped = exporter.scrape()
        names = {name for name, _ in scraped}
        assert sorted(CONTRACT - names) == []
        assert sample(scraped, "runloop_up") == 1
        states = {dict(labels).get("state") for name, labels in scraped if name == "runloop_benchmark_runs"}
        assert {"running", "completed", "failed", "canceled"} <= states
    finally:
        assert exporter.stop() == 0
