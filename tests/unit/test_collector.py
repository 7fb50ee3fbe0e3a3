"""The collector's families: names, types and label sets that dashboards and alert rules rely on."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import generate_latest

from exporter.metrics.agents import JobsSnapshot
from exporter.metrics.aggregate import GroupKey, RunningRun, Totals, build_snapshot
from exporter.metrics.collector import SnapshotCollector, snapshot_registry
from exporter.runloop.models import Run
from tests.support.samples import parse, sample

BUCKETS = (0.5, 1.0)
DURATIONS = (60.0, 120.0)


def finished(
    state: str, key: GroupKey, duration_ms: int | None, score: float | None = None
) -> tuple[Run, GroupKey]:
    return Run("r", key.benchmark_id, state, 1_000, duration_ms, score, {}, None), key


def test_families_and_their_types() -> None:
    totals = Totals(BUCKETS, DURATIONS)
    totals.add(*finished("completed", GroupKey("b1"), 1_000, 0.5))
    snapshot = build_snapshot(totals, [RunningRun("x", GroupKey("b1"), 5_000)], {"b1": "One"})
    families = {family.name: family for family in SnapshotCollector(snapshot).collect()}
    assert {name: family.type for name, family in families.items()} == {
        "runloop_benchmark_runs": "gauge",
        "runloop_benchmark_run_duration_seconds": "histogram",
        "runloop_benchmark_run_score": "histogram",
        "runloop_benchmark_last_completed_run_score": "gauge",
        "runloop_benchmark_last_completed_run_timestamp_seconds": "gauge",
        "runloop_benchmark_oldest_running_run_start_timestamp_seconds": "gauge",
        "runloop_benchmark_info": "gauge",
    }  # no job families: the snapshot holds no jobs part
    assert all(family.documentation for family in families.values())


def test_histogram_samples_in_order_with_go_style_bounds() -> None:
    totals = Totals(BUCKETS, DURATIONS)
    totals.add(*finished("failed", GroupKey("b1"), 60_000))
    totals.add(*finished("failed", GroupKey("b1"), 90_500))
    snapshot = build_snapshot(totals, [], {})
    family = next(f for f in SnapshotCollector(snapshot).collect() if f.name.endswith("duration_seconds"))
    failed = [(s.name, s.labels.get("le"), s.value) for s in family.samples if s.labels["state"] == "failed"]
    assert failed == [
        ("runloop_benchmark_run_duration_seconds_bucket", "60.0", 1),
        ("runloop_benchmark_run_duration_seconds_bucket", "120.0", 2),
        ("runloop_benchmark_run_duration_seconds_bucket", "+Inf", 2),
        ("runloop_benchmark_run_duration_seconds_count", None, 2),
        ("runloop_benchmark_run_duration_seconds_sum", None, 150.5),
    ]


def test_extra_labels_of_a_group_are_on_every_series() -> None:
    key = GroupKey("b1", (("team", "red"),))
    totals = Totals(BUCKETS, DURATIONS)
    totals.add(*finished("completed", key, 2_000, 1.0))
    snapshot = build_snapshot(totals, [RunningRun("x", key, 3_000)], {})
    samples = parse(generate_latest(snapshot_registry(snapshot)).decode())
    labelled = [labels for (name, labels) in samples if name != "runloop_benchmark_info"]
    assert labelled
    assert all(("team", "red") in labels and ("benchmark_id", "b1") in labels for labels in labelled)
    assert sample(samples, "runloop_benchmark_runs", benchmark_id="b1", team="red", state="running") == 1
    assert sample(samples, "runloop_benchmark_run_score_sum", benchmark_id="b1", team="red") == 1.0


def test_jobs_are_counted_per_benchmark_and_state() -> None:
    """The benchmark a job's source names labels its state counts; jobs without one leave it out."""
    jobs = JobsSnapshot(
        by_benchmark={None: {"running": 1, "failed": 0}, "b1": {"running": 0, "failed": 2}}, groups=(), jobs=3
    )
    totals = Totals(BUCKETS, DURATIONS)
    snapshot = build_snapshot(totals, [], {})
    samples = parse(generate_latest(snapshot_registry(replace(snapshot, jobs=jobs))).decode())
    assert sample(samples, "runloop_benchmark_jobs", benchmark_id="b1", state="failed") == 2
    assert sample(samples, "runloop_benchmark_jobs", state="running") == 1
    assert sample(samples, "runloop_benchmark_jobs", state="failed") == 0
    assert jobs.states == {"running": 1, "failed": 2}
