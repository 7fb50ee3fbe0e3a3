"""One pre-rendered snapshot serves both formats a scrape may ask for, and the Accept header picks one."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter.http.routes import prefers_openmetrics
from exporter.metrics.agents import AgentCaps, JobsTotals, build_jobs_snapshot
from exporter.metrics.aggregate import GroupKey, RunningRun, Snapshot, Totals, build_snapshot
from exporter.metrics.collector import snapshot_registry
from exporter.metrics.exposition import Rendered, render_registry
from exporter.metrics.telemetry import Telemetry
from exporter.runloop.models import Run

PROMETHEUS_ACCEPT = (  # what Prometheus 2.x sends by default
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def rich_snapshot() -> Snapshot:
    """Every family the collector makes, with awkward label values and a jobs part."""
    totals = Totals((0.5, 1.0), (60.0, 3600.0))
    key = GroupKey("bmd_a", (("metadata_team", 'red "quoted" \\ back\nline'),))
    totals.add(Run("r1", "bmd_a", "completed", 1_000, 61_000, 0.75, {}, None), key)
    totals.add(Run("r2", None, "failed", 2_000, 5_000, None, {}, None), GroupKey(None))
    snapshot = build_snapshot(totals, [RunningRun("r3", key, 3_000)], {"bmd_a": 'A "name" ✓'})
    return replace(snapshot, jobs=build_jobs_snapshot(JobsTotals((0.5, 1.0)), [], AgentCaps()))


def test_the_snapshot_renders_alike_in_both_formats() -> None:
    """What lets one rendering serve OpenMetrics too: the renderers agree line for line on our families."""
    registry = snapshot_registry(rich_snapshot())
    text = generate_latest(registry)
    assert b"runloop_benchmark_jobs" in text
    in_openmetrics = openmetrics.generate_latest(registry)  # type: ignore[no-untyped-call]
    assert in_openmetrics == text + b"# EOF\n"
    assert Rendered.of(rich_snapshot()).text == text


def test_an_openmetrics_body_is_valid_openmetrics() -> None:
    telemetry = Telemetry()
    telemetry.count_request("/v1/benchmark_runs", "200")
    rendered = Rendered.of(rich_snapshot())
    body = rendered.body(render_registry(telemetry.registry, open_metrics=True), gzip=False).decode()
    parsed = text_string_to_metric_families(body)  # type: ignore[no-untyped-call]
    families = {family.name: family for family in parsed}
    assert families["runloop_benchmark_runs"].type == "gauge"
    assert families["runloop_exporter_api_requests"].type == "counter"
    assert body.endswith("# EOF\n")
    assert body.count("# EOF") == 1


@pytest.mark.parametrize(
    ("accept", "openmetrics_wanted"),
    [
        (PROMETHEUS_ACCEPT, True),
        ("application/openmetrics-text", True),
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", True),
        ("", False),  # curl, a browser without preferences
        ("*/*", False),
        ("text/plain;version=0.0.4", False),
        ("text/html,application/xhtml+xml,*/*;q=0.8", False),  # a browser
        ("application/openmetrics-text;version=0.0.1", False),  # a version we do not speak
        ("application/openmetrics-text;q=0.4,text/plain;q=0.5", False),
        ("text/plain;q=0.2, application/openmetrics-text;q=0.9", True),
        ("application/openmetrics-text;q=0,*/*", False),  # q=0 refuses
        ("application/openmetrics-text;q=nonsense", False),
        ("application/json", False),  # nothing we offer: text anyway, never 406
    ],
)
def test_accept_ranks_openmetrics_against_text(accept: str, openmetrics_wanted: bool) -> None:
    assert prefers_openmetrics(accept) is openmetrics_wanted
