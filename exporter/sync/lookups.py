"""Per-record lookups, `GET /v1/benchmark_runs/{id}` (or jobs by id), a few at a time.

At 50 to 150 ms a request, lookups one after another cannot keep up with a busy account; run
concurrently (at most `workers` at once, and the client's gate caps the whole process) they can. The
caller gets each answer as it arrives, in its own thread, so what it records needs no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any

from exporter.runloop.client import RunloopClient
from exporter.runloop.errors import CancelledError, RunloopError, ShutdownError
from exporter.sync.planner import Costs


class Lookups:
    """Fetches runs by id concurrently and measures what each request costs."""

    def __init__(
        self,
        client: RunloopClient,
        workers: int,
        costs: Costs,
        get: Callable[[str, float | None], Any | None] | None = None,
    ) -> None:
        self._client = client
        self._workers = workers
        self._costs = costs
        self._get_one = get or (lambda run_id, deadline: client.get_run(run_id, deadline=deadline))

    def fetch(self, run_ids: list[str], deadline: float | None) -> Iterator[tuple[str, Any | None]]:
        """(id, raw record or None when gone) as answers arrive; ids not answered are left out.

        Past the deadline the remaining ids are simply not answered (the caller keeps them for later).
        Any other error is raised once the requests already in flight have been answered and yielded,
        and the ones not yet started are dropped: a failure loses no answer and costs no extra request.
        """
        if not run_ids:
            return
        pool = ThreadPoolExecutor(min(self._workers, len(run_ids)), thread_name_prefix="runloop-lookup")
        futures = {pool.submit(self._get, run_id, deadline): run_id for run_id in run_ids}
        failure: RunloopError | None = None
        try:
            for future in as_completed(futures):
                try:
                    record = future.result()
                except FutureCancelled:
                    continue  # dropped before it started
                except CancelledError as exc:
                    if isinstance(exc, ShutdownError):
                        failure = failure or exc
                    _drop(futures)
                    continue
                except RunloopError as exc:
                    failure = failure or exc
                    _drop(futures)
                    continue
                yield futures[future], record
        finally:
            _drop(futures)
            pool.shutdown(wait=True)
        if failure is not None:
            raise failure

    def _get(self, run_id: str, deadline: float | None) -> Any | None:
        started = time.monotonic()
        record = self._get_one(run_id, deadline)
        self._costs.small(time.monotonic() - started)
        return record


def _drop(futures: Iterable[Future[Any | None]]) -> None:
    """Cancel the lookups not started yet."""
    for future in futures:
        future.cancel()
