"""The simulated account's runs, stored column-wise: a :class:`RunTable` of typed arrays, one slot per run.

Runs are stored in ``array`` objects and rendered to JSON per page, so a million runs take about 75 MB and
page fast. An index of slots by state, by benchmark and of all live runs stays sorted by slot, so filters
touch only their candidates and a cursor is a binary search; filtered or shuffled lists are cached until
the table next changes. The table is not locked: its World holds its lock around every call.

Long because the table is one data structure: its columns, its indexes and its listing cache change
together, and each write keeps them in step.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterable
from typing import Final, cast

from exporter.simulator.columns import (
    EMPTY,
    ID_PREFIX,
    NAN,
    NULL_INT,
    Interner,
    decode_id,
    gen_id,
    index_add,
    index_remove,
    opt_float,
    opt_int,
    opt_str,
    req_int,
    req_str,
)
from exporter.simulator.wire import dumps

RUN_FIELDS: Final = frozenset(
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
DEFAULT_EXTRAS: Final = ("{}", "null", "null", "null")


class RunTable:
    """Every run of an account, live or deleted, in slots (creation numbers) across typed arrays."""

    def __init__(self, seed: int) -> None:
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
        self.key: array[int] = array("Q")  # random high 32 bits | slot: the shuffled order, unique
        self._states = Interner()
        self._benches = Interner()
        self._names = Interner()
        self._by_state: dict[int, array[int]] = {}
        self._by_bench: dict[int, array[int]] = {}
        self._extras: dict[int, tuple[str, str, str, str]] = {}
        self._raw: dict[int, dict[str, object]] = {}
        self._custom_ids: dict[str, int] = {}
        self._id_override: dict[int, str] = {}
        self._cache: dict[tuple[object, ...], array[int]] = {}
        self._cache_version = -1

    # ------------------------------------------------------------------ writes

    def touch(self) -> None:
        """Note a change the table cannot see (the list order), so cached listings are rebuilt."""
        self._version += 1

    def add(
        self,
        *,
        benchmark_id: str | None,
        name: str | None,
        state: str,
        start_ms: int,
        duration_ms: int | None,
        score: float | None,
        run_id: str | None,
        extras: tuple[str, str, str, str],
    ) -> str:
        """Add a run (every field checked) and return its id."""
        if run_id is not None and self.slot_of(req_str("run_id", run_id)) is not None:
            raise ValueError(f"a run with id {run_id!r} already exists")
        run_id = self._append(
            bench=self._benches.code(opt_str("benchmark_id", benchmark_id)),
            name=self._names.code(opt_str("name", name)),
            start=req_int("start_ms", start_ms),
            duration=opt_int("duration_ms", duration_ms),
            state=self._states.code(req_str("state", state)),
            score=opt_float("score", score),
            run_id=run_id,
        )
        if extras != DEFAULT_EXTRAS:
            self._extras[self._n - 1] = extras
        return run_id

    def add_raw(self, record: dict[str, object]) -> str:
        """Store a JSON object (a copy the table may keep) verbatim as a run; see World.add_raw_run."""
        raw_id = record.get("id")
        slot = self._n
        run_id = self._append(
            bench=0,
            name=0,
            start=0,
            duration=NULL_INT,
            state=0,
            score=NAN,
            run_id=raw_id if isinstance(raw_id, str) else None,
        )
        self._raw[slot] = record
        self._reindex_raw(slot)
        return run_id

    def update(self, run_id: str, fields: dict[str, object]) -> None:
        """Change fields of a run (names as in World.add_run), all or nothing."""
        slot = self._require(run_id)
        raw = self._raw.get(slot)
        if raw is not None:
            for key, value in fields.items():
                raw["start_time_ms" if key == "start_ms" else key] = value
            self._reindex_raw(slot)
        else:
            self._update_columns(slot, fields)
        self._version += 1

    def delete(self, run_id: str) -> None:
        """Remove a run; its id becomes unknown."""
        slot = self._require(run_id)
        self._alive_flag[slot] = 0
        index_remove(self._alive, slot)
        index_remove(self._by_state[self._state[slot]], slot)
        index_remove(self._by_bench[self._bench[slot]], slot)
        self._raw.pop(slot, None)
        self._extras.pop(slot, None)
        own_id = self._id_override.pop(slot, None)
        if own_id is not None and self._custom_ids.get(own_id) == slot:
            del self._custom_ids[own_id]
        self._version += 1

    def add_many_finished(self, n: int, benchmark_ids: list[str], start_ms: int, seed: int) -> None:
        """Bulk-load n terminal runs; see World.add_many_finished for what they look like."""
        if n < 0:
            raise ValueError("n must be >= 0")
        rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        rnd = rng.random
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
                    else NAN
                    for b, s in zip(benches, states, strict=True)
                ]
            )
            self._state.extend(states)
            self._bench.extend([bench_codes[b] for b in benches])
            self._name.extend([pools[b][slot & 63] for b, slot in zip(benches, slots, strict=True)])
            self.key.extend([(getrandbits(32) << 32) | slot for slot in slots])
            self._alive_flag.extend(b"\x01" * len(slots))
            self._alive.extend(slots)
            for slot, s, b in zip(slots, states, benches, strict=True):
                state_index[s].append(slot)
                bench_index[b].append(slot)
        new_first, self._n = self._n, self._n + n
        for custom, slot in list(self._custom_ids.items()):
            decoded = decode_id(custom)
            if decoded is not None and new_first <= decoded < self._n and decoded != slot:
                self._give_unique_id(decoded)
        self._version += 1

    # ------------------------------------------------------------------ reads

    def count(self) -> int:
        """Number of live runs."""
        return len(self._alive)

    def slot_of(self, run_id: str) -> int | None:
        """The live slot of a run id, or None."""
        slot = self._custom_ids.get(run_id)
        if slot is None:
            slot = decode_id(run_id)
            if slot is None or slot >= self._n or slot in self._id_override:
                return None
        return slot if self._alive_flag[slot] else None

    def matching(
        self, name: str | None, benchmark_id: str | None, state: str | None, search: str | None
    ) -> array[int] | range:
        """Slots of the live runs matching all filters, ascending (i.e. creation order).

        The smallest of the state and benchmark indexes is the candidate set; other filters are checked
        on those candidates only, and the result is cached until the table changes.
        """
        state_code = bench_code = None
        bases: list[array[int]] = []
        if state is not None:
            state_code = self._states.codes.get(state)
            if state_code is None:
                return EMPTY
            bases.append(self._by_state.get(state_code, EMPTY))
        if benchmark_id is not None:
            bench_code = self._benches.codes.get(benchmark_id)
            if bench_code is None:
                return EMPTY
            bases.append(self._by_bench.get(bench_code, EMPTY))
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
            search_slot = self.slot_of(search)
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

    def shuffled(self, matching: array[int] | range, filters: tuple[object, ...]) -> array[int]:
        """The matching slots in the shuffled list order (by key), cached until the table changes."""
        key = ("shuffled", *filters)
        cached = self._cached(key)
        if cached is not None:
            return cached
        return self._store(key, array("q", sorted(matching, key=self.key.__getitem__)))

    def render(self, slots: Iterable[int]) -> list[str]:
        """Render runs to JSON text; the hot path of paging, so it uses pre-encoded pieces only."""
        out: list[str] = []
        append = out.append
        raw, extras, override = self._raw, self._extras, self._id_override
        start, duration, score = self._start, self._duration, self._score
        state, bench, name = self._state, self._bench, self._name
        state_json, bench_json, name_json = self._states.json, self._benches.json, self._names.json
        null, isnan = NULL_INT, math.isnan
        for slot in slots:
            if raw and slot in raw:
                append(dumps(raw[slot]))
                continue
            own = override.get(slot) if override else None
            run_id = f'"{gen_id(slot)}"' if own is None else dumps(own)
            dur = duration[slot]
            sc = score[slot]
            meta, purpose, env, secrets = extras.get(slot, DEFAULT_EXTRAS) if extras else DEFAULT_EXTRAS
            append(
                f'{{"id":{run_id},"benchmark_id":{bench_json[bench[slot]]},"name":{name_json[name[slot]]},'
                f'"start_time_ms":{start[slot]},"duration_ms":{"null" if dur == null else dur},'
                f'"state":{state_json[state[slot]]},"score":{"null" if isnan(sc) else repr(sc)},'
                f'"metadata":{meta},"purpose":{purpose},"environment_variables":{env},'
                f'"secrets_provided":{secrets}}}'
            )
        return out

    # ------------------------------------------------------------------ internals

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
        self.key.append((self._rng.getrandbits(32) << 32) | slot)
        self._alive_flag.append(1)
        self._alive.append(slot)
        self._index(self._by_state, state).append(slot)
        self._index(self._by_bench, bench).append(slot)
        self._version += 1
        if run_id is not None:
            self._id_override[slot] = run_id
            self._custom_ids[run_id] = slot
            return run_id
        generated = gen_id(slot)
        if generated in self._custom_ids:  # someone chose this very id by hand earlier
            return self._give_unique_id(slot)
        return generated

    def _give_unique_id(self, slot: int) -> str:
        """Give a slot whose generated id is taken by a hand-chosen id another unique id."""
        while True:
            candidate = f"{ID_PREFIX}{slot:x}x{self._rng.getrandbits(32):08x}"
            if candidate not in self._custom_ids:
                self._id_override[slot] = candidate
                self._custom_ids[candidate] = slot
                return candidate

    def _require(self, run_id: str) -> int:
        slot = self.slot_of(run_id)
        if slot is None:
            raise KeyError(run_id)
        return slot

    def _set_state(self, slot: int, code: int) -> None:
        self._recode(self._state, self._by_state, slot, code)

    def _set_bench(self, slot: int, code: int) -> None:
        self._recode(self._bench, self._by_bench, slot, code)

    def _recode(self, column: array[int], table: dict[int, array[int]], slot: int, code: int) -> None:
        """Give a slot a new code in an indexed column, moving it from the old code's index to the new."""
        old = column[slot]
        if old != code:
            index_remove(table[old], slot)
            index_add(self._index(table, code), slot)
            column[slot] = code

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
                setters.append((key, req_str(key, value)))
            elif key in ("benchmark_id", "name"):
                setters.append((key, opt_str(key, value)))
            elif key == "start_ms":
                setters.append((key, req_int(key, value)))
            elif key == "duration_ms":
                setters.append((key, opt_int(key, value)))
            elif key == "score":
                setters.append((key, opt_float(key, value)))
            else:
                setters.append((key, dumps({} if key == "metadata" and value is None else value)))
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
                extras = list(self._extras.get(slot, DEFAULT_EXTRAS))
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
