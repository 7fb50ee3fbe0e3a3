"""Publishes the parts' outcomes to the HTTP server's State: the exposition and the status page.

Each part (runs, jobs) publishes on its own schedule, from its own thread; this is where the two meet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from exporter.http import status
from exporter.http.parts import PartView
from exporter.http.state import State
from exporter.logs import REDACTOR
from exporter.metrics.agents import JobsSnapshot
from exporter.metrics.aggregate import Snapshot
from exporter.metrics.exposition import Rendered, exposition
from exporter.runloop.errors import ApiError, AuthError, cannot_read_jobs, explain
from exporter.sync.cycle import JOBS, RUNS, Outcome
from exporter.sync.progress import ReadBoard


class StatePublisher:
    """Publishes the parts' outcomes to the HTTP server's State: the exposition, and the status page.

    Each part publishes on its own schedule, from its own thread. The exposition is the runs and the jobs
    beside them, fitted to the whole-scrape series budget, rendered once when either part publishes new
    figures, and served once the runs are read (`/readyz`); the jobs' figures are dropped when the key cannot read jobs, and kept through
    any other failure. The status page's table is rendered once per new snapshot and the page after
    every cycle, so requests only copy bytes.
    """

    def __init__(
        self,
        state: State,
        *,
        base_url: str = "",
        board: ReadBoard | None = None,
        budget: Callable[[Snapshot], Snapshot] | None = None,
    ) -> None:
        self._state = state
        self._budget = budget or (lambda snapshot: snapshot)
        self._base_url = base_url or "the API"
        self._board = board or ReadBoard()
        self._lock = threading.Lock()
        self._runs: Snapshot | None = None
        self._jobs: JobsSnapshot | None = None
        self._published: dict[str, float] = {}
        self._last: dict[str, Outcome[Any]] = {}
        self._jobs_note: str | None = None  # why the jobs are absent or stale
        self._table: status.Table | None = None  # the table of the snapshot served now

    @property
    def served(self) -> Snapshot | None:
        """The figures served now: the runs with the jobs beside them (None before the runs are read)."""
        with self._lock:
            return None if self._runs is None else self._served()

    def __call__(self, outcome: Outcome[Any]) -> None:
        """Take a part's outcome: serve new figures, drop refused jobs, render the status page."""
        with self._lock:
            served = self._take(outcome)
            note = self._jobs_note
            if outcome.part == JOBS:
                self._jobs_note = self._note_of(outcome)
            if self._runs is not None and (served or note != self._jobs_note):
                if served:
                    self._state.rendered = Rendered.of_text(exposition(self._budget(self._served())))
                self._table = status.render_table(self._served())
            if outcome.error is not None or outcome.snapshot is not None:
                self._last[outcome.part] = outcome
            self._state.page = status.render(
                demo=self._state.demo, last=self._last_sync(), table=self._table, freshness=self._freshness()
            )

    def _served(self) -> Snapshot:
        assert self._runs is not None
        return replace(self._runs, jobs=self._jobs, jobs_note=self._jobs_note)

    def _take(self, outcome: Outcome[Any]) -> bool:
        """Hold the figures an outcome brings; True when what is served changes."""
        snapshot = outcome.snapshot
        if outcome.part == RUNS and isinstance(snapshot, Snapshot):
            self._runs = snapshot
        elif outcome.part == JOBS and isinstance(snapshot, JobsSnapshot):
            self._jobs = snapshot
        elif outcome.part == JOBS and _refused(outcome.error):
            changed = self._jobs is not None
            self._jobs = None
            return changed
        else:
            return False
        self._published[outcome.part] = outcome.ended_at
        return True

    def _note_of(self, outcome: Outcome[Any]) -> str | None:
        """Why the jobs are absent or stale, in one line for the status page (None: they are fine)."""
        error = outcome.error
        if error is None:
            return None if outcome.snapshot is not None else self._jobs_note
        if isinstance(error, AuthError | ApiError) and _refused(error):
            return (
                f"Benchmark jobs cannot be read with this key (HTTP {error.status}); "
                "they are tried again at the reconcile interval."
            )
        if self._jobs is None:
            return "The benchmark jobs sync failed and none has succeeded yet (see the logs)."
        return "The last benchmark jobs sync failed: these are the figures of the last good one."

    def _error(self, outcome: Outcome[Any]) -> str | None:
        error = outcome.error
        # Scrubbed although explain() never puts the key in: a page is no place to find out.
        return None if error is None else str(REDACTOR.scrub(explain(error, self._base_url)))

    def _last_sync(self) -> status.LastSync | None:
        runs = self._last.get(RUNS)
        if runs is None:
            return None
        return status.LastSync(
            ended_at=runs.ended_at,
            duration_s=runs.duration_s,
            requests=runs.requests,
            ok=runs.ok,
            error=self._error(runs),
        )

    def _freshness(self) -> list[PartView]:
        reads = self._board.current()
        parts = [RUNS, *([JOBS] if JOBS in self._last or any(r.part == JOBS for r in reads) else [])]
        return [
            PartView(
                name=part,
                published_at=self._published.get(part),
                ok=None if part not in self._last else self._last[part].ok,
                error=None if part not in self._last else self._error(self._last[part]),
                reads=tuple(read for read in reads if read.part == part),
            )
            for part in parts
        ]


def _refused(error: BaseException | None) -> bool:
    """Whether a jobs sync failed because the key cannot read jobs (403/404)."""
    return isinstance(error, AuthError | ApiError) and cannot_read_jobs(error)
