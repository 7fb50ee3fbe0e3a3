"""The exporter's own metrics: is Runloop reachable, how syncs go, what they cost.

These are instrumented directly (counters and gauges updated as things happen) in a registry of their
own, separate from the benchmark-run figures, which come from immutable snapshots.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.metrics import disable_created_metrics

from exporter import __version__
from exporter.runloop.client import BENCHMARK_PATH, BENCHMARKS_PATH, JOB_PATH, JOBS_PATH, RUN_PATH, RUNS_PATH
from exporter.runloop.jobs import JOB_INVALID_REASONS
from exporter.runloop.models import INVALID_REASONS

# `_created` series double the counter lines and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Up to an hour: a full read (the backfill, a reconcile) may take RUNLOOP_EXPORTER_FULL_READ_TIMEOUT_SECONDS,
# 1800 s by default.
SYNC_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
# One request: Runloop answers in 50 to 150 ms, a heavy job page in seconds, a request times out at
# RUNLOOP_EXPORTER_REQUEST_TIMEOUT_SECONDS (30 s by default, 300 at most).
API_REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
REVISION_ENV = "RUNLOOP_EXPORTER_BUILD_REVISION"
"""Where the image tells the package its git commit (the Dockerfile sets it from its REVISION argument)."""


def build_revision() -> str:
    """The git commit this build was made from, or "unknown" (a wheel or a source tree does not know)."""
    return os.environ.get(REVISION_ENV, "").strip() or "unknown"


class Telemetry:
    """Self-metrics, one instance per exporter process (tests make their own)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        self.up = Gauge(
            "runloop_up", "1 when the last sync with Runloop's API succeeded, else 0.", registry=r
        )
        self.last_success = Gauge(
            "runloop_exporter_last_successful_sync_timestamp_seconds",
            "When the last successful sync ended (0 before the first).",
            registry=r,
        )
        self.sync_duration = Histogram(
            "runloop_exporter_sync_duration_seconds",
            "How long syncs with Runloop's API take, successful or not.",
            buckets=SYNC_DURATION_BUCKETS,
            registry=r,
        )
        self.syncs = Counter(
            "runloop_exporter_syncs", "Syncs with Runloop's API, by result.", ["result"], registry=r
        )
        # `path`, not `endpoint`: the Prometheus Operator sets a target label `endpoint` (the port's name),
        # which would rename ours to exported_endpoint.
        self.api_requests = Counter(
            "runloop_exporter_api_requests",
            "Requests sent to Runloop's API, by path and HTTP status (or timeout/network_error/too_large).",
            ["path", "code"],
            registry=r,
        )
        self.api_request_duration = Histogram(
            "runloop_exporter_api_request_duration_seconds",
            "How long one request to Runloop's API took, answered or not (body read included, waiting "
            "for the request gate not), by path.",
            ["path"],
            buckets=API_REQUEST_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter(
            "runloop_exporter_rate_limited",
            "Answers of 429 Too Many Requests from Runloop's API.",
            registry=r,
        )
        self.invalid_records = Counter(
            "runloop_exporter_invalid_records",
            "Run records skipped as invalid, by reason; each record is counted once.",
            ["reason"],
            registry=r,
        )
        self.full_reads = Counter(
            "runloop_exporter_full_reads",
            "Full reads of the run listing, by reason: backfill, scheduled (reconcile), probe_mismatch, "
            "full_mode, rescan (cheaper than looking up the runs that ended).",
            ["reason"],
            registry=r,
        )
        self.reconcile_drift = Counter(
            "runloop_exporter_reconcile_drift",
            "Scheduled reconciles that found the incrementally held figures had drifted (and healed them).",
            registry=r,
        )
        self.label_values_folded = Counter(
            "runloop_exporter_label_values_folded",
            "Runs exported with a label value of __other__ because the label reached its cap of distinct "
            "values; each run is counted once.",
            ["label"],
            registry=r,
        )
        self.series_budget_folded = Counter(
            "runloop_exporter_series_budget_folded_values",
            "Label values folded into __other__ because the scrape would have passed "
            "RUNLOOP_EXPORTER_MAX_SERIES, by label; each value once (it stays folded until a restart).",
            ["label"],
            registry=r,
        )
        self.scrape_series = Gauge(
            "runloop_exporter_scrape_series",
            "Series of a scrape after the last successful sync: the snapshot's, after any folding to the "
            "series budget, and the exporter's own.",
            registry=r,
        )
        self.backlog = Gauge(
            "runloop_exporter_backlog_runs",
            "Runs known to have left their state whose outcome is not learned yet; they are still counted "
            "in their last known state and are looked up by the next syncs.",
            registry=r,
        )
        self.http_connections_closed = Counter(
            "runloop_exporter_http_connections_closed",
            "Client connections the HTTP server closed on its own, by reason: header_timeout, "
            "idle_timeout, write_timeout, over_capacity.",
            ["reason"],
            registry=r,
        )
        self.http_connections = Gauge(
            "runloop_exporter_http_connections", "Client connections open on the HTTP server now.", registry=r
        )
        self.jobs_available = Gauge(
            "runloop_exporter_jobs_available",
            "1 when the last sync of benchmark jobs succeeded, 0 when jobs cannot be read (the key may "
            "lack access to them) or their sync failed; run metrics do not depend on it.",
            registry=r,
        )
        self.job_full_reads = Counter(
            "runloop_exporter_job_full_reads",
            "Full reads of the benchmark-job listing, by reason: backfill, scheduled, probe_mismatch.",
            ["reason"],
            registry=r,
        )
        self.jobs_last_success = Gauge(
            "runloop_exporter_jobs_last_successful_sync_timestamp_seconds",
            "When the last successful sync of benchmark jobs ended (0 before the first).",
            registry=r,
        )
        self.jobs_syncs = Counter(
            "runloop_exporter_jobs_syncs",
            "Syncs of benchmark jobs (a loop of their own, beside the run sync), by result.",
            ["result"],
            registry=r,
        )
        self.jobs_sync_duration = Histogram(
            "runloop_exporter_jobs_sync_duration_seconds",
            "How long syncs of benchmark jobs take, successful or not (full reads go on beside them).",
            buckets=SYNC_DURATION_BUCKETS,
            registry=r,
        )
        self.read_progress = Gauge(
            "runloop_exporter_read_progress_ratio",
            "Share (0..1) of the listing read so far by each full read in progress, by part (runs, jobs) "
            "and reason; absent when no read is going on.",
            ["part", "reason"],
            registry=r,
        )
        self.full_read_failures = Counter(
            "runloop_exporter_full_read_failures",
            "Full reads beside a loop that failed after the first (the loop published what it held and "
            "reads again), by part.",
            ["part"],
            registry=r,
        )
        self.checkpoint_loads = Counter(
            "runloop_exporter_checkpoint_loads",
            "Checkpoints read at start, by part and result: used, missing, unreadable, corrupt, rejected "
            "(written for another API, account, settings or format).",
            ["part", "result"],
            registry=r,
        )
        self.checkpoint_writes = Counter(
            "runloop_exporter_checkpoint_writes",
            "Checkpoint writes, by part and result (success, failure).",
            ["part", "result"],
            registry=r,
        )
        self.checkpoint_age = Gauge(
            "runloop_exporter_checkpoint_age_seconds",
            "Age of the checkpoint a part resumed from, when it was read at start; absent when none was used.",
            ["part"],
            registry=r,
        )
        self.checkpoint_last_write = Gauge(
            "runloop_exporter_checkpoint_last_write_timestamp_seconds",
            "When a part's checkpoint was last written by this process; absent before the first write.",
            ["part"],
            registry=r,
        )
        self.runs_known = Gauge(
            "runloop_exporter_runs", "Runs known after the last successful sync.", registry=r
        )
        Gauge(
            "runloop_exporter_build_info",
            "Version of the exporter and the git commit it was built from (or unknown); always 1.",
            ["version", "revision"],
            registry=r,
        ).labels(__version__, build_revision()).set(1)
        for result in ("success", "failure"):
            self.syncs.labels(result)
        self.full_read_failures.labels("runs")
        for reason in ("backfill", "scheduled", "probe_mismatch", "full_mode", "rescan"):
            self.full_reads.labels(reason)
        for reason in INVALID_REASONS:
            self.invalid_records.labels(reason)
        for path in (RUNS_PATH, RUN_PATH, BENCHMARK_PATH, BENCHMARKS_PATH):
            self.api_requests.labels(path, "200")
            self.api_request_duration.labels(path)

    def init_http(self, close_reasons: Iterable[str]) -> None:
        """Show the connections-closed counter at 0 for every reason the HTTP server gives.

        The server owns its reasons; it is wired here by the app so these metrics need not import it.
        """
        for reason in close_reasons:
            self.http_connections_closed.labels(reason)

    def init_jobs(self) -> None:
        """Show the job series of the exporter at their start values (only when jobs are read)."""
        self.jobs_available.set(0)
        for result in ("success", "failure"):
            self.jobs_syncs.labels(result)
        self.full_read_failures.labels("jobs")
        for reason in JOB_INVALID_REASONS:
            self.invalid_records.labels(reason)
        for reason in ("backfill", "scheduled", "probe_mismatch"):
            self.job_full_reads.labels(reason)
        for path in (JOBS_PATH, JOB_PATH):
            self.api_requests.labels(path, "200")
            self.api_request_duration.labels(path)

    def init_checkpoint(self, parts: Iterable[str]) -> None:
        """Show the checkpoint counters at 0 for every part kept and result (only with a state dir)."""
        for part in parts:
            for result in ("used", "missing", "unreadable", "corrupt", "rejected"):
                self.checkpoint_loads.labels(part, result)
            for result in ("success", "failure"):
                self.checkpoint_writes.labels(part, result)

    def show_read_progress(self, part: str, reason: str, ratio: float | None) -> None:
        """Hook for the reads' progress board: a read's share read so far, None when it ended."""
        if ratio is None:
            with contextlib.suppress(KeyError):  # never shown: the read ended before its first page
                self.read_progress.remove(part, reason)
            return
        self.read_progress.labels(part, reason).set(ratio)

    def init_folded(self, labels: Iterable[str]) -> None:
        """Show the folded-runs counter at 0 for every label that can fold."""
        for label in labels:
            self.label_values_folded.labels(label)

    def init_budget(self, labels: Iterable[str]) -> None:
        """Show the budget's folded-values counter at 0 for every label it may fold."""
        for label in labels:
            self.series_budget_folded.labels(label)

    def count_budget_folded(self, label: str, values: int) -> None:
        """Hook for SeriesBudget: label values newly folded to keep the scrape within its budget."""
        self.series_budget_folded.labels(label).inc(values)

    def own_series(self) -> int:
        """How many series the exporter's own metrics make now (a few hundred)."""
        return sum(len(family.samples) for family in self.registry.collect())

    def count_folded(self, label: str, runs: int) -> None:
        """Hook for FoldCounting: runs newly exported as `__other__` under `label`."""
        self.label_values_folded.labels(label).inc(runs)

    def count_invalid(self, reason: str) -> None:
        """Hook for InvalidRecords: a run or job record skipped as invalid, for `reason`."""
        self.invalid_records.labels(reason).inc()

    def count_http_close(self, reason: str) -> None:
        """Hook for the HTTP server: it closed a connection on its own."""
        self.http_connections_closed.labels(reason).inc()

    def count_request(self, path: str, code: str) -> None:
        """Hook for the API client: one HTTP attempt."""
        self.api_requests.labels(path, code).inc()

    def time_request(self, path: str, seconds: float) -> None:
        """Hook for the API client: how long one HTTP attempt took."""
        self.api_request_duration.labels(path).observe(seconds)
