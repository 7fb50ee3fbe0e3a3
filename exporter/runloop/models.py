"""The part of Runloop's BenchmarkRunView that the exporter uses, validated record by record.

A record that fails validation is reported as `Invalid` with a short machine-readable reason instead
of raising, so one bad run is skipped and counted while every other figure stays right. A record comes
typed (`RunRecord`, only the fields used: the run's `environment_variables`, `secrets_provided`, `name`
and the rest are never decoded) or, when it did not fit those types, as plain JSON, never copied out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, TypeGuard

from exporter.runloop.decode import Record

RUNNING = "running"
TERMINAL_STATES = ("completed", "failed", "canceled")
KNOWN_STATES = (RUNNING, *TERMINAL_STATES)

# A year: a longer run is a broken record, not a slow benchmark.
MAX_DURATION_MS = 366 * 24 * 3600 * 1000
# The API's times are int64 epoch milliseconds: a larger one is a broken record (and would overflow the
# float of a timestamp metric, failing every sync that met it).
MAX_TIME_MS = 2**63 - 1
# The longest id taken from the API: a longer one is a broken record, not an id.
MAX_ID_LEN = 256
# States are short lowercase words; anything else would be a strange label value, not a new state.
_STATE_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Scores are computed as a mean of 0..1 scenario scores; allow float rounding above 1.
_SCORE_SLACK = 1e-9

INVALID_REASONS = (
    "not_an_object",
    "missing_field",
    "invalid_id",
    "invalid_state",
    "invalid_start_time",
    "invalid_duration",
    "invalid_score",
    "invalid_benchmark_id",
    "invalid_metadata",
    "duplicate_id",
)


@dataclass(frozen=True, slots=True)
class Run:
    """One benchmark run, reduced to what the metrics need."""

    id: str
    benchmark_id: str | None
    state: str
    start_ms: int
    duration_ms: int | None
    score: float | None
    metadata: dict[str, str]
    purpose: str | None

    @property
    def is_terminal(self) -> bool:
        """True once the run can no longer change (known end states only)."""
        return self.state in TERMINAL_STATES

    @property
    def end_ms(self) -> int | None:
        """When the run finished: start + duration, as Runloop reports neither end time nor more."""
        return None if self.duration_ms is None else self.start_ms + self.duration_ms


class RunRecord(Record, gc=False):
    """The fields of a BenchmarkRunView the exporter reads, typed as the API documents them: a record
    whose fields do not fit stays plain JSON (exporter.runloop.decode), and parse_run checks either."""

    state: str
    start_time_ms: int | float
    metadata: dict[str, str]
    benchmark_id: str | None = None
    duration_ms: int | float | None = None
    score: float | None = None
    purpose: str | None = None


class BenchmarkRecord(Record, gc=False):
    """The fields of a BenchmarkView the exporter reads: its name (exporter.sync.names)."""

    name: str | None = None


@dataclass(frozen=True, slots=True)
class Invalid:
    """A record that was skipped; `run_id` is its id when it had a usable one."""

    reason: str
    run_id: str | None
    detail: str


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_int(value: Any) -> int | None:
    """An integral JSON number as int, else None (floats like 1.0 pass; 1.5, NaN and bools do not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def unit_score(value: Any) -> float | str:
    """A score of 0..1 (rounding just past either end clamped), or what is wrong with it; runs and jobs.

    An int is compared as it is: one too large for a float (10**400) is outside 0..1, not an OverflowError.
    """
    if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
        return "not a finite number"
    if not -_SCORE_SLACK <= value <= 1 + _SCORE_SLACK:
        return "outside 0..1"
    return min(max(float(value), 0.0), 1.0)


def record_id_or_invalid(
    record: Any, *, listing: str, required: tuple[str, ...], prefix: str = ""
) -> str | Invalid:
    """The id of a listed record whose required fields are all present, or why it is invalid.

    Shared by runs and jobs; `prefix` keeps their invalid reasons apart ("job_missing_field").
    """
    if not isinstance(record, dict):
        return Invalid(f"{prefix}not_an_object", None, f"a {type(record).__name__} in the {listing} list")
    raw_id = record.get("id")
    if raw_id is None:
        return Invalid(f"{prefix}missing_field", None, "id is missing")
    if not is_id(raw_id):
        return Invalid(f"{prefix}invalid_id", None, "id is not a non-empty string")
    for field in required:
        if field not in record:
            return Invalid(f"{prefix}missing_field", raw_id, f"{field} is missing")
    return raw_id


def is_id(value: Any) -> TypeGuard[str]:
    """Whether `value` can be a Runloop id: a non-empty string of at most MAX_ID_LEN characters."""
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LEN


def record_head_or_invalid(
    record: Any, *, listing: str, time_field: str, required: tuple[str, ...] = (), prefix: str = ""
) -> tuple[str, str, int] | Invalid:
    """(id, state, time in ms) of a listed record, or why it is invalid: the checks runs and jobs share.

    `state` and `time_field` are required ahead of `required`. A bad time (not an integer of 0..MAX_TIME_MS)
    is `<prefix>invalid_<time_field without _ms>` (invalid_start_time, job_invalid_create_time).
    """
    record_id = record_id_or_invalid(
        record, listing=listing, required=("state", time_field, *required), prefix=prefix
    )
    if isinstance(record_id, Invalid):
        return record_id
    return _state_and_time(record_id, record["state"], record[time_field], time_field, prefix)


def typed_head_or_invalid(
    record_id: str, state: str, time_raw: float, *, time_field: str, prefix: str = ""
) -> tuple[str, str, int] | Invalid:
    """record_head_or_invalid of a typed record (exporter.runloop.decode): every field is there and of
    its type, so only the values are left to check, in the same order and with the same reasons."""
    if not is_id(record_id):
        return Invalid(f"{prefix}invalid_id", None, "id is not a non-empty string")
    return _state_and_time(record_id, state, time_raw, time_field, prefix)


def _state_and_time(
    record_id: str, state: Any, time_raw: Any, time_field: str, prefix: str
) -> tuple[str, str, int] | Invalid:
    if not isinstance(state, str) or not _STATE_PATTERN.fullmatch(state):
        return Invalid(f"{prefix}invalid_state", record_id, "state is not a lowercase word")
    time_ms = _as_int(time_raw)
    if time_ms is None or not 0 <= time_ms <= MAX_TIME_MS:
        reason = f"{prefix}invalid_{time_field.removesuffix('_ms')}"
        return Invalid(reason, record_id, f"{time_field} is not an integer of 0..2**63-1")
    return record_id, state, time_ms


def parse_run(record: Any) -> Run | Invalid:
    """Validate one BenchmarkRunView, typed (`RunRecord`) or plain JSON; unknown fields are ignored,
    required ones enforced. Both forms of a record give the same answer (tests/unit/test_decode.py)."""
    if isinstance(record, RunRecord):
        return _parse_typed(record)
    head = record_head_or_invalid(record, listing="runs", time_field="start_time_ms", required=("metadata",))
    if isinstance(head, Invalid):
        return head
    run_id = head[0]
    tail = _duration_and_score(run_id, record.get("duration_ms"), record.get("score"))
    if isinstance(tail, Invalid):
        return tail

    benchmark_id = record.get("benchmark_id")
    if benchmark_id is not None and not isinstance(benchmark_id, str):
        return Invalid("invalid_benchmark_id", run_id, "benchmark_id is not a string")

    metadata = record["metadata"]
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        return Invalid("invalid_metadata", run_id, "metadata is not an object of strings")

    purpose = record.get("purpose")
    return _run(head, tail, benchmark_id, metadata, purpose if isinstance(purpose, str) else None)


def _parse_typed(record: RunRecord) -> Run | Invalid:
    """parse_run of a record whose fields are all of their types: only the values are checked."""
    head = typed_head_or_invalid(record.id, record.state, record.start_time_ms, time_field="start_time_ms")
    if isinstance(head, Invalid):
        return head
    tail = _duration_and_score(record.id, record.duration_ms, record.score)
    if isinstance(tail, Invalid):
        return tail
    return _run(head, tail, record.benchmark_id, record.metadata, record.purpose)


def _duration_and_score(
    run_id: str, duration_raw: Any, score_raw: Any
) -> tuple[int | None, float | None] | Invalid:
    duration_ms: int | None = None
    if duration_raw is not None:
        duration_ms = _as_int(duration_raw)
        if duration_ms is None or not 0 <= duration_ms <= MAX_DURATION_MS:
            return Invalid("invalid_duration", run_id, "duration_ms is negative, absurd or not an integer")
    score: float | None = None
    if score_raw is not None:
        score_or_problem = unit_score(score_raw)
        if isinstance(score_or_problem, str):
            return Invalid("invalid_score", run_id, f"score is {score_or_problem}")
        score = score_or_problem
    return duration_ms, score


def _run(
    head: tuple[str, str, int],
    tail: tuple[int | None, float | None],
    benchmark_id: str | None,
    metadata: dict[str, str],
    purpose: str | None,
) -> Run:
    (run_id, state, start_ms), (duration_ms, score) = head, tail
    return Run(
        id=run_id,
        benchmark_id=benchmark_id or None,
        state=state,
        start_ms=start_ms,
        duration_ms=duration_ms,
        score=score,
        metadata=metadata,
        purpose=purpose or None,
    )


def benchmark_fields(record: Any) -> tuple[str | None, str | None]:
    """(id, name) of a BenchmarkView, typed or plain JSON, each None unless it is a string."""
    if isinstance(record, BenchmarkRecord):
        return record.id, record.name
    if not isinstance(record, dict):
        return None, None
    rid, name = record.get("id"), record.get("name")
    return (rid if isinstance(rid, str) else None), (name if isinstance(name, str) else None)
