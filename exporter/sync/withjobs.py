"""The runs' sync with the jobs' sync after it, isolated: nothing that goes wrong with jobs fails the runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from exporter.metrics.agents import AGENT_LABEL, EXCEPTION_LABEL, JobsSnapshot
from exporter.metrics.aggregate import Snapshot
from exporter.runloop.errors import ApiError, AuthError, RunloopError, ShutdownError, cannot_read_jobs
from exporter.sync.jobs import JobsSync

if TYPE_CHECKING:
    from exporter.sync.engine import Sync

log = structlog.get_logger("exporter.sync.withjobs")


class WithJobs:
    """A Sync that also syncs benchmark jobs after the runs, isolated from them.

    Whatever goes wrong with jobs, the run snapshot is published: a key that cannot read jobs (403/404)
    is logged once, `runloop_exporter_jobs_available` is 0 and jobs are tried again at the reconcile
    interval; any other failure keeps the last jobs figures and is tried again at the next sync.
    """

    def __init__(
        self,
        sync: Sync,
        jobs: JobsSync,
        *,
        available: Callable[[bool], None],
        count_folded: Callable[[str, int], None],
        retry_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sync = sync
        self._jobs = jobs
        self._available = available
        self._count_folded = count_folded
        self._retry_s = retry_s
        self._clock = clock
        self._last: JobsSnapshot | None = None
        self._refused_until: float | None = None
        self._told_refused = False
        self._folded = {AGENT_LABEL: 0, EXCEPTION_LABEL: 0}
        self._note: str | None = None  # why jobs are absent or stale, for the status page

    def run(self, deadline: float | None = None) -> Snapshot:
        """The run sync (its failure is the sync's), then the jobs sync (whose failure is not)."""
        snapshot = self._sync.run(deadline)
        return replace(snapshot, jobs=self._run_jobs(deadline), jobs_note=self._note)

    def _run_jobs(self, deadline: float | None) -> JobsSnapshot | None:
        if self._refused_until is not None and self._clock() < self._refused_until:
            return None
        try:
            jobs = self._jobs.run(deadline)
        except (AuthError, ApiError) as exc:
            if not cannot_read_jobs(exc):
                return self._failed(exc)
            self._refused_until = self._clock() + self._retry_s
            self._available(False)
            self._last = None
            self._note = (
                f"Benchmark jobs cannot be read with this key (HTTP {exc.status}); "
                "they are tried again at the reconcile interval."
            )
            if not self._told_refused:
                self._told_refused = True
                log.warning(
                    "benchmark jobs cannot be read with this key; exporting runs only, "
                    "and trying jobs again at the reconcile interval",
                    status=exc.status,
                )
            return None
        except ShutdownError:
            raise
        except RunloopError as exc:
            return self._failed(exc)
        except Exception as exc:  # a bug in the jobs part must not cost the run metrics
            log.exception("benchmark jobs sync crashed; keeping the last figures", error=repr(exc))
            return self._failed_note()
        if self._refused_until is not None:
            log.info("benchmark jobs can be read again")
        self._refused_until = None
        self._told_refused = False
        self._note = None
        self._available(True)
        now = jobs.folded()
        for label, count in now.items():
            if count > self._folded[label]:
                self._count_folded(label, count - self._folded[label])
        self._folded = now
        self._last = jobs
        return jobs

    def _failed(self, exc: RunloopError) -> JobsSnapshot | None:
        log.warning(
            "benchmark jobs sync failed; keeping the last figures",
            error=str(exc),
            error_type=type(exc).__name__,
        )
        return self._failed_note()

    def _failed_note(self) -> JobsSnapshot | None:
        self._available(False)
        self._note = (
            "The benchmark jobs sync failed and none has succeeded yet (see the logs)."
            if self._last is None
            else "The last benchmark jobs sync failed: these are the figures of the last good one."
        )
        return self._last
