"""The exporter's own metrics: request latency per path, the build's revision, the sync buckets, no
label that a scrape would rename."""

from __future__ import annotations

import time

import httpx
import pytest

from exporter import __version__
from exporter.metrics.telemetry import REVISION_ENV, SYNC_DURATION_BUCKETS, Telemetry
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.errors import TransientError

# Labels Prometheus or the Prometheus Operator set on every target: a scraped label of the same name is
# renamed to exported_<name> (honor_labels: false), and queries on it silently read the target's.
TARGET_LABELS = {"job", "instance", "endpoint", "namespace", "service", "pod", "container"}


def test_api_requests_are_labelled_by_path_and_timed() -> None:
    telemetry = Telemetry()

    def handler(request: httpx.Request) -> httpx.Response:
        time.sleep(0.03)
        return httpx.Response(200, json={"runs": [], "has_more": False, "total_count": 0})

    client = RunloopClient(
        "http://127.0.0.1:1",
        lambda: "key",
        transport=httpx.MockTransport(handler),
        on_request=telemetry.count_request,
        on_latency=telemetry.time_request,
    )
    client.list_runs(limit=1)
    client.list_runs(limit=1)
    registry = telemetry.registry
    path = {"path": "/v1/benchmark_runs"}
    assert registry.get_sample_value("runloop_exporter_api_requests_total", {**path, "code": "200"}) == 2
    count = registry.get_sample_value("runloop_exporter_api_request_duration_seconds_count", path)
    total = registry.get_sample_value("runloop_exporter_api_request_duration_seconds_sum", path)
    assert count == 2
    assert total is not None
    assert total >= 0.06
    # Both fell in the buckets above 25 ms, none below.
    assert (
        registry.get_sample_value(
            "runloop_exporter_api_request_duration_seconds_bucket", {**path, "le": "0.025"}
        )
        == 0
    )


def test_a_request_that_fails_is_timed_too() -> None:
    telemetry = Telemetry()

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client = RunloopClient(
        "http://127.0.0.1:1",
        lambda: "key",
        transport=httpx.MockTransport(handler),
        on_latency=telemetry.time_request,
        retry=RetryPolicy(max_retries=1, base_delay_s=0.001, max_delay_s=0.001),
    )
    with pytest.raises(TransientError, match="ConnectError"):
        client.get_benchmark("bmd_x")
    count = telemetry.registry.get_sample_value(
        "runloop_exporter_api_request_duration_seconds_count", {"path": "/v1/benchmarks/{id}"}
    )
    assert count == 2, "both attempts, the first try and its retry"


def test_build_info_carries_the_revision_the_image_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REVISION_ENV, raising=False)
    labels = {"version": __version__, "revision": "unknown"}
    assert Telemetry().registry.get_sample_value("runloop_exporter_build_info", labels) == 1
    monkeypatch.setenv(REVISION_ENV, "0123abcd")
    labels = {"version": __version__, "revision": "0123abcd"}
    assert Telemetry().registry.get_sample_value("runloop_exporter_build_info", labels) == 1


def test_sync_duration_buckets_reach_past_a_full_read() -> None:
    """A backfill may take the full-read deadline, 1800 s by default: it must not land in +Inf only."""
    assert max(SYNC_DURATION_BUCKETS) >= 1800
    assert list(SYNC_DURATION_BUCKETS) == sorted(SYNC_DURATION_BUCKETS)


def test_no_self_metric_label_clashes_with_a_target_label() -> None:
    telemetry = Telemetry()
    telemetry.init_jobs()
    telemetry.init_http(["idle_timeout"])
    telemetry.init_folded(["metadata_team"])
    labels = {name for family in telemetry.registry.collect() for s in family.samples for name in s.labels}
    assert "path" in labels
    assert not labels & TARGET_LABELS
