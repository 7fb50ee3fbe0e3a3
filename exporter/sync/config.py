"""The settings one sync engine runs with, given once at construction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exporter.metrics.aggregate import DEFAULT_DURATION_BUCKETS, DEFAULT_SCORE_BUCKETS, GroupKey
from exporter.runloop.models import Run
from exporter.sync.background import PAGE_FLOOR_S

Grouping = Callable[[Run], GroupKey | None]
"""Maps a run to its group, or None for a run that is filtered out (still counted as listed)."""

MAX_LIMIT = 5000
"""The API's largest page: the running listing and the probes use it, whatever the page size."""


def by_benchmark(run: Run) -> GroupKey:
    """The default grouping: one group per benchmark."""
    return GroupKey(run.benchmark_id)


@dataclass(frozen=True)
class SyncConfig:
    """How a sync reads the listing; the same for every listing of a process."""

    score_buckets: tuple[float, ...] = DEFAULT_SCORE_BUCKETS
    duration_buckets: tuple[float, ...] = DEFAULT_DURATION_BUCKETS
    page_size: int = 1000  # full reads (backfill, reconcile, rescan, full mode)
    reconcile_interval_s: float = 3600.0
    full_read_timeout_s: float = 21600.0
    page_floor_s: float = PAGE_FLOOR_S  # the least time a page of a full read gets (see background.py)
    full_every_sync: bool = False
    max_concurrent: int = 4  # lookups in flight at once (the client's gate caps the whole process too)
    grouping: Grouping = by_benchmark
