"""Turns a Snapshot into Prometheus metric families, and renders them once per snapshot.

Runs with no benchmark are exported with the `benchmark_id` label left out rather than empty, so
each sample carries its own label set; that is why families are built with `Metric.add_sample`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from exporter.metrics.agents import AgentView, JobsSnapshot
from exporter.metrics.aggregate import GroupView, HistogramView, Snapshot

PREFIX = "runloop_benchmark"
_go_float: Callable[[float], str] = floatToGoString  # the `le` spelling Prometheus expects (1, 0.5, +Inf)


def _labels(group: GroupView) -> dict[str, str]:
    labels = {} if group.key.benchmark_id is None else {"benchmark_id": group.key.benchmark_id}
    labels.update(group.key.labels)
    return labels


def _add_histogram(metric: Metric, name: str, labels: dict[str, str], hist: HistogramView) -> None:
    for bound, cumulative in zip(hist.bounds, hist.cumulative, strict=False):
        metric.add_sample(f"{name}_bucket", {**labels, "le": _go_float(bound)}, cumulative)
    metric.add_sample(f"{name}_bucket", {**labels, "le": "+Inf"}, hist.count)
    metric.add_sample(f"{name}_count", labels, hist.count)
    metric.add_sample(f"{name}_sum", labels, hist.total)


class SnapshotCollector(Collector):
    """A prometheus_client Collector over one immutable snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """Yield every benchmark-run family of the snapshot."""
        groups = self._snapshot.groups
        runs = Metric(f"{PREFIX}_runs", "Benchmark runs per state, as Runloop reports them now.", "gauge")
        durations = Metric(
            f"{PREFIX}_run_duration_seconds", "Duration of finished benchmark runs.", "histogram"
        )
        scores = Metric(f"{PREFIX}_run_score", "Score (0..1) of completed benchmark runs.", "histogram")
        last_score = Metric(
            f"{PREFIX}_last_completed_run_score",
            "Score of the completed run that finished last.",
            "gauge",
        )
        last_time = Metric(
            f"{PREFIX}_last_completed_run_timestamp_seconds",
            "When the completed run that finished last ended (start + duration).",
            "gauge",
        )
        oldest = Metric(
            f"{PREFIX}_oldest_running_run_start_timestamp_seconds",
            "Start time of the oldest run still running.",
            "gauge",
        )
        for group in groups:
            labels = _labels(group)
            for state, count in group.counts.items():
                runs.add_sample(runs.name, {**labels, "state": state}, count)
            for state, hist in group.durations.items():
                _add_histogram(durations, durations.name, {**labels, "state": state}, hist)
            _add_histogram(scores, scores.name, labels, group.scores)
            if group.last_completed_score is not None and group.last_completed_end_s is not None:
                last_score.add_sample(last_score.name, labels, group.last_completed_score)
                last_time.add_sample(last_time.name, labels, group.last_completed_end_s)
            if group.oldest_running_start_s is not None:
                oldest.add_sample(oldest.name, labels, group.oldest_running_start_s)

        info = Metric(f"{PREFIX}_info", "Benchmarks that have runs, with their names; always 1.", "gauge")
        for benchmark_id, name in sorted(self._snapshot.benchmark_names.items()):
            info.add_sample(f"{PREFIX}_info", {"benchmark_id": benchmark_id, "benchmark_name": name}, 1)
        yield from (runs, durations, scores, last_score, last_time, oldest, info)
        if self._snapshot.jobs is not None:
            yield from _job_families(self._snapshot.jobs)


def _agent_labels(group: AgentView) -> dict[str, str]:
    key = group.key
    labels = {} if key.benchmark_id is None else {"benchmark_id": key.benchmark_id}
    if key.agent_name is not None:
        labels["agent_name"] = key.agent_name
    if key.model_name is not None:
        labels["model_name"] = key.model_name
    return labels


def _job_families(jobs: JobsSnapshot) -> Iterator[Metric]:
    """The benchmark-job families: jobs per state, and per agent and model on each benchmark."""
    states = Metric(
        "runloop_benchmark_jobs",
        "Benchmark jobs per benchmark and state, as Runloop lists them now.",
        "gauge",
    )
    for benchmark_id, counts in jobs.by_benchmark.items():
        labels = {} if benchmark_id is None else {"benchmark_id": benchmark_id}
        for state, count in counts.items():
            states.add_sample(states.name, {**labels, "state": state}, count)
    runs = Metric(
        "runloop_agent_benchmark_runs",
        "Benchmark runs of jobs with an outcome, per agent and model (one per outcome).",
        "gauge",
    )
    in_progress = Metric(
        "runloop_agent_benchmark_runs_in_progress",
        "Runs of jobs still running, per agent and model.",
        "gauge",
    )
    score = Metric(
        "runloop_agent_benchmark_run_score",
        "Average score (0..1) of each outcome that has one, per agent and model.",
        "histogram",
    )
    scenarios = Metric(
        "runloop_agent_scenarios",
        "Scenarios of job outcomes that completed, failed or timed out, per agent and model.",
        "gauge",
    )
    failures = Metric(
        "runloop_agent_scenario_failures",
        "Failed or timed-out scenarios with a failure reason, by exception type, per agent and model.",
        "gauge",
    )
    last_score = Metric(
        "runloop_agent_last_benchmark_run_score",
        "Average score of the newest outcome with one (by its job's creation time), per agent and model.",
        "gauge",
    )
    last_time = Metric(
        "runloop_agent_last_benchmark_run_timestamp_seconds",
        "Creation time of the job of that newest scored outcome.",
        "gauge",
    )
    for group in jobs.groups:
        labels = _agent_labels(group)
        runs.add_sample(runs.name, labels, group.runs)
        in_progress.add_sample(in_progress.name, labels, group.in_progress)
        _add_histogram(score, score.name, labels, group.scores)
        for state, count in group.scenarios.items():
            scenarios.add_sample(scenarios.name, {**labels, "state": state}, count)
        for kind, count in group.failures.items():
            failures.add_sample(failures.name, {**labels, "exception_type": kind}, count)
        if group.last_score is not None and group.last_time_s is not None:
            last_score.add_sample(last_score.name, labels, group.last_score)
            last_time.add_sample(last_time.name, labels, group.last_time_s)
    yield from (states, runs, in_progress, score, scenarios, failures, last_score, last_time)


class JobsCollector(Collector):
    """A prometheus_client Collector over one immutable jobs snapshot (the jobs part, published apart)."""

    def __init__(self, jobs: JobsSnapshot) -> None:
        self._jobs = jobs

    def collect(self) -> Iterator[Metric]:
        """Yield every benchmark-job family of the snapshot."""
        yield from _job_families(self._jobs)


def jobs_registry(jobs: JobsSnapshot) -> CollectorRegistry:
    """A registry holding only this jobs snapshot's families."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(jobs))
    return registry


def snapshot_registry(snapshot: Snapshot) -> CollectorRegistry:
    """A registry holding only this snapshot's families (used to render it, and by tests)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return registry
