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
        except AuthError as exc:
            self._fail("the API key was refused: check RUNLOOP_API_KEY / RUNLOOP_API_KEY_FILE", started, exc)
            return self._end(started, requests_before, exc)
        except ShutdownError as exc:  # a normal stop: not a failure, and not an error line at every deploy
            log.info("sync interrupted: the exporter is shutting down")
            return self._outcome(started, requests_before, exc)
        except CancelledError as exc:
            self._fail("sync stopped", started, exc)
            return self._end(started, requests_before, exc)
        except RunloopError as exc:
            self._fail("sync failed", started, exc)
            return self._end(started, requests_before, exc)
        except Exception as exc:  # a bug must not stop the scheduler: log it with its traceback
            log.exception("sync crashed", error=repr(exc))
            self._record(started, success=False)
            return self._end(started, requests_before, exc)
        outcome = self._outcome(started, requests_before, None, snapshot, rendered)
        self._publish(outcome)
        self._record(started, success=True)
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

    def _end(self, started: float, requests_before: int, error: BaseException) -> Outcome:
        """A failed sync: publish it (the status page says why) and hand it back."""
        outcome = self._outcome(started, requests_before, error)
        self._publish(outcome)
        return outcome

    def _fail(self, message: str, started: float, exc: RunloopError) -> None:
        self._record(started, success=False)
        log.error(
            message,
            error=str(exc),
            error_type=type(exc).__name__,
            duration_s=round(time.monotonic() - started, 3),
        )

    def _record(self, started: float, *, success: bool) -> None:
        t = self._telemetry
        t.sync_duration.observe(time.monotonic() - started)
        t.syncs.labels("success" if success else "failure").inc()
        t.up.set(1 if success else 0)
        if success:
            t.last_success.set(time.time())
