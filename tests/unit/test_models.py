"""Validation of BenchmarkRunView records: what is kept, what is skipped and why."""

from __future__ import annotations

import math
from typing import Any

import pytest

from exporter.runloop.models import Invalid, Run, parse_run


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "bmr_1",
        "benchmark_id": "bmd_1",
        "name": "nightly",
        "start_time_ms": 1_700_000_000_000,
        "duration_ms": 90_000,
        "state": "completed",
        "score": 0.75,
        "metadata": {"team": "evals"},
        "purpose": "nightly",
        "environment_variables": {"TOKEN": "hunter2"},
        "secrets_provided": {"DB_PASS": "DATABASE_PASSWORD"},
        "a_field_from_the_future": [1, 2, 3],
    }
    base.update(overrides)
    return base


def test_valid_record_keeps_only_what_metrics_need() -> None:
    run = parse_run(record())
    assert isinstance(run, Run)
    assert (run.id, run.benchmark_id, run.state, run.start_ms, run.duration_ms, run.score) == (
        "bmr_1",
        "bmd_1",
        "completed",
        1_700_000_000_000,
        90_000,
        0.75,
    )
    assert run.end_ms == 1_700_000_090_000
    assert not hasattr(run, "environment_variables")
    assert "hunter2" not in repr(run)
    assert "DATABASE_PASSWORD" not in repr(run)


def test_new_state_is_kept_as_its_own_value() -> None:
    run = parse_run(record(state="scoring"))
    assert isinstance(run, Run)
    assert run.state == "scoring"
    assert not run.is_terminal


@pytest.mark.parametrize(("benchmark_id", "expected"), [(None, None), ("", None), ("bmd_9", "bmd_9")])
def test_benchmark_id_optional(benchmark_id: str | None, expected: str | None) -> None:
    run = parse_run(record(benchmark_id=benchmark_id))
    assert isinstance(run, Run)
    assert run.benchmark_id == expected


def test_benchmark_id_may_be_absent() -> None:
    rec = record()
    del rec["benchmark_id"], rec["duration_ms"], rec["score"], rec["name"], rec["purpose"]
    run = parse_run(rec)
    assert isinstance(run, Run)
    assert (run.benchmark_id, run.duration_ms, run.score, run.end_ms) == (None, None, None, None)


@pytest.mark.parametrize(
    ("rec", "reason"),
    [
        ("not a dict", "not_an_object"),
        ({k: v for k, v in record().items() if k != "id"}, "missing_field"),
        ({k: v for k, v in record().items() if k != "state"}, "missing_field"),
        ({k: v for k, v in record().items() if k != "start_time_ms"}, "missing_field"),
        ({k: v for k, v in record().items() if k != "metadata"}, "missing_field"),
        (record(id=42), "invalid_id"),
        (record(id=""), "invalid_id"),
        (record(state=None), "invalid_state"),
        (record(state=""), "invalid_state"),
        (record(state="Completed!"), "invalid_state"),
        (record(state='run"ning'), "invalid_state"),
        (record(start_time_ms="yesterday"), "invalid_start_time"),
        (record(start_time_ms=-5), "invalid_start_time"),
        (record(start_time_ms=True), "invalid_start_time"),
        (record(duration_ms=-1), "invalid_duration"),
        (record(duration_ms=10**15), "invalid_duration"),
        (record(duration_ms=1.5), "invalid_duration"),
        (record(duration_ms="60"), "invalid_duration"),
        (record(score="high"), "invalid_score"),
        (record(score=math.nan), "invalid_score"),
        (record(score=math.inf), "invalid_score"),
        (record(score=1.5), "invalid_score"),
        (record(score=-0.1), "invalid_score"),
        (record(score=True), "invalid_score"),
        (record(benchmark_id=7), "invalid_benchmark_id"),
        (record(metadata=None), "invalid_metadata"),
        (record(metadata={"team": 1}), "invalid_metadata"),
    ],
)
def test_invalid_records_give_a_reason(rec: Any, reason: str) -> None:
    result = parse_run(rec)
    assert isinstance(result, Invalid)
    assert result.reason == reason


def test_invalid_keeps_the_run_id_when_there_is_one() -> None:
    result = parse_run(record(score="x"))
    assert isinstance(result, Invalid)
    assert result.run_id == "bmr_1"


def test_score_rounding_above_one_is_clamped() -> None:
    run = parse_run(record(score=1.0 + 1e-12))
    assert isinstance(run, Run)
    assert run.score == 1.0


def test_integral_float_start_time_is_accepted() -> None:
    run = parse_run(record(start_time_ms=1.7e12))
    assert isinstance(run, Run)
    assert run.start_ms == 1_700_000_000_000


@pytest.mark.parametrize(
    ("rec", "reason"),
    [
        (record(score=10**400), "invalid_score"),  # past any float: outside 0..1, not an OverflowError
        (record(score=-(10**400)), "invalid_score"),
        (record(start_time_ms=2**63), "invalid_start_time"),  # past int64, the API's format
        (record(start_time_ms=10**400), "invalid_start_time"),
        (record(duration_ms=10**400), "invalid_duration"),
    ],
)
def test_a_huge_integer_is_an_invalid_record_not_an_exception(rec: Any, reason: str) -> None:
    result = parse_run(rec)
    assert isinstance(result, Invalid)
    assert result.reason == reason
    run = parse_run(record(start_time_ms=2**63 - 1))
    assert isinstance(run, Run)
    assert run.start_ms == 2**63 - 1
