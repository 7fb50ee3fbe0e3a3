"""Benchmark names by id: one listing first, then a lookup for each id the listing cannot name.

`GET /v1/benchmarks` leaves archived benchmarks out, so after a listing the ids still unnamed are looked
up one by one (`GET /v1/benchmarks/{id}`). The listing runs at the start of a sync, before the runs are
read, so a long backfill cannot leave it without time; the lookups after the runs are read get a
deadline of their own. A failed listing is tried again at the next sync.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import structlog

from exporter.runloop.client import RunloopClient
from exporter.runloop.errors import CancelledError, RunloopError, ShutdownError
from exporter.runloop.models import benchmark_fields
from exporter.sync.config import MAX_LIMIT

log = structlog.get_logger("exporter.sync")

LOOKUP_TIME_S = 10.0
"""The least time the lookups after a sync get, however much of the sync's deadline is left."""
LIST_FAILURES_BEFORE_LOOKUPS = 3
"""Failed listings in a row after which names are looked up by id all the same (a listing blocked)."""


class BenchmarkNames:
    """Benchmark names by id, cached; a failed request never fails a sync (except for name filters)."""

    def __init__(
        self,
        client: RunloopClient,
        *,
        max_lookups_per_sync: int = 100,
        list_threshold: int = 10,
        refresh_interval_s: float = 3600.0,
        workers: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._names: dict[str, str] = {}
        self._unnamed: set[str] = set()  # Runloop has no usable name for these (404, or none given)
        self._max = max_lookups_per_sync
        self._list_threshold = list_threshold
        self._refresh_s = refresh_interval_s
        self._workers = workers
        self._clock = clock
        self._listed_at: float | None = None  # when a listing last succeeded
        self._list_failures = 0  # in a row
        self._list_tried = False  # whether a listing was tried since the last `prepare`
        self._deadline: float | None = None  # of the current sync, for lookups made by name filters

    @property
    def names(self) -> dict[str, str]:
        """Names known so far (a copy)."""
        return dict(self._names)

    @property
    def unnamed(self) -> frozenset[str]:
        """Benchmarks Runloop has no usable name for, as far as we know (a copy)."""
        return frozenset(self._unnamed.copy())

    def restore(self, names: dict[str, str], unnamed: Iterable[str]) -> None:
        """Know what a checkpoint kept, so that its benchmarks need no lookup; the next sync that
        publishes still lists the benchmarks (a restart refreshes the names)."""
        self._names.update(names)
        self._unnamed.update(bid for bid in unnamed if bid not in self._names)

    def prepare(self, deadline: float | None) -> None:
        """At the start of a sync: list the benchmarks if never done, failed last time, or stale."""
        self._deadline = deadline
        self._list_tried = False
        if self._listed_at is not None and self._clock() - self._listed_at < self._refresh_s:
            return
        self._list(deadline)

    def resolve(self, benchmark_ids: Iterable[str], deadline: float | None) -> None:
        """Name the benchmarks not seen before: by a new listing when many are new, else by id.

        A listing is tried at most once a sync: one that failed is tried again at the next sync.

        Lookups run a few at a time with at least LOOKUP_TIME_S of their own, and at most a bounded
        number per sync; what is left waits for the next sync.
        """
        missing = self._missing(benchmark_ids)
        if len(missing) > self._list_threshold and not self._list_tried and self._list(deadline):
            missing = self._missing(missing)
        if not missing or (self._listed_at is None and self._list_failures < LIST_FAILURES_BEFORE_LOOKUPS):
            return  # lookups would cost a request per benchmark where a listing costs one: list next sync
        own = time.monotonic() + LOOKUP_TIME_S
        lookup_deadline = None if deadline is None else max(deadline, own)
        with ThreadPoolExecutor(min(self._workers, len(missing)), thread_name_prefix="runloop-names") as pool:
            futures = [pool.submit(self._fetch, bid, lookup_deadline) for bid in missing[: self._max]]
            for future in futures:
                try:
                    future.result()
                except ShutdownError:
                    raise
                except CancelledError:
                    continue
                except RunloopError as exc:
                    log.warning("benchmark name lookup failed", error=str(exc))

    def name_of(self, benchmark_id: str) -> str | None:
        """The name of one benchmark now, for name filters: cached, else looked up.

        None means Runloop has no usable name for it (404, or no name in the body), cached like a known
        name. A failed request raises RunloopError instead of returning None, so that the sync fails
        and is retried rather than filing a run by a name we could not learn (finished runs are
        counted once, so a wrong decision would stick until the next full read).
        """
        if benchmark_id in self._names:
            return self._names[benchmark_id]
        if benchmark_id in self._unnamed:
            return None
        if self._listed_at is None and not self._list_tried:
            self._list(self._deadline)  # one listing names most of them
            if benchmark_id in self._names:
                return self._names[benchmark_id]
        return self._fetch(benchmark_id, self._deadline)

    def _missing(self, benchmark_ids: Iterable[str]) -> list[str]:
        return sorted(
            bid for bid in set(benchmark_ids) if bid not in self._names and bid not in self._unnamed
        )

    def _fetch(self, benchmark_id: str, deadline: float | None) -> str | None:
        """`GET /v1/benchmarks/{id}` and cache the answer: the name, or that there is none to have."""
        body = self._client.get_benchmark(benchmark_id, deadline=deadline)
        _, name = benchmark_fields(body)
        if name is not None:
            self._names[benchmark_id] = name
            return name
        self._unnamed.add(benchmark_id)
        log.warning("benchmark has no usable name", benchmark_id=benchmark_id, found=body is not None)
        return None

    def _list(self, deadline: float | None) -> bool:
        """One listing of the active benchmarks (a page per 5,000); False when it failed."""
        started = self._clock()
        self._list_tried = True
        try:
            for page in self._client.iter_benchmark_pages(page_size=MAX_LIMIT, deadline=deadline):
                for record in page.records:
                    listed_id, name = benchmark_fields(record)
                    if listed_id is not None and name is not None:
                        self._names[listed_id] = name
                        self._unnamed.discard(listed_id)
        except ShutdownError:
            raise
        except RunloopError as exc:
            self._list_failures += 1
            log.warning("listing benchmarks failed; trying again at the next sync", error=str(exc))
            return False
        self._list_failures = 0
        if self._listed_at is not None:
            self._unnamed.clear()  # a refresh: ask again about those that had no name
        self._listed_at = started
        return True
