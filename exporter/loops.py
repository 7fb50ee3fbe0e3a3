"""The parts' loops on one APScheduler: each part (runs, jobs) runs its cycle on its own interval, and
again at once when its bell rings (a full read ended beside it), never two cycles of a part at once.

A wake that comes while the part's cycle runs is not lost: that cycle runs once more when it ends. So
the scheduler never sees an instance still running and never logs a skipped run.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler


class Loop:
    """One part's cycles on the scheduler."""

    def __init__(self, name: str, cycle: Callable[[], object], scheduler: BackgroundScheduler) -> None:
        self.name = name
        self._cycle = cycle
        self._scheduler = scheduler
        self._running = threading.Lock()  # held while a cycle runs
        self._flag = threading.Lock()  # makes "is one running?" and "run once more" one step
        self._again = False
        self._stopped = False  # at a stop: no cycle starts any more, not even one asked for meanwhile
        self.idle = threading.Event()
        self.idle.set()

    def every(self, seconds: float) -> None:
        """Run a cycle now and then every `seconds`."""
        self._scheduler.add_job(
            self.tick,
            "interval",
            seconds=seconds,
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            id=self.name,
        )

    def wake(self) -> None:
        """Run a cycle as soon as possible (from any thread)."""
        with contextlib.suppress(SchedulerNotRunningError):  # stopping: nothing more to publish
            self._scheduler.add_job(
                self.tick,
                "date",
                run_date=datetime.now(UTC) + timedelta(milliseconds=1),
                id=f"{self.name}-wake",
                replace_existing=True,
                misfire_grace_time=None,
            )

    def stop(self) -> None:
        """Start no cycle from now on; one in flight ends as it will."""
        with self._flag:
            self._stopped = True

    def tick(self) -> None:
        """Run a cycle, unless one runs: then that one runs once more when it ends."""
        while True:
            with self._flag:
                if self._stopped:
                    return
                if not self._running.acquire(blocking=False):
                    self._again = True
                    return
                self._again = False
                self.idle.clear()
            try:
                self._cycle()
            finally:
                with self._flag:
                    self._running.release()
                    self.idle.set()
                    again = self._again
            if not again:
                return
