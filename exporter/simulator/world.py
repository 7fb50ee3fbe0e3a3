"""A realistic fake of Runloop's HTTP API on a real HTTP server bound to 127.0.0.1.

Demo mode, the tests and the benchmarks all talk to it over real sockets, so the exporter's HTTP code
(auth, paging, retries, timeouts) is exercised exactly as against ``api.runloop.ai``.

Three parts:

* :class:`World` is the account's state (benchmarks and benchmark runs). It stores runs column-wise in
  ``array`` objects and renders JSON per page, so a million runs take about 75 MB and page fast.
* :class:`Simulator` serves a World over HTTP and records every request; :class:`Faults` is its switchboard
  of failures (5xx, 429 with Retry-After, slow answers, broken bodies, broken cursors).
* :class:`DemoDriver` makes a World change as time passes, for demo mode.
* :class:`Latency` makes each answer take as long as Runloop's would from across the internet: a fixed
  round trip, jitter, and a transfer time that grows with the body (a 5,000-run page is slower than a
  single run). Every design choice about requests is measured with it, never on bare loopback.

The list order of runs is undocumented by Runloop, so the World offers three orders (``newest_first``,
``oldest_first``, ``shuffled``) and tests can check that the exporter's correctness never depends on it.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import math
import random
import socket
import threading
import time
import traceback
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Final, Literal, NotRequired, Self, TypedDict, cast, get_args
from urllib.parse import parse_qs, unquote, urlsplit

from exporter.simulator.jobs import ApiError, JobStore

__all__ = [
    "DEFAULT_API_KEY",
    "MAX_LIMIT",
    "DemoDriver",
    "Faults",
    "Latency",
    "Order",
    "RequestRecord",
    "Simulator",
    "World",
]

DEFAULT_API_KEY: Final = "sim-key"
DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 5000

Order = Literal["newest_first", "oldest_first", "shuffled"]
_ORDERS: Final[tuple[str, ...]] = get_args(Order)
_BENCHMARK_STATUSES: Final = ("active", "archived")

# Sentinels that keep nullable columns in typed arrays: duration null <-> INT64 min, score null <-> NaN.
_NULL_INT: Final = -(2**63)
_NAN: Final = math.nan

# Generated run ids are a bijection of the slot number, scrambled so they do not sort by creation time
# (nothing may rely on ids being ordered) and decodable so that a million ids cost no memory at all.
_ID_BITS: Final = 40
_ID_MASK: Final = (1 << _ID_BITS) - 1
_ID_MUL: Final = 0x9E3779B97F  # odd, hence invertible modulo 2**40
_ID_ADD: Final = 0x5DEECE66D
_ID_INV: Final = pow(_ID_MUL, -1, 1 << _ID_BITS)
_ID_PREFIX: Final = "bmr_"
_ID_LEN: Final = len(_ID_PREFIX) + 10


def _gen_id(slot: int) -> str:
    """The generated id of a slot: ``bmr_`` and 10 hex digits."""
    return f"{_ID_PREFIX}{(slot * _ID_MUL + _ID_ADD) & _ID_MASK:010x}"


def _decode_id(run_id: str) -> int | None:
    """The slot a generated id stands for, or None when the string is not a generated id."""
    if len(run_id) != _ID_LEN or not run_id.startswith(_ID_PREFIX):
        return None
    digits = run_id[len(_ID_PREFIX) :]
    try:
        number = int(digits, 16)
    except ValueError:
        return None
    if f"{number:010x}" != digits:  # rejects upper case, signs, "0x", underscores, spaces
        return None
    return ((number - _ID_ADD) * _ID_INV) & _ID_MASK


def _dumps(value: object) -> str:
    """Compact JSON, as an API would send it."""
    return json.dumps(value, separators=(",", ":"))


class _Interner:
    """Maps repeated strings (states, benchmark ids, names) to small codes with their JSON pre-encoded.

    Code 0 is reserved for null, so a run's column holds an int and rendering is a list lookup.
    """

    def __init__(self) -> None:
        self.values: list[str | None] = [None]
        self.json: list[str] = ["null"]
        self.codes: dict[str, int] = {}

    def code(self, value: str | None) -> int:
        """The code of value, allocating one when new."""
        if value is None:
            return 0
        found = self.codes.get(value)
        if found is not None:
            return found
        new = len(self.values)
        self.values.append(value)
        self.json.append(_dumps(value))
        self.codes[value] = new
        return new


_EMPTY: Final[array[int]] = array("q")  # shared, never mutated

_RUN_FIELDS: Final = frozenset(
    {
        "benchmark_id",
        "name",
        "state",
        "start_ms",
        "duration_ms",
        "score",
        "metadata",
        "purpose",
        "environment_variables",
        "secrets_provided",
    }
)
_EXTRA_FIELDS: Final = ("metadata", "purpose", "environment_variables", "secrets_provided")
_DEFAULT_EXTRAS: Final = ("{}", "null", "null", "null")


def _opt_str(name: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")


def _req_str(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"{name} must be a str, not {type(value).__name__}")


def _req_int(name: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"{name} must be an int, not {type(value).__name__}")


def _opt_int(name: str, value: object) -> int:
    """An int column value; None becomes the null sentinel."""
    return _NULL_INT if value is None else _req_int(name, value)


def _opt_float(name: str, value: object) -> float:
    """A float column value; None becomes NaN (rendered as null)."""
    if value is None:
        return _NAN
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if math.isinf(number):
            raise ValueError(f"{name} must be finite")
        return number
    raise TypeError(f"{name} must be a number or None, not {type(value).__name__}")


def _index_remove(index: array[int], slot: int) -> None:
    pos = bisect_left(index, slot)
    if pos < len(index) and index[pos] == slot:
        del index[pos]


def _index_add(index: array[int], slot: int) -> None:
    pos = bisect_left(index, slot)
    if pos == len(index) or index[pos] != slot:
        index.insert(pos, slot)


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

    Each run lives in a slot (its creation number) across typed arrays; an index of slots by state, by
    benchmark and of all live runs stays sorted by slot, so filters touch only their candidates and a
    cursor is a binary search. Filtered or shuffled lists are cached until the World next changes.
    """

    def __init__(self, order: Order = "newest_first", seed: int = 0) -> None:
        self._check_order(order)
        self._lock = threading.RLock()
        self._order: Order = order
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self._version = 0
        self._n = 0
        self._alive_flag = bytearray()
        self._alive: array[int] = array("q")
        self._start: array[int] = array("q")
        self._duration: array[int] = array("q")
        self._score: array[float] = array("d")
        self._state: array[int] = array("H")
        self._bench: array[int] = array("I")
        self._name: array[int] = array("I")
        self._key: array[int] = array("Q")  # random high 32 bits | slot: the shuffled order, unique
        self._states = _Interner()
        self._benches = _Interner()
        self._names = _Interner()
        self._by_state: dict[int, array[int]] = {}
        self._by_bench: dict[int, array[int]] = {}
        self._extras: dict[int, tuple[str, str, str, str]] = {}
        self._raw: dict[int, dict[str, object]] = {}
        self._custom_ids: dict[str, int] = {}
        self._id_override: dict[int, str] = {}
        self._benchmarks: dict[str, tuple[str, str]] = {}
        self._cache: dict[tuple[object, ...], array[int]] = {}
        self._cache_version = -1
        self.jobs = JobStore(self, lambda: self._order, seed)  # benchmark jobs, whose runs live here

    # ------------------------------------------------------------------ benchmarks

    def add_benchmark(self, benchmark_id: str, name: str, status: str = "active") -> None:
        """Add a benchmark, or replace the name/status of an existing one (e.g. to archive it)."""
        if status not in _BENCHMARK_STATUSES:
            raise ValueError(f"status must be one of {_BENCHMARK_STATUSES}, not {status!r}")
        with self._lock:
            self._benchmarks[_req_str("benchmark_id", benchmark_id)] = (_req_str("name", name), status)
            self._version += 1

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
            _dumps({} if metadata is None else metadata),
            _dumps(purpose),
            _dumps(environment_variables),
            _dumps(secrets_provided),
        )
        with self._lock:
            if run_id is not None and self._slot_of(_req_str("run_id", run_id)) is not None:
                raise ValueError(f"a run with id {run_id!r} already exists")
            run_id = self._append(
                bench=self._benches.code(_opt_str("benchmark_id", benchmark_id)),
                name=self._names.code(_opt_str("name", name)),
                start=_req_int("start_ms", start_ms),
                duration=_opt_int("duration_ms", duration_ms),
                state=self._states.code(_req_str("state", state)),
                score=_opt_float("score", score),
                run_id=run_id,
            )
            if extras != _DEFAULT_EXTRAS:
                self._extras[self._n - 1] = extras
            return run_id

    def add_raw_run(self, record: dict[str, object]) -> str:
        """Store any JSON object verbatim as a run (bad-data tests); return its id or a generated one.

        Its str ``state``, ``benchmark_id`` and ``name`` take part in filters; anything else is only served.
        A duplicate id is allowed here (bad data): lookups by that id find the newest run holding it.
        """
        if not isinstance(record, dict):
            raise TypeError("record must be a dict")
        copy = cast(dict[str, object], json.loads(json.dumps(record)))
        raw_id = copy.get("id")
        with self._lock:
            slot = self._n
            run_id = self._append(
                bench=0,
                name=0,
                start=0,
                duration=_NULL_INT,
                state=0,
                score=_NAN,
                run_id=raw_id if isinstance(raw_id, str) else None,
            )
            self._raw[slot] = copy
            self._reindex_raw(slot)
            return run_id

    def update_run(self, run_id: str, **fields: object) -> None:
        """Change fields of a run (names as in add_run: state, duration_ms, score, start_ms, ...)."""
        unknown = set(fields) - _RUN_FIELDS
        if unknown:
            raise TypeError(f"unknown run field(s): {sorted(unknown)}")
        with self._lock:
            slot = self._require(run_id)
            raw = self._raw.get(slot)
            if raw is not None:
                for key, value in fields.items():
                    raw["start_time_ms" if key == "start_ms" else key] = value
                self._reindex_raw(slot)
            else:
                self._update_columns(slot, fields)
            self._version += 1

    def finish_run(self, run_id: str, state: str, duration_ms: int, score: float | None = None) -> None:
        """End a running run: set its terminal state, duration and score."""
        self.update_run(run_id, state=state, duration_ms=duration_ms, score=score)

    def delete_run(self, run_id: str) -> None:
        """Remove a run; its id becomes unknown (so a cursor on it gets 400)."""
        with self._lock:
            slot = self._require(run_id)
            self._alive_flag[slot] = 0
            _index_remove(self._alive, slot)
            _index_remove(self._by_state[self._state[slot]], slot)
            _index_remove(self._by_bench[self._bench[slot]], slot)
            self._raw.pop(slot, None)
            self._extras.pop(slot, None)
            own_id = self._id_override.pop(slot, None)
            if own_id is not None and self._custom_ids.get(own_id) == slot:
                del self._custom_ids[own_id]
            self._version += 1

    def touch(self) -> None:
        """Note a change made from outside (the job store), so cached listings are rebuilt."""
        with self._lock:
            self._version += 1

    def set_order(self, order: Order) -> None:
        """Change the list order of the whole list (cursors stay valid, positions change)."""
        self._check_order(order)
        with self._lock:
            self._order = order
            self._version += 1

    def add_many_finished(self, n: int, benchmark_ids: list[str], start_ms: int, seed: int = 0) -> None:
        """Bulk-load n terminal runs, fast and compact (benchmarks of a big account).

        Runs are spread at random over benchmark_ids (benchmark_id null when the list is empty); about 85%
        completed with a score around a per-benchmark mean, 10% failed, 5% canceled; durations are
        log-uniform from 1 min to 2 h; start times begin at start_ms and advance 10 s on average per run
        in creation order. Columns are generated in chunks so the peak memory stays near the final size.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        rnd = rng.random
        with self._lock:
            bench_codes = [self._benches.code(b) for b in benchmark_ids] or [0]
            n_bench = len(bench_codes)
            means = [0.25 + 0.6 * rnd() for _ in bench_codes]
            pools = [
                [
                    self._names.code(f"{benchmark_ids[b] if benchmark_ids else 'job'}-run-{i:02d}")
                    for i in range(64)
                ]
                for b in range(n_bench)
            ]
            completed = self._states.code("completed")
            failed = self._states.code("failed")
            canceled = self._states.code("canceled")
            state_index = {c: self._index(self._by_state, c) for c in (completed, failed, canceled)}
            bench_index = [self._index(self._by_bench, c) for c in bench_codes]
            log_lo, log_span = math.log(60_000), math.log(7_200_000) - math.log(60_000)
            exp, getrandbits = math.exp, self._rng.getrandbits
            clock = start_ms
            chunk = 1 << 16
            for first in range(self._n, self._n + n, chunk):
                slots = range(first, min(first + chunk, self._n + n))
                benches = [int(rnd() * n_bench) for _ in slots]
                draws = [rnd() for _ in slots]
                states = [completed if u < 0.85 else failed if u < 0.95 else canceled for u in draws]
                starts = []
                for _ in slots:
                    starts.append(clock)
                    clock += int(rnd() * 20_000)
                self._start.extend(starts)
                self._duration.extend([int(exp(log_lo + log_span * rnd())) for _ in slots])
                self._score.extend(
                    [
                        round(min(1.0, max(0.0, means[b] + (rnd() + rnd() - 1.0) * 0.3)), 4)
                        if s == completed
                        else _NAN
                        for b, s in zip(benches, states, strict=True)
                    ]
                )
                self._state.extend(states)
                self._bench.extend([bench_codes[b] for b in benches])
                self._name.extend([pools[b][slot & 63] for b, slot in zip(benches, slots, strict=True)])
                self._key.extend([(getrandbits(32) << 32) | slot for slot in slots])
                self._alive_flag.extend(b"\x01" * len(slots))
                self._alive.extend(slots)
                for slot, s, b in zip(slots, states, benches, strict=True):
                    state_index[s].append(slot)
                    bench_index[b].append(slot)
            new_first, self._n = self._n, self._n + n
            for custom, slot in list(self._custom_ids.items()):
                decoded = _decode_id(custom)
                if decoded is not None and new_first <= decoded < self._n and decoded != slot:
                    self._give_unique_id(decoded)
            self._version += 1

    # ------------------------------------------------------------------ runs: reads

    @property
    def order(self) -> Order:
        """The current list order."""
        return self._order

    def run_count(self) -> int:
        """Number of runs (deleted ones excluded)."""
        with self._lock:
            return len(self._alive)

    def runs(self) -> list[dict[str, object]]:
        """Copies of all runs, in list order."""
        with self._lock:
            ordered = self._ordered(self._matching(None, None, None, None), (None, None, None, None))
            if self._order == "newest_first":
                ordered = ordered[::-1]
            rendered = self._render_many(ordered)
        return [cast(dict[str, object], json.loads(text)) for text in rendered]

    def get_run(self, run_id: str) -> dict[str, object] | None:
        """A copy of one run as the API serves it, or None."""
        text = self.run_json(run_id)
        return None if text is None else cast(dict[str, object], json.loads(text))

    def run_json(self, run_id: str) -> str | None:
        """One run rendered as the API serves it, or None when unknown."""
        with self._lock:
            slot = self._slot_of(run_id)
            return None if slot is None else self._render_many((slot,))[0]

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

        Raises ApiError(400) for an unknown cursor. ``search`` matches a run whose id equals it or whose
        name contains it. total_count counts every match, not just the page.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}")
        with self._lock:
            cursor: int | None = None
            if starting_after is not None:
                cursor = self._slot_of(starting_after)
                if cursor is None:
                    raise ApiError(400, f"starting_after: no benchmark run with id {starting_after!r}")
            matching = self._matching(name, benchmark_id, state, search)
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
                    pos = bisect_right(ordered, self._key[cursor], key=self._key.__getitem__)
                page = ordered[pos : pos + limit]
                has_more = pos + limit < len(ordered)
            total = len(matching) if include_total_count else None
            return RunsPage(self._render_many(page), has_more, total)

    def list_benchmarks(self, *, limit: int = DEFAULT_LIMIT, starting_after: str | None = None) -> bytes:
        """``GET /v1/benchmarks``: active benchmarks in creation order (archived ones are left out)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}")
        with self._lock:
            ids = list(self._benchmarks)
            start = 0
            if starting_after is not None:
                if starting_after not in self._benchmarks:
                    raise ApiError(400, f"starting_after: no benchmark with id {starting_after!r}")
                start = ids.index(starting_after) + 1
            active = [b for b in ids if self._benchmarks[b][1] == "active"]
            after = [b for b in ids[start:] if self._benchmarks[b][1] == "active"]
            page = [self._benchmark_view(b) for b in after[:limit]]
            return _dumps(
                {"benchmarks": page, "has_more": len(after) > limit, "total_count": len(active)}
            ).encode()

    def benchmark_json(self, benchmark_id: str) -> bytes | None:
        """``GET /v1/benchmarks/{id}`` (archived ones included), or None when unknown."""
        with self._lock:
            if benchmark_id not in self._benchmarks:
                return None
            return _dumps(self._benchmark_view(benchmark_id)).encode()

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _check_order(order: str) -> None:
        if order not in _ORDERS:
            raise ValueError(f"order must be one of {_ORDERS}, not {order!r}")

    def _benchmark_view(self, benchmark_id: str) -> dict[str, object]:
        name, status = self._benchmarks[benchmark_id]
        return {"id": benchmark_id, "name": name, "metadata": {}, "status": status}

    @staticmethod
    def _index(table: dict[int, array[int]], code: int) -> array[int]:
        index = table.get(code)
        if index is None:
            index = table[code] = array("q")
        return index

    def _append(
        self,
        *,
        bench: int,
        name: int,
        start: int,
        duration: int,
        state: int,
        score: float,
        run_id: str | None,
    ) -> str:
        """Allocate the next slot for a run and index it; return its id."""
        slot = self._n
        self._n += 1
        self._start.append(start)
        self._duration.append(duration)
        self._score.append(score)
        self._state.append(state)
        self._bench.append(bench)
        self._name.append(name)
        self._key.append((self._rng.getrandbits(32) << 32) | slot)
        self._alive_flag.append(1)
        self._alive.append(slot)
        self._index(self._by_state, state).append(slot)
        self._index(self._by_bench, bench).append(slot)
        self._version += 1
        if run_id is not None:
            self._id_override[slot] = run_id
            self._custom_ids[run_id] = slot
            return run_id
        generated = _gen_id(slot)
        if generated in self._custom_ids:  # someone chose this very id by hand earlier
            return self._give_unique_id(slot)
        return generated

    def _give_unique_id(self, slot: int) -> str:
        """Give a slot whose generated id is taken by a hand-chosen id another unique id."""
        while True:
            candidate = f"{_ID_PREFIX}{slot:x}x{self._rng.getrandbits(32):08x}"
            if candidate not in self._custom_ids:
                self._id_override[slot] = candidate
                self._custom_ids[candidate] = slot
                return candidate

    def _slot_of(self, run_id: str) -> int | None:
        """The live slot of a run id, or None."""
        slot = self._custom_ids.get(run_id)
        if slot is None:
            slot = _decode_id(run_id)
            if slot is None or slot >= self._n or slot in self._id_override:
                return None
        return slot if self._alive_flag[slot] else None

    def _require(self, run_id: str) -> int:
        slot = self._slot_of(run_id)
        if slot is None:
            raise KeyError(run_id)
        return slot

    def _set_state(self, slot: int, code: int) -> None:
        old = self._state[slot]
        if old != code:
            _index_remove(self._by_state[old], slot)
            _index_add(self._index(self._by_state, code), slot)
            self._state[slot] = code

    def _set_bench(self, slot: int, code: int) -> None:
        old = self._bench[slot]
        if old != code:
            _index_remove(self._by_bench[old], slot)
            _index_add(self._index(self._by_bench, code), slot)
            self._bench[slot] = code

    def _reindex_raw(self, slot: int) -> None:
        """Make a raw record's str state/benchmark_id/name visible to the filters."""
        record = self._raw[slot]
        state, bench, name = record.get("state"), record.get("benchmark_id"), record.get("name")
        self._set_state(slot, self._states.code(state) if isinstance(state, str) else 0)
        self._set_bench(slot, self._benches.code(bench) if isinstance(bench, str) else 0)
        self._name[slot] = self._names.code(name) if isinstance(name, str) else 0

    def _update_columns(self, slot: int, fields: dict[str, object]) -> None:
        """Validate every field first, then apply: an update is all or nothing."""
        setters: list[tuple[str, object]] = []
        for key, value in fields.items():
            if key == "state":
                setters.append((key, _req_str(key, value)))
            elif key in ("benchmark_id", "name"):
                setters.append((key, _opt_str(key, value)))
            elif key == "start_ms":
                setters.append((key, _req_int(key, value)))
            elif key == "duration_ms":
                setters.append((key, _opt_int(key, value)))
            elif key == "score":
                setters.append((key, _opt_float(key, value)))
            else:
                setters.append((key, _dumps({} if key == "metadata" and value is None else value)))
        for key, value in setters:
            if key == "state":
                self._set_state(slot, self._states.code(cast(str, value)))
            elif key == "benchmark_id":
                self._set_bench(slot, self._benches.code(cast(str | None, value)))
            elif key == "name":
                self._name[slot] = self._names.code(cast(str | None, value))
            elif key == "start_ms":
                self._start[slot] = cast(int, value)
            elif key == "duration_ms":
                self._duration[slot] = cast(int, value)
            elif key == "score":
                self._score[slot] = cast(float, value)
            else:
                extras = list(self._extras.get(slot, _DEFAULT_EXTRAS))
                extras[_EXTRA_FIELDS.index(key)] = cast(str, value)
                self._extras[slot] = (extras[0], extras[1], extras[2], extras[3])

    def _cached(self, key: tuple[object, ...]) -> array[int] | None:
        if self._cache_version != self._version:
            self._cache.clear()
            self._cache_version = self._version
        return self._cache.get(key)

    def _store(self, key: tuple[object, ...], value: array[int]) -> array[int]:
        if len(self._cache) >= 32:
            self._cache.clear()
        self._cache[key] = value
        return value

    def _matching(
        self, name: str | None, benchmark_id: str | None, state: str | None, search: str | None
    ) -> array[int] | range:
        """Slots of the live runs matching all filters, ascending (i.e. creation order).

        The smallest of the state and benchmark indexes is the candidate set; other filters are checked
        on those candidates only, and the result is cached until the World changes.
        """
        state_code = bench_code = None
        bases: list[array[int]] = []
        if state is not None:
            state_code = self._states.codes.get(state)
            if state_code is None:
                return _EMPTY
            bases.append(self._by_state.get(state_code, _EMPTY))
        if benchmark_id is not None:
            bench_code = self._benches.codes.get(benchmark_id)
            if bench_code is None:
                return _EMPTY
            bases.append(self._by_bench.get(bench_code, _EMPTY))
        if name is None and search is None and len(bases) < 2:
            return bases[0] if bases else self._alive
        key = ("match", name, benchmark_id, state, search)
        cached = self._cached(key)
        if cached is not None:
            return cached
        base = min(bases, key=len) if bases else self._alive
        name_set: set[int] = set()
        if name is not None and name in self._names.codes:
            name_set.add(self._names.codes[name])
        search_set: set[int] = set()
        search_slot = None
        if search is not None:
            search_set = {c for c, v in enumerate(self._names.values) if v is not None and search in v}
            search_slot = self._slot_of(search)
        states, benches, names = self._state, self._bench, self._name
        result = array("q")
        for slot in base:
            if state_code is not None and states[slot] != state_code:
                continue
            if bench_code is not None and benches[slot] != bench_code:
                continue
            if name is not None and names[slot] not in name_set:
                continue
            if search is not None and slot != search_slot and names[slot] not in search_set:
                continue
            result.append(slot)
        return self._store(key, result)

    def _ordered(self, matching: array[int] | range, filters: tuple[object, ...]) -> array[int] | range:
        """The matching slots in list order for oldest_first/shuffled (newest_first reverses the caller)."""
        if self._order != "shuffled":
            return matching
        key = ("shuffled", *filters)
        cached = self._cached(key)
        if cached is not None:
            return cached
        return self._store(key, array("q", sorted(matching, key=self._key.__getitem__)))

    def _render_many(self, slots: Iterable[int]) -> list[str]:
        """Render runs to JSON text; the hot path of paging, so it uses pre-encoded pieces only."""
        out: list[str] = []
        append = out.append
        raw, extras, override = self._raw, self._extras, self._id_override
        start, duration, score = self._start, self._duration, self._score
        state, bench, name = self._state, self._bench, self._name
        state_json, bench_json, name_json = self._states.json, self._benches.json, self._names.json
        null, isnan = _NULL_INT, math.isnan
        for slot in slots:
            if raw and slot in raw:
                append(_dumps(raw[slot]))
                continue
            own = override.get(slot) if override else None
            run_id = f'"{_gen_id(slot)}"' if own is None else _dumps(own)
            dur = duration[slot]
            sc = score[slot]
            meta, purpose, env, secrets = extras.get(slot, _DEFAULT_EXTRAS) if extras else _DEFAULT_EXTRAS
            append(
                f'{{"id":{run_id},"benchmark_id":{bench_json[bench[slot]]},"name":{name_json[name[slot]]},'
                f'"start_time_ms":{start[slot]},"duration_ms":{"null" if dur == null else dur},'
                f'"state":{state_json[state[slot]]},"score":{"null" if isnan(sc) else repr(sc)},'
                f'"metadata":{meta},"purpose":{purpose},"environment_variables":{env},'
                f'"secrets_provided":{secrets}}}'
            )
        return out


# ---------------------------------------------------------------------- faults


FaultKind = Literal["fail", "malformed_json", "wrong_shape", "close_mid_body", "huge_body"]


@dataclass
class _PendingFault:
    kind: FaultKind
    remaining: int
    path_prefix: str
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    size: int = 0
    declare_length: bool = True


class Faults:
    """A thread-safe switchboard of API failures, flipped by tests while the server runs.

    One-shot faults (``*_next``) queue up and each matching request consumes one, first queued first.
    The plain attributes apply to every request until changed: ``delay_seconds`` (sleep before answering,
    for timeouts), ``stuck_cursor`` (the list endpoints ignore ``starting_after`` and always say
    has_more), ``has_more_forever`` (has_more is true even on the last page and after it),
    ``total_count`` ("exact"; "null": always null; "page": the size of the page only) and
    ``ignore_benchmark_filter`` (list every benchmark's runs whatever ``benchmark_id`` asks for): servers
    that stray from the documented contract in ways the exporter must not be fooled by.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[_PendingFault] = []
        self.delay_seconds: float = 0.0
        self.stuck_cursor: bool = False
        self.has_more_forever: bool = False
        self.total_count: Literal["exact", "null", "page"] = "exact"
        self.ignore_benchmark_filter: bool = False
        self.huge_bytes_sent = 0  # bytes of huge bodies the client actually took, over all of them

    def fail_next(
        self,
        n: int,
        status: int,
        body: bytes = b'{"error":"boom"}',
        headers: dict[str, str] | None = None,
        path_prefix: str = "/v1",
    ) -> None:
        """Answer the next n requests under path_prefix with this status, body and headers.

        E.g. 500/503, 429 with ``{"Retry-After": "2"}`` or an HTTP date, 401/403 for a revoked key.
        """
        self._queue(_PendingFault("fail", n, path_prefix, status, body, dict(headers or {})))

    def malformed_json_next(self, n: int, path_prefix: str = "/v1") -> None:
        """Answer the next n requests with 200 and the real body cut in half (invalid JSON)."""
        self._queue(_PendingFault("malformed_json", n, path_prefix))

    def wrong_shape_next(self, n: int, path_prefix: str = "/v1") -> None:
        """Answer the next n requests with 200 and valid JSON of the wrong shape: ``{"items": []}``."""
        self._queue(_PendingFault("wrong_shape", n, path_prefix))

    def close_mid_body_next(self, n: int, path_prefix: str = "/v1") -> None:
        """For the next n requests, promise the full Content-Length, send half the body and hang up."""
        self._queue(_PendingFault("close_mid_body", n, path_prefix))

    def huge_body_next(
        self, n: int, size: int, *, declare_length: bool = True, path_prefix: str = "/v1"
    ) -> None:
        """Answer the next n requests with 200 and a body of `size` bytes (spaces), streamed in chunks
        and never held whole: a misbehaving proxy or a bug. With ``declare_length=False`` there is no
        Content-Length (the body ends when the connection closes), so only counting can catch it."""
        self._queue(_PendingFault("huge_body", n, path_prefix, size=size, declare_length=declare_length))

    def pending(self) -> int:
        """How many one-shot faults are still to be served."""
        with self._lock:
            return sum(f.remaining for f in self._pending)

    def clear(self) -> None:
        """Back to a healthy API: no queued faults, no delay, honest cursors."""
        with self._lock:
            self._pending.clear()
            self.delay_seconds = 0.0
            self.stuck_cursor = False
            self.has_more_forever = False
            self.total_count = "exact"
            self.ignore_benchmark_filter = False

    def take(self, path: str) -> _PendingFault | None:
        """Consume the first queued fault that applies to path (called once per request)."""
        with self._lock:
            for fault in self._pending:
                if path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._pending.remove(fault)
                    return fault
            return None

    def _queue(self, fault: _PendingFault) -> None:
        if fault.remaining < 0:
            raise ValueError("n must be >= 0")
        if fault.remaining:
            with self._lock:
                self._pending.append(fault)


# ---------------------------------------------------------------------- HTTP server


@dataclass(frozen=True)
class Latency:
    """How long each answer takes: `base_s`, plus up to `jitter_s` at random, plus the body's transfer.

    `bytes_per_s` is the transfer rate of the body: at 20 MB/s a page of 5,000 runs (about 1.5 MB) adds
    75 ms, one run adds nothing to speak of. Requests are answered concurrently, each with its own delay.
    """

    base_s: float = 0.0
    jitter_s: float = 0.0
    bytes_per_s: float | None = None

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.jitter_s < 0 or (self.bytes_per_s is not None and self.bytes_per_s <= 0):
            raise ValueError("latency values must be >= 0 and bytes_per_s > 0")

    @classmethod
    def realistic(cls, low_ms: float = 50, high_ms: float = 150) -> Latency:
        """Runloop as seen from a cluster elsewhere on the internet: 50 to 150 ms, 20 MB/s."""
        return cls(base_s=low_ms / 1000, jitter_s=(high_ms - low_ms) / 1000, bytes_per_s=20e6)

    def seconds(self, body_bytes: int, rng: random.Random) -> float:
        """The delay for one answer of this size."""
        transfer = 0.0 if self.bytes_per_s is None else body_bytes / self.bytes_per_s
        return self.base_s + (rng.uniform(0, self.jitter_s) if self.jitter_s else 0.0) + transfer


@dataclass(frozen=True)
class RequestRecord:
    """One request the simulator received (the Authorization header is never kept)."""

    method: str
    path: str
    query: dict[str, str]
    at: float = 0.0  # time.monotonic() on arrival: lets tests check back-off and Retry-After timing


_Response = tuple[int, bytes, dict[str, str]]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> _Response:
    return status, _dumps({"error": message}).encode(), headers or {}


def _param(query: dict[str, str], name: str) -> str | None:
    """A query parameter; empty means not given (the spec's allowEmptyValue)."""
    return query.get(name) or None


def _parse_limit(query: dict[str, str]) -> int:
    text = _param(query, "limit")
    if text is None:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise ApiError(400, f"limit must be an integer, not {text!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit


def _parse_bool(query: dict[str, str], name: str, default: bool) -> bool:
    text = _param(query, name)
    if text is None:
        return default
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ApiError(400, f"{name} must be true or false, not {text!r}")


def _check_loopback(host: str) -> None:
    """The simulator must never listen beyond this machine."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host must be an IPv4 loopback address such as 127.0.0.1, not {host!r}") from None
    if address.version != 4 or not address.is_loopback:
        raise ValueError(f"host must be an IPv4 loopback address such as 127.0.0.1, not {host!r}")


class _Server(ThreadingHTTPServer):
    """Threaded, quiet, with a deep backlog, and able to hang up on idle keep-alive clients at stop."""

    daemon_threads = True
    block_on_close = False  # idle keep-alive handlers would block stop(); we shut their sockets instead
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay quiet: clients hanging up mid-answer is normal here (faults, timeouts)."""

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Turns one HTTP request into a Simulator call, applying faults on the way."""

    protocol_version = "HTTP/1.1"
    server_version = "runloop-simulator/1"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are dropped eventually, like a real load balancer
    disable_nagle_algorithm = True  # headers and body go out in two writes: avoid 40 ms delayed-ACK stalls

    def setup(self) -> None:
        super().setup()
        server = cast(_Server, self.server)
        with server.connections_lock:
            server.connections.add(self.connection)

    def finish(self) -> None:
        server = cast(_Server, self.server)
        with server.connections_lock:
            server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """No per-request log lines on stderr."""

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        sim = cast(_Server, self.server).simulator
        sim._enter()
        try:
            self._answer(sim)
        finally:
            sim._leave()

    def _answer(self, sim: Simulator) -> None:
        split = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        sim._record(RequestRecord(self.command, split.path, query, time.monotonic()))
        self._drain_body()
        delay = sim.faults.delay_seconds
        if delay > 0 and sim._stopping.wait(delay):
            self.close_connection = True
            return
        fault = sim.faults.take(split.path)
        if fault is not None and fault.kind == "fail":
            self._send(fault.status, fault.body, fault.headers)
            return
        if fault is not None and fault.kind == "wrong_shape":
            self._send(200, b'{"items":[]}', {})
            return
        try:
            status, body, headers = sim._dispatch(
                self.command, split.path, query, self.headers.get("Authorization")
            )
        except Exception:  # a simulator bug: answer like a server would, keep the traceback for tests
            sim._errors_append(traceback.format_exc())
            status, body, headers = _error(500, "internal simulator error")
        lag = sim.latency.seconds(len(body), sim._rng)
        if lag > 0 and sim._stopping.wait(lag):
            self.close_connection = True
            return
        if fault is not None and fault.kind == "malformed_json":
            self._send(200, body[: len(body) // 2], {})
        elif fault is not None and fault.kind == "close_mid_body":
            self._send_partial(body)
        elif fault is not None and fault.kind == "huge_body":
            self._send_huge(fault.size, declare_length=fault.declare_length)
        else:
            self._send(status, body, headers)

    def _drain_body(self) -> None:
        """Read a request body so the keep-alive connection stays in step."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return
        length = self.headers.get("Content-Length")
        if length:
            try:
                self.rfile.read(int(length))
            except ValueError:
                self.close_connection = True

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            if not any(k.lower() == "content-type" for k in headers):
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status == 405 and "Allow" not in headers:
                self.send_header("Allow", "GET")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _send_huge(self, size: int, *, declare_length: bool) -> None:
        """A 200 with `size` bytes of whitespace, sent chunk by chunk until done or the client hangs up."""
        faults = cast(_Server, self.server).simulator.faults
        chunk = b" " * 65536
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if declare_length:
                self.send_header("Content-Length", str(size))
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            left = size
            while left > 0:
                piece = chunk[: min(left, len(chunk))]
                self.wfile.write(piece)
                left -= len(piece)
                with faults._lock:
                    faults.huge_bytes_sent += len(piece)
        except OSError:
            pass

    def _send_partial(self, body: bytes) -> None:
        """Promise the whole body, send half of it, then hang up (a connection lost mid-body)."""
        body = body if len(body) >= 2 else b'{"runs":[]}'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True


class Simulator:
    """Serves a World over HTTP on 127.0.0.1, like api.runloop.ai.

    ``requests`` lists every request received, in order, even those a fault answered; ``errors`` holds
    tracebacks of simulator bugs (a test can assert it stays empty).
    """

    def __init__(
        self,
        world: World,
        *,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: Latency | None = None,
    ) -> None:
        _check_loopback(host)
        self.world = world
        self.api_key = api_key
        self.latency = latency or Latency()
        self._rng = random.Random(0)  # noqa: S311 - simulation, not cryptography
        self.faults = Faults()
        self.requests: list[RequestRecord] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests answered at once: what concurrency the client used
        self.errors: list[str] = []
        self.jobs_status: int | None = None  # 403 or 404: answer the job endpoints so (no beta access)
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL to give the client, e.g. ``http://127.0.0.1:43121`` (once started)."""
        if self._server is None:
            raise RuntimeError("simulator not started")
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> None:
        """Bind and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"runloop-simulator-{self._server.server_port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, hang up on open connections, close the socket and join the thread."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset_requests(self) -> None:
        """Forget the requests recorded so far (the list object stays the same)."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def _errors_append(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        )

    def _dispatch(self, method: str, path: str, query: dict[str, str], auth: str | None) -> _Response:
        """Route a request that no fault answered."""
        if path != "/v1" and not path.startswith("/v1/"):
            return _error(404, f"no such path: {path}")
        if not self._authorized(auth):
            return _error(401, "missing or invalid API key", {"WWW-Authenticate": 'Bearer realm="runloop"'})
        parts = path.split("/")
        route: str | None = None
        if path == "/v1/benchmark_runs":
            route = "list_runs"
        elif path == "/v1/benchmarks":
            route = "list_benchmarks"
        elif path == "/v1/benchmark_jobs":
            route = "list_jobs"
        elif len(parts) == 4 and parts[3] and parts[2] in ("benchmark_runs", "benchmarks", "benchmark_jobs"):
            route = parts[2]
        if route is None:
            return _error(404, f"no such path: {path}")
        if method != "GET":
            return _error(405, f"method {method} not allowed", {"Allow": "GET"})
        try:
            if route == "list_runs":
                return 200, self._list_runs(query), {}
            if route == "list_benchmarks":
                return 200, self._list_benchmarks(query), {}
            if self.jobs_status is not None and route in ("list_jobs", "benchmark_jobs"):
                return _error(self.jobs_status, "benchmark jobs are not available to this account")
            if route == "list_jobs":
                return 200, self._list_jobs(query), {}
            item_id = unquote(parts[3])
            if route == "benchmark_jobs":
                found = self.world.jobs.get(item_id)
            elif route == "benchmarks":
                found = self.world.benchmark_json(item_id)
            else:
                found = (self.world.run_json(item_id) or "").encode()
        except ApiError as exc:
            return _error(exc.status, exc.message)
        if not found:
            kind = {"benchmarks": "benchmark", "benchmark_jobs": "benchmark job"}.get(route, "benchmark run")
            return _error(404, f"no {kind} with id {item_id!r}")
        return 200, found, {}

    def _list_runs(self, query: dict[str, str]) -> bytes:
        faults = self.faults
        stuck = faults.stuck_cursor
        page = self.world.list_runs(
            name=_param(query, "name"),
            benchmark_id=None if faults.ignore_benchmark_filter else _param(query, "benchmark_id"),
            state=_param(query, "state"),
            search=_param(query, "search"),
            limit=_parse_limit(query),
            starting_after=None if stuck else _param(query, "starting_after"),
            include_total_count=_parse_bool(query, "include_total_count", True),
        )
        if stuck or faults.has_more_forever:
            page = RunsPage(page.runs_json, True, page.total_count)
        if faults.total_count != "exact":
            total = len(page.runs_json) if faults.total_count == "page" else None
            page = RunsPage(page.runs_json, page.has_more, total)
        return page.body()

    def _list_jobs(self, query: dict[str, str]) -> bytes:
        body = self.world.jobs.list_page(
            limit=_parse_limit(query),
            starting_after=_param(query, "starting_after"),
            include_total_count=_parse_bool(query, "include_total_count", True),
        )
        if self.faults.total_count == "exact":
            return body
        data = json.loads(body)
        data["total_count"] = len(data["jobs"]) if self.faults.total_count == "page" else None
        return _dumps(data).encode()

    def _list_benchmarks(self, query: dict[str, str]) -> bytes:
        faults = self.faults
        stuck = faults.stuck_cursor
        body = self.world.list_benchmarks(
            limit=_parse_limit(query), starting_after=None if stuck else _param(query, "starting_after")
        )
        if stuck or faults.has_more_forever:
            data = json.loads(body)
            data["has_more"] = True
            body = _dumps(data).encode()
        return body


# ---------------------------------------------------------------------- demo mode


@dataclass(frozen=True)
class _DemoBenchmark:
    id: str
    name: str
    mean_score: float
    status: str = "active"


_DEMO_BENCHMARKS: Final = (
    _DemoBenchmark("bmd_2xKf8Qm1SweVer", "swe-bench-verified", 0.58),
    _DemoBenchmark("bmd_2xKf9Tb4TermBn", "terminal-bench-core", 0.41),
    _DemoBenchmark("bmd_2xKfAh7nHumEvl", "humaneval-plus", 0.86),
    _DemoBenchmark("bmd_2xKfBc2rWebArn", "webarena-lite", 0.33),
    _DemoBenchmark("bmd_1pQz7Lk3SweLte", "swe-bench-lite-2024", 0.47, "archived"),  # history only
)
_DEMO_AGENTS: Final = ("baseline", "planner-v2", "reflexion")
# Agent configs of the demo's benchmark jobs, with how far each scores from its benchmark's mean.
_DEMO_AGENT_CONFIGS: Final = (
    (("claude-code", "claude-opus-4"), 0.18),
    (("claude-code", "claude-sonnet-4"), 0.10),
    (("openhands", "gpt-5"), 0.04),
    (("swe-agent", "gpt-4.1"), -0.08),
    (("aider", None), -0.16),
)
_DEMO_JOB_SCENARIOS: Final = 20
_DEMO_TRIGGERS: Final = ("nightly", "ci", "manual")
_MINUTE_MS: Final = 60_000
_HOUR_MS: Final = 60 * _MINUTE_MS
_DAY_MS: Final = 24 * _HOUR_MS


class _RunDescription(TypedDict):
    """The user fields of a demo run, passed to World.add_run."""

    benchmark_id: str | None
    name: str
    metadata: dict[str, str]
    purpose: str | None
    environment_variables: NotRequired[dict[str, str]]
    secrets_provided: NotRequired[dict[str, str]]


@dataclass(frozen=True)
class _LiveRun:
    start_ms: int
    end_ms: int
    benchmark: _DemoBenchmark | None


class DemoDriver:
    """Makes a World change as time passes (demo mode).

    Four active benchmarks (plus an archived one with old runs only) and a few benchmark-job runs with no
    benchmark. Runs start at random (about one every 12 s), last 20 s to 8 min, then end mostly completed
    with a score around their benchmark's mean, some failed or canceled. Deterministic for a seed.
    """

    mean_gap_ms: Final = 12_000

    def __init__(self, world: World, *, seed: int = 0, tick_seconds: float = 2.0) -> None:
        if tick_seconds <= 0:
            raise ValueError("tick_seconds must be > 0")
        self.world = world
        self.tick_seconds = tick_seconds
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self._lock = threading.Lock()
        self._live: dict[str, _LiveRun] = {}
        self._last_tick_ms: int | None = None
        self._counter = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs_rng = random.Random(seed + 7)  # noqa: S311 - its own stream: runs stay as they were
        self._live_jobs: dict[str, int] = {}  # job id -> when it ends (ms)
        for bench in _DEMO_BENCHMARKS:
            world.add_benchmark(bench.id, bench.name, bench.status)

    def seed_history(self, now_ms: int) -> None:
        """A few hundred finished runs over the last three days, and a few runs still going."""
        rng = self._rng
        with self._lock:
            finished: list[tuple[int, _DemoBenchmark | None, int]] = []
            for _ in range(360):
                bench = self._pick_benchmark(allow_archived=True)
                oldest = now_ms - 3 * _DAY_MS
                newest = now_ms - (
                    2 * _DAY_MS if bench is not None and bench.status == "archived" else 2 * _HOUR_MS
                )
                duration = int(math.exp(rng.uniform(math.log(_MINUTE_MS), math.log(2 * _HOUR_MS))))
                finished.append((rng.randint(oldest, newest), bench, duration))
            for start, bench, duration in sorted(finished, key=lambda item: item[0]):
                state, duration_ms, score = self._outcome(bench, duration)
                self.world.add_run(
                    state=state, start_ms=start, duration_ms=duration_ms, score=score, **self._describe(bench)
                )
            for _ in range(5):
                start = now_ms - rng.randint(0, 20 * _MINUTE_MS)
                self._start_run(start, max(now_ms + 30_000, start + rng.randint(5, 60) * _MINUTE_MS))
            jobs_rng = self._jobs_rng
            for created in sorted(
                jobs_rng.randint(now_ms - 3 * _DAY_MS, now_ms - _HOUR_MS) for _ in range(48)
            ):
                draw = jobs_rng.random()
                state = "failed" if draw < 0.06 else "timeout" if draw < 0.1 else "completed"
                self._add_job(created, state)
            self._add_job(now_ms - 5 * _MINUTE_MS, "running", ends_ms=now_ms + 2 * _MINUTE_MS)
            self._last_tick_ms = now_ms

    def _add_job(self, created_ms: int, state: str, ends_ms: int | None = None) -> None:
        """A benchmark job of two to four agent configs on an active benchmark."""
        rng = self._jobs_rng
        bench = rng.choice([b for b in _DEMO_BENCHMARKS if b.status == "active"])
        configs = rng.sample(_DEMO_AGENT_CONFIGS, rng.randint(2, 4))
        job_id = self.world.jobs.add(
            benchmark_id=bench.id,
            agents=[agent for agent, _ in configs],
            levels=[min(0.97, max(0.03, bench.mean_score + offset)) for _, offset in configs],
            create_ms=created_ms,
            state=state,
            n_scenarios=_DEMO_JOB_SCENARIOS,
            name=f"{bench.name}-agents-{created_ms}",
            seed=rng.getrandbits(31),
        )
        if ends_ms is not None:
            self._live_jobs[job_id] = ends_ms

    def tick(self, now_ms: int) -> None:
        """One step: runs whose time is up end; new runs start at random times since the last tick."""
        rng = self._rng
        with self._lock:
            for run_id, live in sorted(self._live.items(), key=lambda item: item[1].end_ms):
                if live.end_ms > now_ms:
                    continue
                del self._live[run_id]
                state, duration_ms, score = self._outcome(live.benchmark, live.end_ms - live.start_ms)
                with contextlib.suppress(KeyError):  # deleted behind our back (tests do): nothing to do
                    self.world.finish_run(run_id, state, duration_ms, score)
            last = (
                self._last_tick_ms
                if self._last_tick_ms is not None
                else now_ms - int(self.tick_seconds * 1000)
            )
            clock = float(last)
            for _ in range(50):
                clock += rng.expovariate(1.0 / self.mean_gap_ms)
                if clock > now_ms:
                    break
                start = int(clock)
                duration = int(math.exp(rng.uniform(math.log(20_000), math.log(8 * _MINUTE_MS))))
                self._start_run(start, start + duration)
            for job_id, ends_ms in sorted(self._live_jobs.items(), key=lambda item: item[1]):
                if ends_ms <= now_ms:
                    del self._live_jobs[job_id]
                    with contextlib.suppress(KeyError):
                        self.world.jobs.finish(
                            job_id, "timeout" if self._jobs_rng.random() < 0.1 else "completed"
                        )
            if not self._live_jobs and self._jobs_rng.random() < 0.05 * (now_ms - last) / 2_000:
                self._add_job(now_ms, "running", ends_ms=now_ms + self._jobs_rng.randint(1, 5) * _MINUTE_MS)
            self._last_tick_ms = max(now_ms, last)

    def running(self) -> list[str]:
        """Ids of the runs this driver has started and not yet finished."""
        with self._lock:
            return list(self._live)

    def start(self) -> None:
        """Tick every tick_seconds on the wall clock in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("demo driver already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="runloop-demo-driver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and join the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick(int(time.time() * 1000))
            self._stop.wait(self.tick_seconds)

    def _pick_benchmark(self, *, allow_archived: bool) -> _DemoBenchmark | None:
        if self._rng.random() < 0.04:
            return None  # a run created by a benchmark job: no benchmark_id
        choices = [b for b in _DEMO_BENCHMARKS if allow_archived or b.status == "active"]
        return self._rng.choice(choices)

    def _describe(self, bench: _DemoBenchmark | None) -> _RunDescription:
        """Name, benchmark, metadata and the other user fields of a new run."""
        rng = self._rng
        self._counter += 1
        trigger = rng.choice(_DEMO_TRIGGERS)
        label = bench.name if bench is not None else "adhoc-job"
        fields: _RunDescription = {
            "benchmark_id": None if bench is None else bench.id,
            "name": f"{label}-{trigger}-{self._counter:04d}",
            "metadata": {"agent": rng.choice(_DEMO_AGENTS), "trigger": trigger},
            "purpose": rng.choice((None, "regression", "experiment")),
        }
        if rng.random() < 0.3:
            fields["environment_variables"] = {"LOG_LEVEL": "info", "MAX_STEPS": "50"}
            fields["secrets_provided"] = {"LLM_API_KEY": "DEMO_LLM_KEY"}
        return fields

    def _start_run(self, start_ms: int, end_ms: int) -> None:
        bench = self._pick_benchmark(allow_archived=False)
        run_id = self.world.add_run(state="running", start_ms=start_ms, **self._describe(bench))
        self._live[run_id] = _LiveRun(start_ms, end_ms, bench)

    def _outcome(self, bench: _DemoBenchmark | None, duration_ms: int) -> tuple[str, int, float | None]:
        """Terminal state, duration and score: mostly completed and scored, some failed or canceled."""
        rng = self._rng
        draw = rng.random()
        if draw < 0.11:
            return "failed", duration_ms, None
        if draw < 0.18:
            return "canceled", max(1_000, int(duration_ms * rng.uniform(0.1, 0.9))), None
        mean = bench.mean_score if bench is not None else 0.5
        return "completed", duration_ms, round(min(1.0, max(0.0, rng.gauss(mean, 0.08))), 4)
