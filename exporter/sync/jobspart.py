"""The benchmark-jobs part: the jobs sync as a loop of its own, isolated from the runs.

Whatever goes wrong with jobs, the run metrics go on. A key that cannot read jobs (403/404) is logged once,
`runloop_exporter_jobs_available` is 0, the jobs series are left out, and jobs are tried again at the
reconcile interval; any other failure keeps the last jobs figures and is tried again at the next cycle.

Runs first: the jobs' first read starts only once the runs' first cycle has ended (published, or failed),
so that a backfill of heavy jobs takes neither requests nor CPU from the first run metrics. It costs the
jobs a minute at most, against a backfill that may take an hour.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from exporter.metrics.agents import AGENT_LABEL, EXCEPTION_LABEL, JobsSnapshot
from exporter.runloop.errors import ApiError, AuthError, RunloopError, cannot_read_jobs
from exporter.sync.jobs import JobsSync

log = structlog.get_logger("exporter.sync.jobspart")


class JobsPart:
    """Runs the jobs sync for its cycle: refusals told once and tried again later, folded values counted."""

    def __init__(
        self,
        jobs: JobsSync,
        *,
        count_folded: Callable[[str, int], None],
        retry_s: float,
        wait_for_runs: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jobs = jobs
        self._runs_first = threading.Event()  # set once the runs' first cycle has ended
        if not wait_for_runs:
            self._runs_first.set()
        self._told_waiting = False
        self._count_folded = count_folded
        self._retry_s = retry_s
        self._clock = clock
        self._refused_until: float | None = None
        self._told_refused = False
        self._folded = {AGENT_LABEL: 0, EXCEPTION_LABEL: 0}

    def run(self, deadline: float | None = None) -> JobsSnapshot | None:
        """One jobs sync (raising what stopped it); None while refused and not yet due for a retry, while
        the first read waits for the runs' first figures, or while it goes on."""
        if self._waits_for_runs():
            return None
        if self._refused_until is not None and self._clock() < self._refused_until:
            return None
        try:
            jobs = self.jobs.run(deadline)
        except (AuthError, ApiError) as exc:
            if cannot_read_jobs(exc):
                self._refused_until = self._clock() + self._retry_s
            raise
        if jobs is None:
            return None
        if self._refused_until is not None:
            log.info("benchmark jobs can be read again")
        self._refused_until = None
        self._told_refused = False
        now = jobs.folded()
        for label, count in now.items():
            if count > self._folded[label]:
                self._count_folded(label, count - self._folded[label])
        self._folded = now
        return jobs

    def runs_ended(self) -> bool:
        """The runs' first cycle has ended (published, or failed): True the first time, when the jobs'
        loop should be woken to start its first read."""
        if self._runs_first.is_set():
            return False
        self._runs_first.set()
        return True

    def _waits_for_runs(self) -> bool:
        """True while nothing of the jobs is held yet and the runs' first cycle has not ended."""
        if self._runs_first.is_set() or self.jobs.ledger is not None:
            return False
        if not self._told_waiting:
            self._told_waiting = True
            log.info("benchmark jobs: the first read starts once the runs are read")
        return True

    def log_failure(self, exc: Exception, duration_s: float) -> None:
        """A refusal once, other failures as warnings (the run metrics are unaffected), a bug with its
        traceback."""
        if isinstance(exc, (AuthError, ApiError)) and cannot_read_jobs(exc):
            if not self._told_refused:
                self._told_refused = True
                log.warning(
                    "benchmark jobs cannot be read with this key; exporting runs only, "
                    "and trying jobs again at the reconcile interval",
                    status=exc.status,
                )
            return
        if not isinstance(exc, RunloopError):
            log.exception("benchmark jobs sync crashed; keeping the last figures", error=repr(exc))
            return
        log.warning(
            "benchmark jobs sync failed; keeping the last figures",
            error=str(exc),
            error_type=type(exc).__name__,
            duration_s=round(duration_s, 3),
        )
