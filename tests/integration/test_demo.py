"""`runloop-exporter --demo`, the README's first command: every contract series (runs and jobs), with no key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.deploy import CONTRACT
from tests.support.exporter_process import Exporter
from tests.support.samples import sample
from tests.support.waiting import wait_until


def test_demo_serves_every_series_within_ten_seconds(tmp_path: Path) -> None:
    exporter = Exporter(["--demo"]).start(tmp_path)
    try:
        # Ten seconds is the promise of the README's quick start: a bound on behaviour, not a benchmark.
        # The runs come first (/readyz), the jobs right after them: every series within the ten seconds.
        def missing() -> list[str]:
            return sorted(CONTRACT - {name for name, _ in exporter.scrape()})

        exporter.wait_until(lambda: exporter.get("/readyz").status_code == 200, timeout=10, what="/readyz")
        exporter.wait_until(lambda: not missing(), timeout=10, what="every contract series")
        scraped = exporter.scrape()
        assert missing() == []
        assert sample(scraped, "runloop_up") == 1
        states = {dict(labels).get("state") for name, labels in scraped if name == "runloop_benchmark_runs"}
        assert {"running", "completed", "failed", "canceled"} <= states
    finally:
        assert exporter.stop() == 0


# Labels Prometheus sets on every target (job, instance) and the Prometheus Operator adds (endpoint: the
# port's name, namespace, service, pod, container). With honor_labels false, which the chart's
# ServiceMonitor keeps, a scraped label of one of these names is renamed exported_<name>, and every query
# that names it reads the target's value instead: the dashboard's API panel once folded every path into
# the port's name that way.
TARGET_LABELS = {"job", "instance", "endpoint", "namespace", "service", "pod", "container"}


def test_no_series_carries_a_label_the_scrape_sets(tmp_path: Path) -> None:
    """Every series of a scrape with every optional label switched on: runs, jobs, self-metrics."""
    exporter = Exporter(["--demo", "--metadata-labels", "agent,trigger", "--purpose-label", "true"]).start(
        tmp_path
    )
    try:
        wanted = {
            "runloop_benchmark_runs",
            "runloop_agent_benchmark_runs",
            "runloop_exporter_api_requests_total",
        }
        wait_until(lambda: exporter.get("/readyz").status_code == 200, timeout=30, what="the demo's sync")
        wait_until(  # the jobs are read once the runs are
            lambda: wanted <= {name for name, _ in exporter.scrape()}, timeout=30, what="the jobs' series"
        )
        scraped = exporter.scrape()
        names = {name for name, _ in scraped}
        assert wanted <= names
        labels = {label for _, label_set in scraped for label, _ in label_set}
        assert {"benchmark_id", "metadata_agent", "purpose", "agent_name", "path"} <= labels, labels
        clashes = {
            (name, label) for name, label_set in scraped for label, _ in label_set if label in TARGET_LABELS
        }
        assert clashes == set()
    finally:
        assert exporter.stop() == 0


def test_a_scrape_never_passes_the_series_budget(tmp_path: Path) -> None:
    """Every optional label on and a budget far below what they make: values fold, the scrape fits."""
    budget = 1500
    exporter = Exporter(
        [
            "--demo",
            "--metadata-labels",
            "agent,trigger",
            "--purpose-label",
            "true",
            "--max-series",
            str(budget),
        ]
    ).start(tmp_path)
    try:
        wait_until(lambda: exporter.get("/readyz").status_code == 200, timeout=30, what="the demo's sync")
        scraped = exporter.scrape()
        assert len(scraped) <= budget
        assert sample(scraped, "runloop_exporter_scrape_series") == pytest.approx(len(scraped), abs=20)
        folded = {
            dict(labels)["label"]: value
            for name, labels in scraped
            if name == "runloop_exporter_series_budget_folded_values_total"
            for value in [scraped[(name, labels)]]
        }
        assert sum(folded.values()) > 0, folded
        assert any(dict(labels).get(label) == "__other__" for _, labels in scraped for label in folded)
        assert "label values folded into __other__" in exporter.logs()
    finally:
        assert exporter.stop() == 0
