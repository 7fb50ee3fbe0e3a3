"""A full read: every entry of the listing into a fresh ledger (the backfill, a reconcile, a rescan).

A full read may take longer than a sync's deadline, but it must keep moving: each page gets a fresh
sync-length deadline (so a stalled API stops it as early as it would stop a sync), within
`full_read_timeout_s` overall. It runs beside the loop (exporter/sync/background.py) and shows its
progress (exporter/sync/progress.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter.metrics.aggregate import RunningRun, Totals
from exporter.runloop.client import RunloopClient, record_id
from exporter.runloop.models import Invalid, Run, parse_run
from exporter.sync.config import Grouping, SyncConfig
from exporter.sync.idset import IdSet
from exporter.sync.ledger import Ends, Ledger
from exporter.sync.planner import Costs
from exporter.sync.progress import ReadBoard
from exporter.sync.records import InvalidRecords


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
        board: ReadBoard | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._config = config
        self._grouping = grouping
        self._invalid = invalid
        self._costs = costs
        self._benchmark_id = benchmark_id
        self._board = board or ReadBoard()
        self._clock = clock

    def read(
        self, reason: str, per_page: float | None, watch: str | None = None
    ) -> tuple[Ledger, int | None, int | None]:
        """The listing as it is now, the `total_count` its first page gave, and how many entries stand
        above the run `watch` (None when it is not listed): where new runs land, learned for free.

        `per_page` is how long one page may take (a sync's length; None: no limit but the overall one).
        """
        overall = time.monotonic() + self._config.full_read_timeout_s

        def page_deadline() -> float:
            return overall if per_page is None else min(overall, time.monotonic() + per_page)

        config = self._config
        ledger = Ledger(Totals(config.score_buckets, config.duration_buckets))
        ends = Ends()
        seen = IdSet()
        progress = self._board.start("runs", reason, self._clock)
        total: int | None = None
        watched_at: int | None = None
        pages = self._client.iter_runs_pages(
            page_size=config.page_size,
            include_total_count=True,
            benchmark_id=self._benchmark_id,
            deadline=page_deadline,
        )
        asked = time.monotonic()
        try:
            for number, page in enumerate(pages):
                self._costs.page(time.monotonic() - asked, len(page.records), config.page_size)
                if number == 0:
                    total = page.total_count
                for record in page.records:
                    ends.see(record)
                    if watch is not None and watched_at is None and record_id(record) == watch:
                        watched_at = ledger.listed
                    ledger.listed += 1  # total_count counts every entry of the listing, duplicates too
                    self._file(ledger, record, seen)
                progress.page(len(page.records), page.total_count)
                asked = time.monotonic()
        finally:
            progress.done(runs=ledger.listed)
        ledger.head, ledger.head_extra = ends.head, ends.head_extra
        ledger.tail, ledger.tail_extra = ends.tail, ends.tail_extra
        ledger.counted = total == ledger.listed
        return ledger, total, watched_at

    def _file(self, ledger: Ledger, record: object, seen: IdSet) -> None:
        run = parse_run(record)
        if isinstance(run, Invalid):
            self._invalid.report(run)
            return
        if not seen.add(run.id):
            self._invalid.duplicate(run.id)
            return
        self._hold(ledger, run)

    def _hold(self, ledger: Ledger, run: Run) -> None:
        key = self._grouping(run)
        if key is None:
            return
        if run.is_terminal:
            ledger.totals.add(run, key)
        else:
            ledger.running[run.id] = RunningRun(run.id, key, run.start_ms, run.state)
