"""The simulated account's state: benchmarks and benchmark runs, in a thread-safe :class:`World`.

The runs live in a column store (:mod:`exporter.simulator.runs`), so a million of them take about 75 MB
and page fast. The list order of runs is undocumented by Runloop, so the World offers three orders
(``newest_first``, ``oldest_first``, ``shuffled``) and tests can check that the exporter's correctness never
depends on it. Benchmark jobs live in its job store (:mod:`exporter.simulator.jobs`), and the runs they
create are runs of this World.
"""

from __future__ import annotations

import json
import threading
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Final, Literal, cast, get_args

from exporter.simulator.columns import req_str
from exporter.simulator.jobs import JobStore
from exporter.simulator.runs import RUN_FIELDS, RunTable
from exporter.simulator.wire import DEFAULT_LIMIT, MAX_LIMIT, SimulatedApiError, dumps

Order = Literal["newest_first", "oldest_first", "shuffled"]
_ORDERS: Final[tuple[str, ...]] = get_args(Order)
_BENCHMARK_STATUSES: Final = ("active", "archived")


@dataclass(frozen=True)
class RunsPage:
    """One page of ``GET /v1/benchmark_runs``: runs already rendered as JSON objects."""

    runs_json: list[str]
    has_more: bool
    total_count: int | None

    def body(self) -> bytes:
        """The response body, built by joining pre-rendered runs (no per-field encoding)."""
        return (
            '{"runs":['
            + ",".join(self.runs_json)
            + '],"has_more":'
            + ("true" if self.has_more else "false")
            + ',"total_count":'
            + ("null" if self.total_count is None else str(self.total_count))
            + "}"
        ).encode()


class World:
    """Thread-safe in-memory state of a Runloop account: benchmarks and benchmark runs.

    The runs live in a :class:`~exporter.simulator.runs.RunTable`; the World guards it with one lock,
    keeps the benchmarks and the list order, and pages through the runs in that order.
    """

    def __init__(self, order: Order = "newest_first", seed: int = 0) -> None:
        self._check_order(order)
        self._lock = threading.RLock()
        self._order: Order = order
        self._runs = RunTable(seed)
        self._benchmarks: dict[str, tuple[str, str]] = {}
        self.jobs = JobStore(self, lambda: self._order, seed)  # benchmark jobs, whose runs live here

    # ------------------------------------------------------------------ benchmarks

    def add_benchmark(self, benchmark_id: str, name: str, status: str = "active") -> None:
        """Add a benchmark, or replace the name/status of an existing one (e.g. to archive it)."""
        if status not in _BENCHMARK_STATUSES:
            raise ValueError(f"status must be one of {_BENCHMARK_STATUSES}, not {status!r}")
        with self._lock:
            self._benchmarks[req_str("benchmark_id", benchmark_id)] = (req_str("name", name), status)
            self._runs.touch()

    def benchmark_names(self) -> dict[str, str]:
        """Every benchmark's name by id, archived ones included."""
        with self._lock:
            return {bid: name for bid, (name, _status) in self._benchmarks.items()}

    # ------------------------------------------------------------------ runs: writes

    def add_run(
        self,
        *,
        benchmark_id: str | None,
        state: str = "running",
        start_ms: int,
        duration_ms: int | None = None,
        score: float | None = None,
        name: str | None = None,
        metadata: dict[str, str] | None = None,
        purpose: str | None = None,
        run_id: str | None = None,
        environment_variables: dict[str, str] | None = None,
        secrets_provided: dict[str, str] | None = None,
    ) -> str:
        """Add a run and return its id (``bmr_`` and a unique suffix unless run_id is given)."""
        extras = (
            dumps({} if metadata is None else metadata),
            dumps(purpose),
            dumps(environment_variables),
            dumps(secrets_provided),
        )
        with self._lock:
            return self._runs.add(
                benchmark_id=benchmark_id,
                name=name,
                state=state,
                start_ms=start_ms,
                duration_ms=duration_ms,
                score=score,
                run_id=run_id,
                extras=extras,
            )

    def add_raw_run(self, record: dict[str, object]) -> str:
        """Store any JSON object verbatim as a run (bad-data tests); return its id or a generated one.

        Its str ``state``, ``benchmark_id`` and ``name`` take part in filters; anything else is only served.
        A duplicate id is allowed here (bad data): lookups by that id find the newest run holding it.
        """
        if not isinstance(record, dict):
            raise TypeError("record must be a dict")
        copy = cast(dict[str, object], json.loads(json.dumps(record)))
        with self._lock:
            return self._runs.add_raw(copy)

    def update_run(self, run_id: str, **fields: object) -> None:
        """Change fields of a run (names as in add_run: state, duration_ms, score, start_ms, ...)."""
        unknown = set(fields) - RUN_FIELDS
        if unknown:
            raise TypeError(f"unknown run field(s): {sorted(unknown)}")
        with self._lock:
            self._runs.update(run_id, fields)

    def finish_run(self, run_id: str, state: str, duration_ms: int, score: float | None = None) -> None:
        """End a running run: set its terminal state, duration and score."""
        self.update_run(run_id, state=state, duration_ms=duration_ms, score=score)

    def delete_run(self, run_id: str) -> None:
        """Remove a run; its id becomes unknown (so a cursor on it gets 400)."""
        with self._lock:
            self._runs.delete(run_id)

    def touch(self) -> None:
        """Note a change made from outside (the job store), so cached listings are rebuilt."""
        with self._lock:
            self._runs.touch()

    def set_order(self, order: Order) -> None:
        """Change the list order of the whole list (cursors stay valid, positions change)."""
        self._check_order(order)
        with self._lock:
            self._order = order
            self._runs.touch()

    def add_many_finished(self, n: int, benchmark_ids: list[str], start_ms: int, seed: int = 0) -> None:
        """Bulk-load n terminal runs, fast and compact (benchmarks of a big account).

        Runs are spread at random over benchmark_ids (benchmark_id null when the list is empty); about 85%
        completed with a score around a per-benchmark mean, 10% failed, 5% canceled; durations are
        log-uniform from 1 min to 2 h; start times begin at start_ms and advance 10 s on average per run
        in creation order. Columns are generated in chunks so the peak memory stays near the final size.
        """
        with self._lock:
            self._runs.add_many_finished(n, benchmark_ids, start_ms, seed)

    # ------------------------------------------------------------------ runs: reads

    @property
    def order(self) -> Order:
        """The current list order."""
        return self._order

    def run_count(self) -> int:
        """Number of runs (deleted ones excluded)."""
        with self._lock:
            return self._runs.count()

    def runs(self) -> list[dict[str, object]]:
        """Copies of all runs, in list order."""
        with self._lock:
            ordered = self._ordered(self._runs.matching(None, None, None, None), (None, None, None, None))
            if self._order == "newest_first":
                ordered = ordered[::-1]
            rendered = self._runs.render(ordered)
        return [cast(dict[str, object], json.loads(text)) for text in rendered]

    def get_run(self, run_id: str) -> dict[str, object] | None:
        """A copy of one run as the API serves it, or None."""
        text = self.run_json(run_id)
        return None if text is None else cast(dict[str, object], json.loads(text))

    def run_json(self, run_id: str) -> str | None:
        """One run rendered as the API serves it, or None when unknown."""
        with self._lock:
            slot = self._runs.slot_of(run_id)
            return None if slot is None else self._runs.render((slot,))[0]

    def list_runs(
        self,
        *,
        name: str | None = None,
        benchmark_id: str | None = None,
        state: str | None = None,
        search: str | None = None,
        limit: int = DEFAULT_LIMIT,
        starting_after: str | None = None,
        include_total_count: bool = True,
    ) -> RunsPage:
        """One page of runs matching all filters, after the cursor run in list order.

        Raises SimulatedApiError(400) for an unknown cursor. ``search`` matches a run whose id equals it or whose
        name contains it. total_count counts every match, not just the page.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise SimulatedApiError(400, f"limit must be between 1 and {MAX_LIMIT}")
        with self._lock:
            cursor: int | None = None
            if starting_after is not None:
                cursor = self._runs.slot_of(starting_after)
                if cursor is None:
                    raise SimulatedApiError(
                        400, f"starting_after: no benchmark run with id {starting_after!r}"
                    )
            matching = self._runs.matching(name, benchmark_id, state, search)
            order = self._order
            if order == "newest_first":
                end = len(matching) if cursor is None else bisect_left(matching, cursor)
                low = max(0, end - limit)
                page = matching[low:end][::-1]
                has_more = low > 0
            else:
                ordered = self._ordered(matching, (name, benchmark_id, state, search))
                if cursor is None:
                    pos = 0
                elif order == "oldest_first":
                    pos = bisect_right(ordered, cursor)
                else:
                    pos = bisect_right(ordered, self._runs.key[cursor], key=self._runs.key.__getitem__)
                page = ordered[pos : pos + limit]
                has_more = pos + limit < len(ordered)
            total = len(matching) if include_total_count else None
            return RunsPage(self._runs.render(page), has_more, total)

    def list_benchmarks(self, *, limit: int = DEFAULT_LIMIT, starting_after: str | None = None) -> bytes:
        """``GET /v1/benchmarks``: active benchmarks in creation order (archived ones are left out)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise SimulatedApiError(400, f"limit must be between 1 and {MAX_LIMIT}")
        with self._lock:
            ids = list(self._benchmarks)
            start = 0
            if starting_after is not None:
                if starting_after not in self._benchmarks:
                    raise SimulatedApiError(400, f"starting_after: no benchmark with id {starting_after!r}")
                start = ids.index(starting_after) + 1
            active = [b for b in ids if self._benchmarks[b][1] == "active"]
            after = [b for b in ids[start:] if self._benchmarks[b][1] == "active"]
            page = [self._benchmark_view(b) for b in after[:limit]]
            return dumps(
                {"benchmarks": page, "has_more": len(after) > limit, "total_count": len(active)}
            ).encode()

    def benchmark_json(self, benchmark_id: str) -> bytes | None:
        """``GET /v1/benchmarks/{id}`` (archived ones included), or None when unknown."""
        with self._lock:
            if benchmark_id not in self._benchmarks:
                return None
            return dumps(self._benchmark_view(benchmark_id)).encode()

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _check_order(order: str) -> None:
        if order not in _ORDERS:
            raise ValueError(f"order must be one of {_ORDERS}, not {order!r}")

    def _benchmark_view(self, benchmark_id: str) -> dict[str, object]:
        name, status = self._benchmarks[benchmark_id]
        return {"id": benchmark_id, "name": name, "metadata": {}, "status": status}

    def _ordered(self, matching: array[int] | range, filters: tuple[object, ...]) -> array[int] | range:
        """The matching slots in list order for oldest_first/shuffled (newest_first reverses the caller)."""
        return self._runs.shuffled(matching, filters) if self._order == "shuffled" else matching
