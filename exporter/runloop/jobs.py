"""The part of Runloop's BenchmarkJobView the exporter uses, validated job by job (the API marks jobs beta).

A job is reduced at once to a few numbers per agent configuration (`Outcome`): counts, the average score
and failures per exception type. It comes typed (`JobRecord`: names, kwargs, environments, secrets,
`inline_yaml` and `exception_message` are not even decoded) or, when it did not fit those types, as plain
JSON (from which they are never copied out), so they cannot reach a label, a value or a log line. A job
that fails validation is `Invalid` (reason prefixed `job_`), never an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec

from exporter.runloop.decode import Record
from exporter.runloop.models import (
    Invalid,
    is_id,
    record_head_or_invalid,
    typed_head_or_invalid,
    unit_score,
)

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


class FailureRecord(msgspec.Struct, gc=False):
    """A scenario outcome's `failure_reason`: its type only (`exception_message` is never decoded)."""

    exception_type: str | None = None


class ScenarioRecord(msgspec.Struct, gc=False):
    """One of an outcome's `scenario_outcomes`: what failure counting reads."""

    state: str | None = None
    failure_reason: FailureRecord | None = None


class OutcomeRecord(msgspec.Struct, gc=False):
    """One of a job's `benchmark_outcomes`, typed as the API documents it."""

    agent_name: str | None = None
    model_name: str | None = None
    benchmark_run_id: str | None = None
    n_completed: int | float = 0
    n_failed: int | float = 0
    n_timeout: int | float = 0
    average_score: float | None = None
    scenario_outcomes: list[ScenarioRecord] | None = None


class SourceRecord(msgspec.Struct, gc=False):
    """A job's `job_source`: its type and benchmark (never `inline_yaml` or the scenario ids)."""

    type: str | None = None
    benchmark_id: str | None = None


class AgentConfigRecord(msgspec.Struct, gc=False):
    """An in-progress run's `agent_config`: names only (never kwargs, environments or secrets)."""

    type: str | None = None
    name: str | None = None
    model_name: str | None = None


class InProgressRecord(msgspec.Struct, gc=False):
    """One of a job's `in_progress_runs`."""

    state: str | None = None
    agent_config: AgentConfigRecord | None = None


class JobRecord(Record, gc=False):
    """The fields of a BenchmarkJobView the exporter reads, typed as the API documents them: a job whose
    fields do not fit stays plain JSON (exporter.runloop.decode), and parse_job checks either."""

    state: str
    create_time_ms: int | float
    job_source: SourceRecord | None = None
    benchmark_outcomes: list[OutcomeRecord] | None = None
    in_progress_runs: list[InProgressRecord] | None = None


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
    head = _outcome_head(
        raw.get("agent_name"),
        raw.get("model_name"),
        [raw.get(field, 0) for field in ("n_completed", "n_failed", "n_timeout")],
        raw.get("average_score"),
    )
    if isinstance(head, str):
        return head
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
    return _made(head, run_id if isinstance(run_id, str) else "", failures)


def _typed_outcome(raw: OutcomeRecord) -> Outcome | str:
    """_outcome of a typed entry: only the values are left to check, in the same order."""
    head = _outcome_head(
        raw.agent_name, raw.model_name, [raw.n_completed, raw.n_failed, raw.n_timeout], raw.average_score
    )
    if isinstance(head, str):
        return head
    counted: dict[str | None, int] = {}  # by exception type as sent: each distinct one checked once
    for scenario in raw.scenario_outcomes or ():
        reason = scenario.failure_reason
        if reason is not None and scenario.state in FAILED_SCENARIO_STATES:
            kind = reason.exception_type
            counted[kind] = counted.get(kind, 0) + 1
    failures = {kind: n for kind, n in counted.items() if kind is not None and _name(kind) is not None}
    run_id = raw.benchmark_run_id
    return _made(head, run_id if run_id is not None else "", failures)


_Head = tuple[str, str | None, int, int, int, float | None]


def _outcome_head(agent_raw: Any, model_raw: Any, counts_raw: list[Any], score_raw: Any) -> _Head | str:
    """(agent, model, n_completed, n_failed, n_timeout, average score) of an outcome, or what is wrong."""
    agent = _name(agent_raw)
    if agent is None:
        return "an outcome has no usable agent_name"
    model = _name(model_raw)
    if model_raw not in (None, "") and model is None:
        return "an outcome's model_name is not a usable string"
    counts = [_count(value) for value in counts_raw]
    if any(count is None for count in counts):
        return "an outcome's scenario counts are not non-negative integers"
    score: float | None = None
    if score_raw is not None:
        score_or_problem = unit_score(score_raw)
        if isinstance(score_or_problem, str):
            return f"an outcome's average_score is {score_or_problem}"
        score = score_or_problem
    n_completed, n_failed, n_timeout = (int(count or 0) for count in counts)
    return agent, model, n_completed, n_failed, n_timeout, score


def _made(head: _Head, run_id: str, failures: dict[str, int]) -> Outcome:
    agent, model, n_completed, n_failed, n_timeout, score = head
    return Outcome(
        agent_name=agent,
        model_name=model,
        run_id=run_id,
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


def _typed_running_agent(raw: InProgressRecord) -> tuple[str | None, str | None] | None:
    """_running_agent of a typed entry."""
    if raw.state != "running":
        return None
    config = raw.agent_config
    if config is None or config.type != "job_agent":
        return (None, None)
    return (_name(config.name), _name(config.model_name))


def parse_job(record: Any) -> Job | Invalid:
    """Validate one BenchmarkJobView, typed (`JobRecord`) or plain JSON; unknown fields are ignored, the
    few we use enforced. Both forms of a job give the same answer (tests/unit/test_decode.py)."""
    if isinstance(record, JobRecord):
        return _parse_typed(record)
    head = record_head_or_invalid(record, listing="jobs", time_field="create_time_ms", prefix="job_")
    if isinstance(head, Invalid):
        return head
    raw_id = head[0]
    source = record.get("job_source")
    benchmark_id: str | None = None
    if source is not None:
        if not isinstance(source, dict):
            return Invalid("job_invalid_source", raw_id, "job_source is not an object")
        if source.get("type") == "benchmark":
            raw_bid = source.get("benchmark_id")
            if not is_id(raw_bid):
                return _bad_source(raw_id)
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
    return _job(head, benchmark_id, outcomes, running)


def _parse_typed(record: JobRecord) -> Job | Invalid:
    """parse_job of a job whose fields are all of their types: only the values are checked."""
    head = typed_head_or_invalid(
        record.id, record.state, record.create_time_ms, time_field="create_time_ms", prefix="job_"
    )
    if isinstance(head, Invalid):
        return head
    raw_id = head[0]
    source = record.job_source
    benchmark_id: str | None = None
    if source is not None and source.type == "benchmark":
        if not is_id(source.benchmark_id):
            return _bad_source(raw_id)
        benchmark_id = source.benchmark_id
    outcomes = []
    for raw in record.benchmark_outcomes or ():
        outcome = _typed_outcome(raw)
        if isinstance(outcome, str):
            return Invalid("job_invalid_outcome", raw_id, outcome)
        outcomes.append(outcome)
    running = [
        agent for agent in map(_typed_running_agent, record.in_progress_runs or ()) if agent is not None
    ]
    return _job(head, benchmark_id, outcomes, running)


def _bad_source(job_id: str) -> Invalid:
    return Invalid("job_invalid_source", job_id, "job_source.benchmark_id is not a string")


def _job(
    head: tuple[str, str, int],
    benchmark_id: str | None,
    outcomes: list[Outcome],
    running: list[tuple[str | None, str | None]],
) -> Job:
    job_id, state, created = head
    return Job(
        id=job_id,
        state=state,
        create_time_ms=created,
        benchmark_id=benchmark_id,
        outcomes=tuple(outcomes),
        in_progress=tuple(running),
    )
