"""Progress of the long reads (a backfill, a reconcile, a rescan), for the log, a gauge and the status page.

A read that takes minutes must not look like a hung exporter: every `PROGRESS_EVERY_S` it logs where it
is (part, reason, pages, records of `total_count`, rate, time left), `runloop_exporter_read_progress_ratio`
shows it while it lasts, and the status page draws it from `ReadBoard.current()`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("exporter.sync")

PROGRESS_EVERY_S = 10.0

ShowRatio = Callable[[str, str, float | None], None]
"""Called with (part, reason, ratio) as a read goes on, and with None when it ends."""


@dataclass(frozen=True)
class ReadStatus:
    """Where one read in progress stands."""

    part: str  # "runs" or "jobs"
    reason: str  # backfill, scheduled, probe_mismatch, rescan, full_mode
    pages: int
    records: int
    total: int | None  # the listing's total_count, when the API gave it
    elapsed_s: float

    @property
    def ratio(self) -> float | None:
        """Records read of the total, 0..1; None while the total is unknown."""
        if not self.total:
            return None
        return min(self.records / self.total, 1.0)

    @property
    def rate(self) -> float:
        """Records read per second so far."""
        return self.records / max(self.elapsed_s, 1e-9)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None while the total or the rate is unknown."""
        if self.total is None or self.records == 0:
            return None
        return max(self.total - self.records, 0) / max(self.rate, 1e-9)


class Progress:
    """The progress of one read: fed page by page, logged now and then, shown while it lasts."""

    def __init__(self, board: ReadBoard, part: str, reason: str, clock: Callable[[], float]) -> None:
        self._board = board
        self._part = part
        self._reason = reason
        self._clock = clock
        self._started = clock()
        self._last_log = self._started
        self._pages = 0
        self._records = 0
        self._total: int | None = None

    def page(self, records: int, total_count: int | None = None) -> None:
        """Note one page of `records` entries (the first page brings the listing's `total_count`)."""
        self._pages += 1
        self._records += records
        if self._pages == 1:
            self._total = total_count
        status = self.status()
        self._board.show(self, status)
        now = self._clock()
        if now - self._last_log < PROGRESS_EVERY_S:
            return
        self._last_log = now
        eta = status.eta_s
        log.info(
            "read in progress",
            part=self._part,
            reason=self._reason,
            pages=self._pages,
            records=self._records,
            total_count=self._total,
            records_per_s=round(status.rate),
            eta_s=None if eta is None else round(eta, 1),
        )

    def status(self) -> ReadStatus:
        """Where this read stands now."""
        elapsed = self._clock() - self._started
        return ReadStatus(self._part, self._reason, self._pages, self._records, self._total, elapsed)

    def done(self, **about: object) -> None:
        """The read ended (read whole, or failed): log it and stop showing it."""
        self._board.end(self)
        log.info(
            "read finished",
            part=self._part,
            reason=self._reason,
            pages=self._pages,
            records=self._records,
            duration_s=round(self._clock() - self._started, 3),
            **about,
        )


class ReadBoard:
    """The reads in progress in this process, for the gauge and the status page."""

    def __init__(self, show_ratio: ShowRatio | None = None) -> None:
        self._show_ratio = show_ratio or (lambda part, reason, ratio: None)
        self._lock = threading.Lock()
        self._reads: dict[int, ReadStatus] = {}

    def start(self, part: str, reason: str, clock: Callable[[], float] = time.monotonic) -> Progress:
        """Track a new read."""
        progress = Progress(self, part, reason, clock)
        self.show(progress, progress.status())
        return progress

    def show(self, progress: Progress, status: ReadStatus) -> None:
        with self._lock:
            self._reads[id(progress)] = status
        self._show_ratio(status.part, status.reason, status.ratio or 0.0)

    def end(self, progress: Progress) -> None:
        with self._lock:
            status = self._reads.pop(id(progress), None)
        if status is not None:
            self._show_ratio(status.part, status.reason, None)

    def current(self) -> list[ReadStatus]:
        """The reads in progress now, oldest first."""
        with self._lock:
            return sorted(self._reads.values(), key=lambda s: -s.elapsed_s)
