"""The part of Runloop's BenchmarkJobView the exporter uses, validated job by job (the API marks jobs beta).

A job is reduced at once to a few numbers per agent configuration (`Outcome`): counts, the average score
and failures per exception type. Names, kwargs, environments, secrets, `inline_yaml`, `failure_reason`
and `exception_message` are never copied out of the JSON, so they cannot reach a label, a value or a log
line. A job that fails validation is `Invalid` (reason prefixed `job_`), never an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from exporter.runloop.models import Invalid, is_id, record_head_or_invalid, unit_score

JOB_STATES = ("initializing", "queued", "running", "completed", "failed", "cancelled", "timeout")
TERMINAL_JOB_STATES = frozenset({"completed", "failed", "cancelled", "timeout"})
SCENARIO_STATES = ("completed", "failed", "timeout")
FAILED_SCENARIO_STATES = frozenset({"FAILED", "TIMEOUT"})

JOB_INVALID_REASONS = (
    "job_not_an_object",
    "job_missing_field",
    "job_invalid_id",
    "job_invalid_state",
    "job_invalid_create_time",
    "job_invalid_source",
    "job_invalid_outcome",
    "job_duplicate_id",
)

_MAX_NAME = 256  # agent and model names are label values: longer ones are broken records
_MAX_COUNT = 10**7  # scenarios in one run: more is a broken record


@dataclass(frozen=True, slots=True)
class Outcome:
    """One benchmark run of a job (one agent configuration), reduced to what the metrics need."""

    agent_name: str
    model_name: str | None
    run_id: str
    n_completed: int
    n_failed: int
    n_timeout: int
    average_score: float | None
    failures: tuple[tuple[str, int], ...]  # (exception_type, scenario outcomes) sorted by type


@dataclass(frozen=True, slots=True)
class Job:
    """One benchmark job: its state, when it was created, its benchmark and its outcomes."""

    id: str
    state: str
    create_time_ms: int
    benchmark_id: str | None
    outcomes: tuple[Outcome, ...]
    in_progress: tuple[tuple[str | None, str | None], ...]  # (agent, model) of each run still running

    @property
    def is_terminal(self) -> bool:
        """True once the job can no longer change."""
        return self.state in TERMINAL_JOB_STATES


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= _MAX_COUNT:
        return value
    return None


def _name(value: Any) -> str | None:
    return value if isinstance(value, str) and value and len(value) <= _MAX_NAME else None


def _outcome(raw: Any) -> Outcome | str:
    """One `benchmark_outcomes` entry, or what is wrong with it (our words, never its data)."""
    if not isinstance(raw, dict):
        return "an outcome is not an object"
    agent = _name(raw.get("agent_name"))
    if agent is None:
        return "an outcome has no usable agent_name"
    model_raw = raw.get("model_name")
    model = _name(model_raw)
    if model_raw not in (None, "") and model is None:
        return "an outcome's model_name is not a usable string"
    counts = [_count(raw.get(field, 0)) for field in ("n_completed", "n_failed", "n_timeout")]
    if any(count is None for count in counts):
        return "an outcome's scenario counts are not non-negative integers"
    score: float | None = None
    if raw.get("average_score") is not None:
        score_or_problem = unit_score(raw["average_score"])
        if isinstance(score_or_problem, str):
            return f"an outcome's average_score is {score_or_problem}"
        score = score_or_problem
    run_id = raw.get("benchmark_run_id")
    failures: dict[str, int] = {}
    scenarios = raw.get("scenario_outcomes") or []
    if not isinstance(scenarios, list):
        return "an outcome's scenario_outcomes is not a list"
    for scenario in scenarios:
        if not isinstance(scenario, dict) or scenario.get("state") not in FAILED_SCENARIO_STATES:
            continue
        reason = scenario.get("failure_reason")
        if not isinstance(reason, dict):
            continue
        kind = _name(reason.get("exception_type"))
        if kind is not None:
            failures[kind] = failures.get(kind, 0) + 1
    n_completed, n_failed, n_timeout = (int(count or 0) for count in counts)
    return Outcome(
        agent_name=agent,
        model_name=model,
        run_id=run_id if isinstance(run_id, str) else "",
        n_completed=n_completed,
        n_failed=n_failed,
        n_timeout=n_timeout,
        average_score=score,
        failures=tuple(sorted(failures.items())),
    )


def _running_agent(raw: Any) -> tuple[str | None, str | None] | None:
    """(agent, model) of an `in_progress_runs` entry in state running; None for any other entry."""
    if not isinstance(raw, dict) or raw.get("state") != "running":
        return None
    config = raw.get("agent_config")
    if not isinstance(config, dict) or config.get("type") != "job_agent":
        return (None, None)  # an external agent, or none given: counted without agent labels
    return (_name(config.get("name")), _name(config.get("model_name")))


def parse_job(record: Any) -> Job | Invalid:
    """Validate one BenchmarkJobView; unknown fields are ignored, the few we use enforced."""
    head = record_head_or_invalid(record, listing="jobs", time_field="create_time_ms", prefix="job_")
    if isinstance(head, Invalid):
        return head
    raw_id, state, created = head
    source = record.get("job_source")
    benchmark_id: str | None = None
    if source is not None:
        if not isinstance(source, dict):
            return Invalid("job_invalid_source", raw_id, "job_source is not an object")
        if source.get("type") == "benchmark":
            raw_bid = source.get("benchmark_id")
            if not is_id(raw_bid):
                return Invalid("job_invalid_source", raw_id, "job_source.benchmark_id is not a string")
            benchmark_id = raw_bid
    raw_outcomes = record.get("benchmark_outcomes") or []
    if not isinstance(raw_outcomes, list):
        return Invalid("job_invalid_outcome", raw_id, "benchmark_outcomes is not a list")
    outcomes = []
    for raw in raw_outcomes:
        outcome = _outcome(raw)
        if isinstance(outcome, str):
            return Invalid("job_invalid_outcome", raw_id, outcome)
        outcomes.append(outcome)
    in_progress_raw = record.get("in_progress_runs") or []
    running = []
    if isinstance(in_progress_raw, list):
        for raw in in_progress_raw:
            agent = _running_agent(raw)
            if agent is not None:
                running.append(agent)
    return Job(
        id=raw_id,
        state=state,
        create_time_ms=created,
        benchmark_id=benchmark_id,
        outcomes=tuple(outcomes),
        in_progress=tuple(running),
    )
