"""One cycle of a part's loop as the scheduler runs it: time it, record it in the part's self-metrics,
publish the outcome.

The exporter has two parts, each with a loop of its own: the runs and the benchmark jobs. Failures never
reach the scheduler: the outcome carries the error, the part's last good figures keep being served, its
`up` gauge drops to 0, and the next cycle tries again. What is done with an outcome (serving the new
figures, rendering the status page, printing them for --once) is the caller's: the cycle hands every
outcome but a shutdown's to its `publish` callback, so it depends on nothing above sync.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog
from prometheus_client import Counter, Gauge, Histogram

from exporter.runloop.client import RunloopClient
from exporter.runloop.errors import AuthError, CancelledError, RunloopError, ShutdownError

log = structlog.get_logger("exporter.sync.cycle")

S = TypeVar("S")

RUNS = "runs"
JOBS = "jobs"


@dataclass(frozen=True)
class Outcome(Generic[S]):
    """What one cycle of a part came to: its figures, nothing yet (a first read goes on), or an error."""

    part: str  # RUNS or JOBS
    error: BaseException | None
    snapshot: S | None  # None when it failed (the last figures stay served) or has nothing yet
    ended_at: float  # wall clock, seconds since the epoch
    duration_s: float
    requests: int  # HTTP requests of the part since its last cycle ended: its sync's and its reads'.

    @property
    def ok(self) -> bool:
        """True when the cycle did not fail."""
        return self.error is None


Publish = Callable[[Outcome[S]], None]
"""Receives every outcome except a shutdown's (which has nothing to show)."""


@dataclass(frozen=True)
class PartMetrics:
    """The self-metrics a part's cycles record."""

    up: Gauge
    last_success: Gauge
    syncs: Counter
    duration: Histogram


FailureLog = Callable[[Exception, float], None]
"""Logs a failed cycle (the error, and how long the cycle took)."""


class Cycle(Generic[S]):
    """Runs a part's sync with a deadline, records it in the part's self-metrics and publishes its outcome.

    `deadline_s` None runs each sync to its end, full reads included (benchmarks and tests).
    """

    def __init__(
        self,
        part: str,
        sync: Callable[[float | None], S | None],
        clients: Sequence[RunloopClient],
        publish: Publish[S],
        metrics: PartMetrics,
        *,
        deadline_s: float | None,
        log_failure: FailureLog | None = None,
        on_success: Callable[[Outcome[S]], None] | None = None,
    ) -> None:
        self._part = part
        self._sync = sync
        self._clients = clients  # the sync's and its reads' (whose requests count too)
        self._counted = self._sent()
        self._publish = publish
        self._metrics = metrics
        self.deadline_s = deadline_s  # how long each cycle may take (--once shortens it as time runs out)
        self._log_failure = log_failure or log_failure_of(part)
        self._on_success = on_success or (lambda outcome: None)

    def __call__(self) -> Outcome[S]:
        """Run one sync of the part; the outcome says whether it succeeded, and why not."""
        started = time.monotonic()
        try:
            snapshot = self._sync(None if self.deadline_s is None else started + self.deadline_s)
        except ShutdownError as exc:  # a normal stop: not a failure, and not an error line at every deploy
            log.info("sync interrupted: the exporter is shutting down", part=self._part)
            return self._outcome(started, exc)
        except Exception as exc:  # whatever it is, the scheduler goes on: the outcome says why
            outcome = self._outcome(started, exc)
            self._record(outcome)
            self._log_failure(exc, outcome.duration_s)
            self._publish(outcome)  # the status page says why
            return outcome
        outcome = self._outcome(started, None, snapshot)
        # Published before `up` says 1: a scrape in between must never show up=1 without the figures.
        self._publish(outcome)
        if snapshot is not None:  # else a first full read is still going on: nothing to record yet
            self._record(outcome)
            self._on_success(outcome)
        return outcome

    def _sent(self) -> int:
        return sum(client.requests for client in self._clients)

    def _outcome(self, started: float, error: BaseException | None, snapshot: S | None = None) -> Outcome[S]:
        sent, self._counted = self._counted, self._sent()
        return Outcome(
            part=self._part,
            error=error,
            snapshot=snapshot,
            ended_at=time.time(),
            duration_s=time.monotonic() - started,
            requests=self._counted - sent,
        )

    def _record(self, outcome: Outcome[S]) -> None:
        m = self._metrics
        m.duration.observe(outcome.duration_s)
        m.syncs.labels("success" if outcome.ok else "failure").inc()
        m.up.set(1 if outcome.ok else 0)
        if outcome.ok:
            m.last_success.set(outcome.ended_at)


def log_failure_of(part: str) -> FailureLog:
    """One error line for a failed cycle of `part`; a bug (not a RunloopError) with its traceback."""

    def log_failure(exc: Exception, duration_s: float) -> None:
        if not isinstance(exc, RunloopError):
            log.exception("sync crashed", part=part, error=repr(exc))
            return
        if isinstance(exc, AuthError):
            message = "the API key was refused: check RUNLOOP_API_KEY / RUNLOOP_API_KEY_FILE"
        elif isinstance(exc, CancelledError):
            message = "sync stopped"
        else:
            message = "sync failed"
        log.error(
            message, part=part, error=str(exc), error_type=type(exc).__name__, duration_s=round(duration_s, 3)
        )

    return log_failure
