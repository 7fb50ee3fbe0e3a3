"""Build syncs against a simulator in-process, and compare their snapshots."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exporter.aggregate import Snapshot
from exporter.api import RetryPolicy, RunloopClient
from exporter.settings import DEFAULT_DURATION_BUCKETS, DEFAULT_SCORE_BUCKETS
from exporter.simulator import DEFAULT_API_KEY
from exporter.sync import BenchmarkNames, IncrementalSync, InvalidRecords
from exporter.telemetry import Telemetry


def new_sync(
    url: str,
    *,
    full: bool = False,
    page_size: int = 1000,
    clock: Callable[[], float] | None = None,
    reconcile_interval_s: float = 1e9,
) -> tuple[IncrementalSync, Telemetry]:
    """An IncrementalSync (or a full rescan with `full=True`) talking to `url` over HTTP."""
    telemetry = Telemetry()
    client = RunloopClient(url, lambda: DEFAULT_API_KEY, retry=RetryPolicy(max_retries=0))
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
    sync = IncrementalSync(
        client,
        page_size=page_size,
        score_buckets=DEFAULT_SCORE_BUCKETS,
        duration_buckets=DEFAULT_DURATION_BUCKETS,
        names=BenchmarkNames(client),
        invalid=InvalidRecords(lambda reason: telemetry.invalid_records.labels(reason).inc()),
        telemetry=telemetry,
        reconcile_interval_s=reconcile_interval_s,
        full_every_sync=full,
        **kwargs,
    )
    return sync, telemetry


def figures(snapshot: Snapshot) -> dict[Any, Any]:
    """Every figure of a snapshot, sums rounded so that addition order does not matter."""
    out: dict[Any, Any] = {"runs": snapshot.runs, "names": dict(snapshot.benchmark_names)}
    for group in snapshot.groups:
        out[group.key] = (
            dict(group.counts),
            {s: (h.cumulative, round(h.total, 6)) for s, h in group.durations.items()},
            (group.scores.cumulative, round(group.scores.total, 6)),
            group.last_completed_score,
            group.last_completed_end_s,
            group.oldest_running_start_s,
        )
    return out


def full_figures(url: str) -> dict[Any, Any]:
    """What a plain full read of the listing shows now."""
    sync, _ = new_sync(url, full=True)
    return figures(sync.run())
