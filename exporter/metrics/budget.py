"""A whole-scrape series budget: past it, label values fold into `__other__` until the scrape fits.

The caps on extra labels bound each label alone, but not their product: five metadata labels of twenty
values, agents on a thousand benchmarks, or a long bucket list multiply. So each successful snapshot is
counted (arithmetically, as the collector will render it) together with the exporter's own series, and
when the sum passes the budget (RUNLOOP_EXPORTER_MAX_SERIES), label values are folded, the largest label
sets first: the optional label with the most distinct values (a metadata label, `purpose`, the agent and
model pair, `exception_type`), its values with the fewest runs first, as few as make the scrape fit (a
binary search on that count); `benchmark_id` only when every other label is not enough. Folded groups are
merged (counts and histograms added, the latest score and the oldest running run kept), so every total
stays right, and a folded benchmark loses its `runloop_benchmark_info` name.

A value once folded stays folded for the life of the process, like a value over a label's cap: series do
not flap from one sync to the next, and the alert rules' "now minus the window's lowest" reads one series.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace

import structlog

from exporter.metrics.agents import AGENT_LABEL, EXCEPTION_LABEL, AgentKey, AgentView, JobsSnapshot
from exporter.metrics.aggregate import GroupKey, GroupView, HistogramView, Snapshot
from exporter.metrics.labels import OTHER

log = structlog.get_logger(__name__)

BENCHMARK_LABEL = "benchmark_id"
DEFAULT_MAX_SERIES = 100_000

Folded = Mapping[str, frozenset[Hashable]]
"""Per label, the values that fold into `__other__` (for `agent_name`, (agent, model) pairs)."""


# --- counting ------------------------------------------------------------------------------------------


def _histogram_series(hist: HistogramView) -> int:
    return len(hist.bounds) + 3  # a bucket per bound, +Inf, _count, _sum


def snapshot_series(snapshot: Snapshot) -> int:
    """The samples the collector renders for a snapshot (tests hold the two to the same figure)."""
    total = len(snapshot.benchmark_names)
    for group in snapshot.groups:
        total += len(group.counts) + _histogram_series(group.scores)
        total += sum(_histogram_series(hist) for hist in group.durations.values())
        total += 2 if group.last_completed_score is not None and group.last_completed_end_s is not None else 0
        total += 1 if group.oldest_running_start_s is not None else 0
    if snapshot.jobs is not None:
        total += sum(len(states) for states in snapshot.jobs.by_benchmark.values())
        for agent in snapshot.jobs.groups:
            total += 2 + _histogram_series(agent.scores) + len(agent.scenarios) + len(agent.failures)
            total += 2 if agent.last_score is not None and agent.last_time_s is not None else 0
    return total


# --- folding -------------------------------------------------------------------------------------------


def _sum_hist(a: HistogramView, b: HistogramView) -> HistogramView:
    cumulative = tuple(x + y for x, y in zip(a.cumulative, b.cumulative, strict=True))
    return HistogramView(a.bounds, cumulative, a.total + b.total)


def _add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0) + value
    return out


def _merge_groups(key: GroupKey, a: GroupView, b: GroupView) -> GroupView:
    durations = dict(a.durations)
    for state, hist in b.durations.items():
        durations[state] = _sum_hist(durations[state], hist) if state in durations else hist
    last = max(
        (a, b),
        key=lambda g: (
            g.last_completed_end_s is not None,
            g.last_completed_end_s or 0.0,
            g.last_completed_score or 0.0,
        ),
    )
    starts = [s for s in (a.oldest_running_start_s, b.oldest_running_start_s) if s is not None]
    return GroupView(
        key=key,
        counts=_add(a.counts, b.counts),
        durations=durations,
        scores=_sum_hist(a.scores, b.scores),
        last_completed_score=last.last_completed_score,
        last_completed_end_s=last.last_completed_end_s,
        oldest_running_start_s=min(starts) if starts else None,
    )


def _merge_agents(key: AgentKey, a: AgentView, b: AgentView) -> AgentView:
    last = max((a, b), key=lambda g: (g.last_time_s is not None, g.last_time_s or 0.0, g.last_score or 0.0))
    return AgentView(
        key=key,
        runs=a.runs + b.runs,
        in_progress=a.in_progress + b.in_progress,
        scenarios=_add(a.scenarios, b.scenarios),
        scores=_sum_hist(a.scores, b.scores),
        failures=dict(sorted(_add(a.failures, b.failures).items())),
        last_score=last.last_score,
        last_time_s=last.last_time_s,
    )


def _benchmark(benchmark_id: str | None, folded: Folded) -> str | None:
    return OTHER if benchmark_id in folded.get(BENCHMARK_LABEL, ()) else benchmark_id


def _fold_jobs(jobs: JobsSnapshot, folded: Folded) -> JobsSnapshot:
    by_benchmark: dict[str | None, dict[str, int]] = {}
    for benchmark_id, states in jobs.by_benchmark.items():
        where = _benchmark(benchmark_id, folded)
        by_benchmark[where] = _add(by_benchmark.get(where, {}), states)
    pairs, kinds = folded.get(AGENT_LABEL, frozenset()), folded.get(EXCEPTION_LABEL, frozenset())
    merged: dict[AgentKey, AgentView] = {}
    for group in jobs.groups:
        old = group.key
        agent, model = old.agent_name, old.model_name
        if (agent, model) in pairs:
            agent, model = OTHER, OTHER
        key = AgentKey(_benchmark(old.benchmark_id, folded), agent, model)
        failures: dict[str, int] = {}
        for kind, count in group.failures.items():
            label = OTHER if kind in kinds else kind
            failures[label] = failures.get(label, 0) + count
        view = replace(group, key=key, failures=dict(sorted(failures.items())))
        merged[key] = _merge_agents(key, merged[key], view) if key in merged else view
    ordered = sorted(
        merged.values(),
        key=lambda v: (v.key.benchmark_id or "", v.key.agent_name or "", v.key.model_name or ""),
    )
    return JobsSnapshot(by_benchmark=by_benchmark, groups=tuple(ordered), jobs=jobs.jobs)


def fold(snapshot: Snapshot, folded: Folded) -> Snapshot:
    """The snapshot with the given label values folded into `__other__` (a copy; both stay immutable)."""
    if not any(folded.values()):
        return snapshot
    merged: dict[GroupKey, GroupView] = {}
    for group in snapshot.groups:
        labels = tuple(
            (name, OTHER if value in folded.get(name, ()) else value) for name, value in group.key.labels
        )
        key = GroupKey(_benchmark(group.key.benchmark_id, folded), labels)
        view = replace(group, key=key)
        merged[key] = _merge_groups(key, merged[key], view) if key in merged else view
    gone = folded.get(BENCHMARK_LABEL, frozenset())
    return Snapshot(
        groups=tuple(sorted(merged.values(), key=lambda v: (v.key.benchmark_id or "", v.key.labels))),
        benchmark_names={bid: name for bid, name in snapshot.benchmark_names.items() if bid not in gone},
        runs=snapshot.runs,
        jobs=None if snapshot.jobs is None else _fold_jobs(snapshot.jobs, folded),
    )


def _candidates(snapshot: Snapshot) -> dict[str, dict[Hashable, int]]:
    """Per foldable label, each value not yet folded and its weight (runs, outcomes or failures)."""
    out: dict[str, dict[Hashable, int]] = {}

    def weigh(label: str, value: Hashable, weight: int) -> None:
        if value is None or value == OTHER:
            return
        values = out.setdefault(label, {})
        values[value] = values.get(value, 0) + weight

    for group in snapshot.groups:
        runs = sum(group.counts.values())
        weigh(BENCHMARK_LABEL, group.key.benchmark_id, runs)
        for name, value in group.key.labels:
            weigh(name, value, runs)
    if snapshot.jobs is not None:
        for benchmark_id, states in snapshot.jobs.by_benchmark.items():
            weigh(BENCHMARK_LABEL, benchmark_id, sum(states.values()))
        for agent in snapshot.jobs.groups:
            key = agent.key
            weigh(BENCHMARK_LABEL, key.benchmark_id, 0)
            if key.agent_name is not None and key.agent_name != OTHER:
                weigh(AGENT_LABEL, (key.agent_name, key.model_name), agent.runs + agent.in_progress)
            for kind, count in agent.failures.items():
                weigh(EXCEPTION_LABEL, kind, count)
    return out


def _order(value: Hashable) -> str:
    return repr(value)


def fit(snapshot: Snapshot, budget: int, folded: Folded) -> tuple[Snapshot, dict[str, frozenset[Hashable]]]:
    """The snapshot folded to at most `budget` series (when folding can get there), and every fold made.

    `folded` holds the folds of earlier snapshots: they are applied first and kept.
    """
    done = {label: frozenset(values) for label, values in folded.items()}
    current = fold(snapshot, done)
    if snapshot_series(current) <= budget:
        return current, done
    candidates = _candidates(current)
    labels = sorted(
        (label for label in candidates if label != BENCHMARK_LABEL),
        key=lambda label: (-len(candidates[label]), label),
    )
    if BENCHMARK_LABEL in candidates:
        labels.append(BENCHMARK_LABEL)
    for label in labels:
        values = sorted(candidates[label], key=lambda v: (candidates[label][v], _order(v)))
        low, high = 1, len(values)  # the fewest values to fold that make it fit (or all of them)
        while low < high:
            middle = (low + high) // 2
            trial = fold(current, {label: frozenset(values[:middle])})
            if snapshot_series(trial) <= budget:
                high = middle
            else:
                low = middle + 1
        chosen = frozenset(values[:low])
        done[label] = done.get(label, frozenset()) | chosen
        current = fold(current, {label: chosen})
        if snapshot_series(current) <= budget:
            break
    return current, done


# --- the sync wrapper ----------------------------------------------------------------------------------


@dataclass
class BudgetHooks:
    """What the budget reports to and reads from the self-metrics."""

    self_series: Callable[[], int]  # series of the exporter's own metrics now
    count_folded: Callable[[str, int], None]  # label values newly folded, per label
    set_series: Callable[[int], None]  # series of the whole scrape after folding


class SeriesBudget:
    """Fits each whole snapshot (the runs and the jobs beside them) to `max_series` series, when folding can."""

    def __init__(self, max_series: int, hooks: BudgetHooks) -> None:
        self._max = max_series
        self._hooks = hooks
        self._folded: dict[str, frozenset[Hashable]] = {}

    def __call__(self, snapshot: Snapshot) -> Snapshot:
        """The snapshot folded to the budget; what was newly folded is counted and logged."""
        own = self._hooks.self_series()
        fitted, folded = fit(snapshot, self._max - own, self._folded)
        new = {label: len(values - self._folded.get(label, frozenset())) for label, values in folded.items()}
        new = {label: count for label, count in new.items() if count}
        if new:
            log.warning(
                "the scrape would pass RUNLOOP_EXPORTER_MAX_SERIES; label values folded into __other__",
                max_series=self._max,
                series_before=snapshot_series(snapshot) + own,
                series_after=snapshot_series(fitted) + own,
                folded=new,
            )
            for label, count in new.items():
                self._hooks.count_folded(label, count)
        self._folded = folded
        self._hooks.set_series(snapshot_series(fitted) + own)
        return fitted
