"""`--once`: one sync, the exposition (benchmark series, then self-metrics) on stdout; exit 0, or 1.

For debugging and for node_exporter's textfile collector. A failure is exactly one line on stderr,
within ONCE_GRACE_S of the timeout: logs are held back and shown only after a success (or live, when a
log level was asked for), requests are retried briefly, and a sync that does not stop in time is
abandoned.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from dataclasses import replace
from typing import Any

import structlog

from exporter.app import build, log_level_asked, quiet_log_level
from exporter.logs import configure
from exporter.metrics.agents import JobsSnapshot
from exporter.metrics.aggregate import Snapshot
from exporter.metrics.exposition import exposition, render_registry
from exporter.runloop.client import RetryPolicy
from exporter.runloop.errors import CancelledError, explain
from exporter.settings import Settings, describe
from exporter.sync.cycle import RUNS, Cycle, Outcome

log = structlog.get_logger("exporter.once")

ONCE_TIMEOUT_S = 30.0
"""How long --once tries, unless RUNLOOP_EXPORTER_SYNC_TIMEOUT_SECONDS says otherwise."""
ONCE_GRACE_S = 2.0
"""How long --once waits past its timeout for the sync to stop before it gives up on it (it then exits
at once): the README and --help promise an exit within 5 s of the timeout, process start included."""
MIN_CYCLE_S = 0.25
"""Below this much time left, --once stops cycling and says the first read did not finish."""
ONCE_RETRY = RetryPolicy(max_retries=2, base_delay_s=0.5, max_delay_s=2.0)
"""--once rides out a brief 503 but fails in seconds when the network is down, not after 20 s."""


def once_timeout(settings: Settings) -> float:
    """How long --once tries: the sync timeout when one is set, else ONCE_TIMEOUT_S (not the interval's)."""
    return settings.sync_timeout_seconds if settings.sync_timeout_seconds is not None else ONCE_TIMEOUT_S


def once(settings: Settings) -> int:
    """One sync; the exposition on stdout. Exit 0, or 1 with one line on stderr."""
    started = time.monotonic()
    timeout_s = once_timeout(settings)
    held = io.StringIO()
    live_logs = log_level_asked(settings)
    configure(settings.log_format, quiet_log_level(settings), stream=None if live_logs else held)
    # The first sync is a full read; within --once it gets the same deadline, not the backfill's half hour.
    settings = settings.model_copy(
        update={
            "full_read_timeout_seconds": min(settings.full_read_timeout_seconds, timeout_s),
            "request_timeout_seconds": min(settings.request_timeout_seconds, timeout_s),
        }
    )
    app = build(settings, retry=ONCE_RETRY)
    # Nothing is served: the outcomes themselves carry the figures that are printed. The jobs get what
    # time the runs left (jobs were always a part apart: their failure does not fail --once).
    deadline = started + timeout_s
    outcomes: list[Outcome[Any]] = []

    def until_read(cycle: Cycle[Any]) -> Outcome[Any]:
        """Cycles until one has figures, fails, or time is up (each waits for a read half its time)."""
        while True:
            outcome = cycle()
            left = deadline - time.monotonic()
            if outcome.snapshot is not None or outcome.error is not None or left < MIN_CYCLE_S:
                return outcome
            cycle.deadline_s = left

    def both() -> None:
        outcomes.append(until_read(app.runs_cycle(_nowhere, deadline_s=deadline - time.monotonic())))
        jobs = app.jobs_cycle(_nowhere, deadline_s=max(deadline - time.monotonic(), 0.0))
        if outcomes[0].snapshot is not None and jobs is not None:
            outcomes.append(until_read(jobs))

    worker = threading.Thread(target=both, name="once", daemon=True)
    worker.start()
    worker.join(max(started + timeout_s + ONCE_GRACE_S - time.monotonic(), 0.0))
    if worker.is_alive():  # stuck past every timeout: say so and leave the thread behind
        print(
            f"runloop-exporter: sync failed: it did not finish within {timeout_s:g} s"
            f" ({describe('sync_timeout_seconds')})",
            file=sys.stderr,
        )
        sys.stderr.flush()
        os._exit(1)
    app.close()
    outcome = outcomes[0] if outcomes else None
    error = outcome.error if outcome else None
    if outcome is None or not isinstance(outcome.snapshot, Snapshot):
        reason = explain(error, app.base_url) if error else "the exposition could not be rendered"
        if outcome is not None and error is None:  # the first full read of the runs was still going on
            reads = [read for read in app.board.current() if read.part == RUNS]
            read = f"{reads[0].records} runs read" if reads and reads[0].pages else "no answer"
            log.warning("the first read of the runs did not finish in time", read=read, timeout_s=timeout_s)
            reason = (
                f"{read} from {app.base_url} within {timeout_s:g} s ({describe('sync_timeout_seconds')}):"
                " the first read of the runs did not finish"
            )
        elif isinstance(error, CancelledError) and time.monotonic() >= started + timeout_s:
            reason = (
                f"no answer from {app.base_url} within {timeout_s:g} s ({describe('sync_timeout_seconds')}):"
                f" {error}"
            )
        print(f"runloop-exporter: sync failed: {reason}", file=sys.stderr)
        return 1
    sys.stderr.write(held.getvalue())
    jobs = outcomes[1].snapshot if len(outcomes) > 1 else None
    served = replace(outcome.snapshot, jobs=jobs if isinstance(jobs, JobsSnapshot) else None)
    text = exposition(app.budget(served))
    sys.stdout.buffer.write(text + render_registry(app.telemetry.registry))
    sys.stdout.flush()
    return 0


def _nowhere(outcome: Outcome[Any]) -> None:
    """--once serves nothing: the outcomes are printed at the end."""
