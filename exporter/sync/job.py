"""One sync cycle as the scheduler runs it: time it, swap the snapshot, record the outcome.

Failures never reach the scheduler: the last good snapshot keeps being served, `runloop_up` drops to
0, and the next interval tries again. Each sync also renders the status page (exporter.status): the
table once per published snapshot, the "last sync" part after every sync, so requests only copy bytes.
"""

from __future__ import annotations

import time

import structlog

from exporter import status
from exporter.logs import REDACTOR
from exporter.metrics.exposition import Rendered
from exporter.metrics.telemetry import Telemetry
from exporter.runloop.client import RunloopClient
from exporter.runloop.errors import AuthError, CancelledError, RunloopError, ShutdownError, explain
from exporter.server import State
from exporter.sync import Sync

log = structlog.get_logger(__name__)


class SyncJob:
    """Runs a Sync with a deadline and publishes its result."""

    def __init__(
        self,
        sync: Sync,
        client: RunloopClient,
        state: State,
        telemetry: Telemetry,
        *,
        deadline_s: float,
        base_url: str = "",
    ) -> None:
        self._sync = sync
        self._client = client
        self._state = state
        self._telemetry = telemetry
        self._deadline_s = deadline_s
        self._base_url = base_url
        self._table: status.Table | None = None  # the status page's table of the snapshot served now

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
            self._show(started, requests_before, exc)
            return False
        except ShutdownError:  # a normal stop: not a failure, and not an error line at every deploy
            log.info("sync interrupted: the exporter is shutting down")
            return False
        except CancelledError as exc:
            self._fail("sync stopped", started, exc)
            self._show(started, requests_before, exc)
            return False
        except RunloopError as exc:
            self._fail("sync failed", started, exc)
            self._show(started, requests_before, exc)
            return False
        except Exception as exc:  # a bug must not stop the scheduler: log it with its traceback
            log.exception("sync crashed", error=repr(exc))
            self._record(started, success=False)
            self._show(started, requests_before, exc)
            return False
        self._table = status.render_table(snapshot)
        self._state.rendered = rendered
        self._record(started, success=True)
        self._show(started, requests_before, None)
        t.runs_known.set(snapshot.runs)
        log.info(
            "sync finished",
            runs=snapshot.runs,
            benchmarks=len(snapshot.benchmark_ids),
            requests=self._client.requests - requests_before,
            duration_s=round(time.monotonic() - started, 3),
        )
        return True

    def _show(self, started: float, requests_before: int, error: BaseException | None) -> None:
        """Render the status page for the sync that just ended (the table only changes on success)."""
        last = status.LastSync(
            ended_at=time.time(),
            duration_s=time.monotonic() - started,
            requests=self._client.requests - requests_before,
            ok=error is None,
            # Scrubbed although explain() never puts the key in: a page is no place to find out.
            error=None if error is None else str(REDACTOR.scrub(explain(error, self._base_url or "the API"))),
        )
        self._state.page = status.render(demo=self._state.demo, last=last, table=self._table)

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
