"""A full read: every entry of the listing into a fresh ledger (the backfill, a reconcile, a rescan).

A full read may take longer than a sync's deadline, but it must keep moving: each page gets a fresh
sync-length deadline (so a stalled API stops it as early as it would stop a sync), within
`full_read_timeout_s` overall.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from exporter.metrics.aggregate import RunningRun, Totals
from exporter.runloop.client import Page, RunloopClient, record_id
from exporter.runloop.models import Invalid, Run, parse_run
from exporter.sync.config import Grouping, SyncConfig
from exporter.sync.idset import IdSet
from exporter.sync.ledger import Ends, Ledger
from exporter.sync.planner import Costs
from exporter.sync.records import InvalidRecords

log = structlog.get_logger("exporter.sync")

PROGRESS_EVERY_S = 5.0


class FullRead:
    """Reads one listing whole."""

    def __init__(
        self,
        client: RunloopClient,
        config: SyncConfig,
        *,
        grouping: Grouping,
        invalid: InvalidRecords,
        costs: Costs,
        benchmark_id: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._config = config
        self._grouping = grouping
        self._invalid = invalid
        self._costs = costs
        self._benchmark_id = benchmark_id
        self._clock = clock

    def read(
        self, reason: str, deadline: float | None, watch: str | None = None
    ) -> tuple[Ledger, int | None, int | None]:
        """The listing as it is now, the `total_count` its first page gave, and how many entries stand
        above the run `watch` (None when it is not listed): where new runs land, learned for free."""
        started = self._clock()
        now = time.monotonic()
        per_page = None if deadline is None else max(deadline - now, 1.0)
        overall = now + self._config.full_read_timeout_s

        def page_deadline() -> float:
            return overall if per_page is None else min(overall, time.monotonic() + per_page)

        config = self._config
        ledger = Ledger(Totals(config.score_buckets, config.duration_buckets))
        ends = Ends()
        seen = IdSet()
        progress = _Progress(reason, started, self._clock)
        total: int | None = None
        watched_at: int | None = None
        pages = self._client.iter_runs_pages(
            page_size=config.page_size,
            include_total_count=True,
            benchmark_id=self._benchmark_id,
            deadline=page_deadline,
        )
        asked = time.monotonic()
        for number, page in enumerate(pages):
            self._costs.page(time.monotonic() - asked, len(page.records), config.page_size)
            if number == 0:
                total = page.total_count
            for record in page.records:
                ends.see(record)
                if watch is not None and watched_at is None and record_id(record) == watch:
                    watched_at = ledger.listed
                ledger.listed += 1  # total_count counts every entry of the listing, duplicates too
                run = parse_run(record)
                if isinstance(run, Invalid):
                    self._invalid.report(run)
                    continue
                if not seen.add(run.id):
                    self._invalid.duplicate(run.id)
                    continue
                self._file(ledger, run)
            progress.page(page, ledger.listed)
            asked = time.monotonic()
        ledger.head, ledger.head_extra = ends.head, ends.head_extra
        ledger.tail, ledger.tail_extra = ends.tail, ends.tail_extra
        ledger.counted = total == ledger.listed
        progress.done(ledger.listed)
        return ledger, total, watched_at

    def _file(self, ledger: Ledger, run: Run) -> None:
        key = self._grouping(run)
        if key is None:
            return
        if run.is_terminal:
            ledger.totals.add(run, key)
        else:
            ledger.running[run.id] = RunningRun(run.id, key, run.start_ms, run.state)


class _Progress:
    """Logs a long full read every few seconds: pages, runs, rate and, when the total is known, an ETA."""

    def __init__(self, reason: str, started: float, clock: Callable[[], float]) -> None:
        self._reason = reason
        self._started = started
        self._clock = clock
        self._last = started
        self._pages = 0
        self._total: int | None = None

    def page(self, page: Page, runs: int) -> None:
        self._pages += 1
        if self._pages == 1:
            self._total = page.total_count
        now = self._clock()
        if now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        rate = runs / max(now - self._started, 1e-9)
        eta = None if self._total is None else round(max(self._total - runs, 0) / max(rate, 1e-9), 1)
        log.info(
            "full read in progress",
            reason=self._reason,
            pages=self._pages,
            runs=runs,
            total_count=self._total,
            runs_per_s=round(rate),
            eta_s=eta,
        )

    def done(self, runs: int) -> None:
        log.info(
            "full read finished",
            reason=self._reason,
            pages=self._pages,
            runs=runs,
            duration_s=round(self._clock() - self._started, 3),
        )
