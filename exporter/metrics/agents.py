"""Benchmark jobs in, per-agent-and-model figures out (the `runloop_agent_*` and `runloop_benchmark_jobs`
series).

Like runs, jobs that ended never change: their outcomes are folded into add-only `JobsTotals` keyed by
(benchmark, agent, model) and forgotten. Live jobs are kept whole (they are few and already reduced by
`exporter.runloop.jobs`), and `build_jobs_snapshot` adds them to an overlay of the totals (which copies only
the groups they touch), so a live job is counted once whatever it becomes. Labels are decided once per value by `AgentCaps` (first come, `__other__`
beyond the cap), so totals never have to be regrouped.

The latest score of an agent and model is the one of the outcome whose job was created last; outcomes of
jobs created in the same millisecond are ordered by job id, then benchmark-run id (the largest wins), so
the result does not depend on the order the listing gives.

Each agent and model also keeps its newest scores (`RecentScores`), for the status page's sparkline and
the 7-day mean `RunloopAgentScoreRegression` compares with; they never become a series.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exporter.metrics.aggregate import SCORE_SCALE, Histogram, HistogramView
from exporter.metrics.labels import OTHER, Cap
from exporter.metrics.recent import EMPTY, REGRESSION_WINDOW_S, RecentScores, Window
from exporter.runloop.jobs import JOB_STATES, SCENARIO_STATES, Job

AGENT_LABEL = "agent_name"
EXCEPTION_LABEL = "exception_type"
DEFAULT_MAX_AGENT_PAIRS = 50
DEFAULT_MAX_EXCEPTION_TYPES = 50


@dataclass(frozen=True, slots=True, order=True)
class AgentKey:
    """What one set of agent series is about; None leaves that label out."""

    benchmark_id: str | None
    agent_name: str | None
    model_name: str | None


class AgentCaps:
    """Caps on label values: (agent, model) pairs per benchmark, and exception types overall.

    Values are admitted first come and never change for the life of the process, so totals keyed by
    them stay right across syncs and full reads; later values become `__other__`.
    """

    def __init__(
        self, max_pairs: int = DEFAULT_MAX_AGENT_PAIRS, max_types: int = DEFAULT_MAX_EXCEPTION_TYPES
    ):
        self._max_pairs = max_pairs
        self._types_max = max_types
        self._pairs: dict[str | None, Cap[tuple[str, str | None]]] = {}
        self._types: Cap[str] = Cap(max_types)

    def key(self, benchmark_id: str | None, agent: str | None, model: str | None) -> AgentKey:
        """The labels of an agent config of a benchmark; None agent means none was given."""
        if agent is None:
            return AgentKey(benchmark_id, None, None)
        pairs = self._pairs.get(benchmark_id)
        if pairs is None:
            pairs = self._pairs[benchmark_id] = Cap(self._max_pairs)
        if OTHER in (agent, model) or not pairs.admits((agent, model)):
            return AgentKey(benchmark_id, OTHER, OTHER)
        return AgentKey(benchmark_id, agent, model)

    def exception_type(self, kind: str) -> str:
        """The label value of an exception type."""
        return self._types.value(kind)

    def holds(self, benchmark_id: str | None, agent: str, model: str | None) -> bool:
        """Whether this pair has a label of its own (admitted already); admits nothing."""
        pairs = self._pairs.get(benchmark_id)
        return pairs is not None and (agent, model) in pairs.admitted

    def holds_type(self, kind: str) -> bool:
        """Whether this exception type has a label value of its own (admitted already); admits nothing."""
        return kind in self._types.admitted

    def admitted(self) -> tuple[dict[str | None, frozenset[tuple[str, str | None]]], frozenset[str]]:
        """The pairs admitted per benchmark and the exception types admitted (what a checkpoint keeps)."""
        return {bid: cap.admitted for bid, cap in dict(self._pairs).items()}, self._types.admitted

    def restore(
        self,
        pairs: Mapping[str | None, Iterable[tuple[str, str | None]]],
        types: Iterable[str],
    ) -> None:
        """Admit what a checkpoint kept; ValueError when it passes a cap."""
        restored: dict[str | None, Cap[tuple[str, str | None]]] = {}
        for benchmark_id, values in pairs.items():
            cap: Cap[tuple[str, str | None]] = Cap(self._max_pairs)
            cap.restore(values)
            restored[benchmark_id] = cap
        kinds: Cap[str] = Cap(self._types_max)
        kinds.restore(types)
        self._pairs, self._types = restored, kinds


@dataclass(slots=True)
class AgentTotals:
    """Add-only figures of one agent and model on one benchmark."""

    scores: Histogram
    runs: int = 0
    in_progress: int = 0
    scenarios: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SCENARIO_STATES, 0))
    failures: dict[str, int] = field(default_factory=dict)
    last: tuple[int, str, str] | None = None  # (create_time_ms, job id, run id) of the latest score
    last_score: float | None = None
    recent: RecentScores = field(default_factory=RecentScores)  # the newest scores, for the status page

    def copy(self) -> AgentTotals:
        """An independent copy (snapshots add live jobs to copies, never to the totals: see overlay)."""
        scores = Histogram(self.scores.bounds, self.scores.scale, list(self.scores.counts))
        scores.total_units = self.scores.total_units
        return AgentTotals(
            scores,
            self.runs,
            self.in_progress,
            dict(self.scenarios),
            dict(self.failures),
            self.last,
            self.last_score,
            self.recent.copy(),
        )


class JobsTotals:
    """Figures over jobs, per agent key and per benchmark and job state; add-only."""

    def __init__(self, score_buckets: tuple[float, ...]) -> None:
        self.score_buckets = score_buckets
        self.states: dict[str | None, dict[str, int]] = {}  # benchmark (None: none) -> state -> jobs
        self.groups: dict[AgentKey, AgentTotals] = {}
        self.jobs = 0
        self._base: Mapping[AgentKey, AgentTotals] = {}  # an overlay's: groups shared until changed

    def group(self, key: AgentKey) -> AgentTotals:
        """The totals of one key to change, created empty on first use (an overlay copies it first)."""
        totals = self.groups.get(key)
        if totals is None:
            totals = AgentTotals(Histogram(self.score_buckets, SCORE_SCALE))
            self.groups[key] = totals
        elif self._base.get(key) is totals:
            totals = self.groups[key] = totals.copy()
        return totals

    def add(self, job: Job, caps: AgentCaps) -> None:
        """Count one job: its state, each outcome once, each run still running."""
        self.jobs += 1
        states = self.states.setdefault(job.benchmark_id, {})
        states[job.state] = states.get(job.state, 0) + 1
        for outcome in job.outcomes:
            totals = self.group(caps.key(job.benchmark_id, outcome.agent_name, outcome.model_name))
            totals.runs += 1
            totals.scenarios["completed"] += outcome.n_completed
            totals.scenarios["failed"] += outcome.n_failed
            totals.scenarios["timeout"] += outcome.n_timeout
            for kind, count in outcome.failures:
                label = caps.exception_type(kind)
                totals.failures[label] = totals.failures.get(label, 0) + count
            if outcome.average_score is None:
                continue
            totals.scores.observe(outcome.average_score)
            totals.recent.add(job.create_time_ms, outcome.average_score)
            order = (job.create_time_ms, job.id, outcome.run_id)
            if totals.last is None or order > totals.last:
                totals.last, totals.last_score = order, outcome.average_score
        if job.is_terminal:
            return  # runs still listed as running by an ended job are not in progress any more
        for agent, model in job.in_progress:
            self.group(caps.key(job.benchmark_id, agent, model)).in_progress += 1

    def overlay(self) -> JobsTotals:
        """Totals to add live jobs to and freeze at once, leaving these unchanged: a group is copied
        only when the overlay changes it, so a snapshot of 50,000 agent keys with a few live jobs copies
        a few of them, not all. These totals must not change while the overlay is in use."""
        out = JobsTotals(self.score_buckets)
        out.states = {benchmark_id: dict(states) for benchmark_id, states in self.states.items()}
        out.groups = dict(self.groups)
        out._base = self.groups
        out.jobs = self.jobs
        return out


@dataclass(frozen=True, slots=True)
class AgentView:
    """Everything exported for one agent key, frozen."""

    key: AgentKey
    runs: int
    in_progress: int
    scenarios: Mapping[str, int]
    scores: HistogramView
    failures: Mapping[str, int]
    last_score: float | None
    last_time_s: float | None
    recent: tuple[float, ...] = ()  # the newest scores, oldest first (the status page's sparkline)
    window: Window = EMPTY  # the scored outcomes of the regression alert's window
    regressed: bool = False  # the latest score is below the window's mean by the alert's margin


@dataclass(frozen=True, slots=True)
class JobsSnapshot:
    """What /metrics shows of benchmark jobs between two syncs; never modified.

    `groups` are sorted by benchmark, agent and model. `benchmarks` (those with a group) and `regressed`
    (the groups below their mean) are derived once when it is built, so that the status page, rendered
    from it, never walks tens of thousands of groups to find them.
    """

    by_benchmark: Mapping[str | None, Mapping[str, int]]  # jobs per state, per benchmark (None: none)
    groups: tuple[AgentView, ...]
    jobs: int
    benchmarks: frozenset[str | None] = field(init=False, compare=False)
    regressed: tuple[AgentView, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "benchmarks", frozenset(g.key.benchmark_id for g in self.groups))
        object.__setattr__(self, "regressed", tuple(g for g in self.groups if g.regressed))

    @property
    def states(self) -> dict[str, int]:
        """Jobs per state, over every benchmark."""
        out: dict[str, int] = {}
        for states in self.by_benchmark.values():
            for state, count in states.items():
                out[state] = out.get(state, 0) + count
        return out

    def folded(self) -> dict[str, int]:
        """Benchmark runs under an `__other__` agent, and scenario failures under an `__other__` type."""
        runs = sum(g.runs + g.in_progress for g in self.groups if g.key.agent_name == OTHER)
        failures = sum(g.failures.get(OTHER, 0) for g in self.groups)
        return {AGENT_LABEL: runs, EXCEPTION_LABEL: failures}


def build_jobs_snapshot(
    totals: JobsTotals, live: Iterable[Job], caps: AgentCaps, now_s: float | None = None
) -> JobsSnapshot:
    """Freeze the totals of ended jobs and the live jobs into one snapshot; `now_s` ends the window."""
    since_ms = int(((time.time() if now_s is None else now_s) - REGRESSION_WINDOW_S) * 1000)
    merged = totals.overlay()
    for job in live:
        merged.add(job, caps)
    # Every state of every benchmark that has jobs, and of jobs without a benchmark (always there, so
    # the family says jobs are read even before the first job): a state at 0 is a series, not a gap.
    by_benchmark: dict[str | None, dict[str, int]] = {}
    for benchmark_id in sorted({None, *merged.states}, key=lambda bid: bid or ""):
        states = dict.fromkeys(JOB_STATES, 0)
        for state, count in merged.states.get(benchmark_id, {}).items():
            states[state] = states.get(state, 0) + count
        by_benchmark[benchmark_id] = states
    views = []
    for key in sorted(merged.groups, key=_sort_key):
        group = merged.groups[key]
        window = group.recent.window(since_ms)
        views.append(
            AgentView(
                key=key,
                runs=group.runs,
                in_progress=group.in_progress,
                scenarios=dict(group.scenarios),
                scores=group.scores.freeze(),
                failures=dict(sorted(group.failures.items())),
                last_score=group.last_score,
                last_time_s=None if group.last is None else group.last[0] / 1000,
                recent=group.recent.last(),
                window=window,
                regressed=window.below(group.last_score),
            )
        )
    return JobsSnapshot(by_benchmark=by_benchmark, groups=tuple(views), jobs=merged.jobs)


def _sort_key(key: AgentKey) -> tuple[str, str, str]:
    return (key.benchmark_id or "", key.agent_name or "", key.model_name or "")
