"""One sync cycle as the scheduler runs it: time it, record it in the self-metrics, publish the outcome.

Failures never reach the scheduler: the outcome carries the error, the last good snapshot keeps being
served, `runloop_up` drops to 0, and the next interval tries again. What is done with an outcome
(serving the new exposition, rendering the status page, printing it for --once) is the caller's: the
job hands every outcome but a shutdown to its `publish` callback, so it depends on nothing above sync.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from exporter.metrics.aggregate import Snapshot
from exporter.metrics.exposition import Rendered
from exporter.metrics.telemetry import Telemetry
from exporter.runloop.client import RunloopClient
from exporter.runloop.errors import AuthError, CancelledError, RunloopError, ShutdownError
from exporter.sync.engine import Sync

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one sync came to: its snapshot and exposition, or the error that stopped it."""

    error: BaseException | None
    snapshot: Snapshot | None  # None when the sync failed: the previous one stays served
    rendered: Rendered | None
    ended_at: float  # wall clock, seconds since the epoch
    duration_s: float
    requests: int  # HTTP requests this sync sent

    @property
    def ok(self) -> bool:
        """True when the sync succeeded."""
        return self.error is None


Publish = Callable[[Outcome], None]
"""Receives every outcome except a shutdown's (which has nothing to show)."""


class SyncJob:
    """Runs a Sync with a deadline, records it in the self-metrics and publishes its outcome."""

    def __init__(
        self,
        sync: Sync,
        client: RunloopClient,
        publish: Publish,
        telemetry: Telemetry,
        *,
        deadline_s: float,
    ) -> None:
        self._sync = sync
        self._client = client
        self._publish = publish
        self._telemetry = telemetry
        self._deadline_s = deadline_s

    def __call__(self) -> Outcome:
        """Run one sync; the outcome says whether it succeeded, and why not."""
        started = time.monotonic()
        requests_before = self._client.requests
        try:
            snapshot = self._sync.run(started + self._deadline_s)
            rendered = Rendered.of(snapshot)
        except ShutdownError as exc:  # a normal stop: not a failure, and not an error line at every deploy
            log.info("sync interrupted: the exporter is shutting down")
            return self._outcome(started, requests_before, exc)
        except Exception as exc:  # whatever it is, the scheduler goes on: the outcome says why
            outcome = self._outcome(started, requests_before, exc)
            self._record(outcome)
            _log_failure(exc, outcome.duration_s)
            self._publish(outcome)  # the status page says why
            return outcome
        outcome = self._outcome(started, requests_before, None, snapshot, rendered)
        self._publish(outcome)
        self._record(outcome)
        self._telemetry.runs_known.set(snapshot.runs)
        log.info(
            "sync finished",
            runs=snapshot.runs,
            benchmarks=len(snapshot.benchmark_ids),
            requests=outcome.requests,
            duration_s=round(outcome.duration_s, 3),
        )
        return outcome

    def _outcome(
        self,
        started: float,
        requests_before: int,
        error: BaseException | None,
        snapshot: Snapshot | None = None,
        rendered: Rendered | None = None,
    ) -> Outcome:
        return Outcome(
            error=error,
            snapshot=snapshot,
            rendered=rendered,
            ended_at=time.time(),
            duration_s=time.monotonic() - started,
            requests=self._client.requests - requests_before,
        )

    def _record(self, outcome: Outcome) -> None:
        t = self._telemetry
        t.sync_duration.observe(outcome.duration_s)
        t.syncs.labels("success" if outcome.ok else "failure").inc()
        t.up.set(1 if outcome.ok else 0)
        if outcome.ok:
            t.last_success.set(outcome.ended_at)


def _log_failure(exc: Exception, duration_s: float) -> None:
    """One error line for a failed sync; a bug (not a RunloopError) with its traceback."""
    if not isinstance(exc, RunloopError):
        log.exception("sync crashed", error=repr(exc))
        return
    if isinstance(exc, AuthError):
        message = "the API key was refused: check RUNLOOP_API_KEY / RUNLOOP_API_KEY_FILE"
    elif isinstance(exc, CancelledError):
        message = "sync stopped"
    else:
        message = "sync failed"
    log.error(message, error=str(exc), error_type=type(exc).__name__, duration_s=round(duration_s, 3))
