"""What to ask Runloop's API each cycle, and how its answers become a snapshot.

`FullSync` reads every run on every sync. It is the simple, obviously-correct baseline. The
`Sync` protocol is all the rest of the exporter sees, so another algorithm can replace it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import structlog

from exporter.aggregate import GroupKey, RunningRun, Snapshot, Totals, build_snapshot
from exporter.api import CancelledError, RunloopClient, RunloopError
from exporter.models import RUNNING, Invalid, Run, parse_run

log = structlog.get_logger(__name__)

Grouping = Callable[[Run], GroupKey]


def by_benchmark(run: Run) -> GroupKey:
    """The default grouping: one group per benchmark."""
    return GroupKey(run.benchmark_id)


class Sync(Protocol):
    """One sync with the API, producing the next snapshot (raises RunloopError when it cannot)."""

    def run(self) -> Snapshot:
        """Talk to the API and return the figures as they are now."""
        ...


class InvalidRecords:
    """Counts and logs each invalid record once, however many syncs see it again."""

    def __init__(self, count: Callable[[str], None], max_remembered: int = 100_000) -> None:
        self._count = count
        self._seen: set[tuple[str, str]] = set()
        self._max = max_remembered

    def report(self, invalid: Invalid, record: Any) -> None:
        """Note one skipped record; never logs its content, only our own description of the problem."""
        identity = invalid.run_id or _fingerprint(record)
        key = (invalid.reason, identity)
        if key in self._seen:
            return
        if len(self._seen) >= self._max:
            self._seen.clear()
        self._seen.add(key)
        self._count(invalid.reason)
        log.warning(
            "skipped an invalid run record",
            reason=invalid.reason,
            run_id=invalid.run_id,
            detail=invalid.detail,
        )


def _fingerprint(record: Any) -> str:
    try:
        text = json.dumps(record, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(record)
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


class BenchmarkNames:
    """Benchmark names by id, looked up once and cached; a failed lookup never fails a sync."""

    def __init__(self, client: RunloopClient, max_lookups_per_sync: int = 100) -> None:
        self._client = client
        self._names: dict[str, str] = {}
        self._failed: set[str] = set()
        self._max = max_lookups_per_sync

    @property
    def names(self) -> dict[str, str]:
        """Names known so far (a copy)."""
        return dict(self._names)

    def resolve(self, benchmark_ids: Iterable[str]) -> None:
        """Look up the names of benchmarks not seen before, at most a bounded number per sync."""
        missing = [
            bid for bid in sorted(set(benchmark_ids)) if bid not in self._names and bid not in self._failed
        ]
        for bid in missing[: self._max]:
            try:
                body = self._client.get_benchmark(bid)
            except CancelledError:
                return
            except RunloopError as exc:
                log.warning("benchmark name lookup failed", benchmark_id=bid, error=str(exc))
                return  # leave the rest for the next sync rather than hammer a struggling API
            name = body.get("name") if isinstance(body, dict) else None
            if isinstance(name, str):
                self._names[bid] = name
            else:
                self._failed.add(bid)
                log.warning("benchmark has no usable name", benchmark_id=bid, found=body is not None)

    def retry_failed(self) -> None:
        """Forget failed lookups so that they are tried again (at a reconcile)."""
        self._failed.clear()


class FullSync:
    """Reads every run each time: cost grows with history, figures are trivially right."""

    def __init__(
        self,
        client: RunloopClient,
        *,
        page_size: int,
        score_buckets: tuple[float, ...],
        duration_buckets: tuple[float, ...],
        names: BenchmarkNames,
        invalid: InvalidRecords,
        grouping: Grouping = by_benchmark,
    ) -> None:
        self._client = client
        self._page_size = page_size
        self._buckets = (score_buckets, duration_buckets)
        self._names = names
        self._invalid = invalid
        self._grouping = grouping

    def run(self) -> Snapshot:
        """Page through all runs, fold them into totals, look up new benchmark names."""
        totals = Totals(*self._buckets)
        running: list[RunningRun] = []
        seen: set[str] = set()
        for page in self._client.iter_runs_pages(page_size=self._page_size):
            for record in page.records:
                run = parse_run(record)
                if isinstance(run, Run) and run.id in seen:
                    run = Invalid("duplicate_id", run.id, "the same run id came twice in one listing")
                if isinstance(run, Invalid):
                    self._invalid.report(run, record)
                    continue
                seen.add(run.id)
                key = self._grouping(run)
                if run.state == RUNNING:
                    running.append(RunningRun(run.id, key, run.start_ms))
                else:
                    totals.add(run, key)
        self._names.resolve(benchmark_ids(totals, running))
        return build_snapshot(totals, running, self._names.names)


def benchmark_ids(totals: Totals, running: Iterable[RunningRun]) -> set[str]:
    """Every benchmark that has runs, finished or running."""
    keys = [*totals.groups, *(run.key for run in running)]
    return {key.benchmark_id for key in keys if key.benchmark_id is not None}
