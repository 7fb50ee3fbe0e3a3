"""One sync cycle as the scheduler runs it: time it, swap the snapshot, record the outcome.

Failures never reach the scheduler: the last good snapshot keeps being served, `runloop_up` drops to
0, and the next interval tries again.
"""

from __future__ import annotations

import time

import structlog

from exporter.api import AuthError, CancelledError, RunloopClient, RunloopError, ShutdownError
from exporter.exposition import Rendered
from exporter.server import State
from exporter.sync import Sync
from exporter.telemetry import Telemetry

log = structlog.get_logger(__name__)


class SyncJob:
    """Runs a Sync with a deadline and publishes its result."""

    def __init__(
        self, sync: Sync, client: RunloopClient, state: State, telemetry: Telemetry, *, deadline_s: float
    ) -> None:
        self._sync = sync
        self._client = client
        self._state = state
        self._telemetry = telemetry
        self._deadline_s = deadline_s

    def __call__(self) -> bool:
        """Run one sync; True when it succeeded."""
        t = self._telemetry
        started = time.monotonic()
        requests_before = self._client.requests
        try:
            snapshot = self._sync.run(started + self._deadline_s)
            rendered = Rendered.of(snapshot)
        except AuthError as exc:
            self._fail("the API key was refused: check RUNLOOP_API_KEY / RUNLOOP_API_KEY_FILE", started, exc)
            return False
        except ShutdownError:  # a normal stop: not a failure, and not an error line at every deploy
            log.info("sync interrupted: the exporter is shutting down")
            return False
        except CancelledError as exc:
            self._fail("sync stopped", started, exc)
            return False
        except RunloopError as exc:
            self._fail("sync failed", started, exc)
            return False
        except Exception as exc:  # a bug must not stop the scheduler: log it with its traceback
            log.exception("sync crashed", error=repr(exc))
            self._record(started, success=False)
            return False
        self._state.rendered = rendered
        self._record(started, success=True)
        t.sync_runs.set(snapshot.runs)
        log.info(
            "sync finished",
            runs=snapshot.runs,
            benchmarks=len(snapshot.benchmark_ids),
            requests=self._client.requests - requests_before,
            duration_s=round(time.monotonic() - started, 3),
        )
        return True

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
