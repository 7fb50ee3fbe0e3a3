"""The whole-scrape series budget: its count is the collector's, folding keeps every total, the largest
label sets fold first and only as far as needed, and a folded value stays folded."""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.metrics.agents import AgentCaps, JobsTotals, build_jobs_snapshot
from exporter.metrics.aggregate import GroupKey, RunningRun, Snapshot, Totals, build_snapshot
from exporter.metrics.budget import BENCHMARK_LABEL, BudgetHooks, SeriesBudget, fit, fold, snapshot_series
from exporter.metrics.collector import SnapshotCollector
from exporter.metrics.labels import OTHER
from exporter.runloop.jobs import Job, Outcome
from exporter.runloop.models import Run

BUCKETS = (0.5, 1.0)
DURATIONS = (60.0, 3600.0)
STATES = ("completed", "failed", "canceled")


def world(benchmarks: int, teams: int, *, runs_each: int = 4, agents: int = 0, seed: int = 1) -> Snapshot:
    """Runs over benchmarks with a `metadata_team` label of `teams` values, and jobs with `agents` pairs."""
    rng = random.Random(seed)
    totals = Totals(BUCKETS, DURATIONS)
    running = []
    for b in range(benchmarks):
        for n in range(runs_each + b % 3):  # benchmarks of different sizes
            labels = (("metadata_team", f"team-{rng.randrange(teams)}"),) if teams else ()
            key = GroupKey(f"bmd_{b:03d}", labels)
            state = STATES[n % 3]
            score = rng.random() if state == "completed" else None
            totals.add(Run(f"r{b}-{n}", key.benchmark_id, state, 1_000 * n, 60_000 + n, score, {}, None), key)
        running.append(RunningRun(f"x{b}", GroupKey(f"bmd_{b:03d}"), 5_000 + b))
    totals.add(Run("free", None, "completed", 1, 2, 0.5, {}, None), GroupKey(None))
    snapshot = build_snapshot(totals, running, {f"bmd_{b:03d}": f"bench {b}" for b in range(benchmarks)})
    if not agents:
        return snapshot
    jobs = []
    for b in range(benchmarks):
        outcomes = tuple(
            Outcome(
                f"agent-{a}",
                f"model-{a % 2}",
                f"run-{b}-{a}",
                3,
                1,
                0,
                0.25 * (a % 4),
                (("KeyError", a + 1),),
            )
            for a in range(agents)
        )
        jobs.append(Job(f"job-{b}", "completed", 1_000 * b, f"bmd_{b:03d}", outcomes, ()))
    totals_jobs = JobsTotals(BUCKETS)
    caps = AgentCaps()
    for job in jobs:
        totals_jobs.add(job, caps)
    return replace(snapshot, jobs=build_jobs_snapshot(totals_jobs, [], caps))


def collected(snapshot: Snapshot) -> int:
    return sum(len(family.samples) for family in SnapshotCollector(snapshot).collect())


def totals_of(snapshot: Snapshot) -> dict[str, float]:
    """Figures that folding must keep: runs per state, histogram counts and sums, jobs and outcomes."""
    out: dict[str, float] = {}
    for group in snapshot.groups:
        for state, count in group.counts.items():
            out[f"runs:{state}"] = out.get(f"runs:{state}", 0) + count
        out["scores"] = out.get("scores", 0) + group.scores.count
        out["score_sum"] = round(out.get("score_sum", 0) + group.scores.total, 9)
        for state, hist in group.durations.items():
            out[f"durations:{state}"] = out.get(f"durations:{state}", 0) + hist.count
    if snapshot.jobs is not None:
        for state, count in snapshot.jobs.states.items():
            out[f"jobs:{state}"] = count
        for agent in snapshot.jobs.groups:
            out["outcomes"] = out.get("outcomes", 0) + agent.runs
            out["failures"] = out.get("failures", 0) + sum(agent.failures.values())
    return out


@pytest.mark.parametrize(("benchmarks", "teams", "agents"), [(1, 0, 0), (5, 3, 0), (12, 4, 3), (3, 0, 5)])
def test_the_count_is_what_the_collector_renders(benchmarks: int, teams: int, agents: int) -> None:
    snapshot = world(benchmarks, teams, agents=agents)
    assert snapshot_series(snapshot) == collected(snapshot)
    folded = fold(snapshot, {"metadata_team": frozenset({"team-0"}), BENCHMARK_LABEL: frozenset({"bmd_000"})})
    assert snapshot_series(folded) == collected(folded)


def test_within_the_budget_nothing_changes() -> None:
    snapshot = world(4, 3, agents=2)
    fitted, folded = fit(snapshot, snapshot_series(snapshot), {})
    assert fitted is snapshot
    assert folded == {}


def test_folding_keeps_every_total_and_drops_the_names_of_folded_benchmarks() -> None:
    snapshot = world(10, 5, agents=3)
    folded = fold(
        snapshot,
        {
            "metadata_team": frozenset({"team-1", "team-2"}),
            BENCHMARK_LABEL: frozenset({"bmd_003", "bmd_004"}),
            "agent_name": frozenset({("agent-0", "model-0")}),
            "exception_type": frozenset({"KeyError"}),
        },
    )
    assert totals_of(folded) == totals_of(snapshot)
    assert "bmd_003" not in folded.benchmark_names
    assert OTHER not in folded.benchmark_names
    assert any(g.key.benchmark_id == OTHER for g in folded.groups)
    assert folded.jobs is not None
    assert OTHER in folded.jobs.by_benchmark
    assert all(g.key.agent_name != "agent-0" for g in folded.jobs.groups)
    assert all(set(g.failures) <= {OTHER} for g in folded.jobs.groups)
    # The oldest running run of the folded benchmarks is the older of theirs.
    other = [g for g in folded.groups if g.key == GroupKey(OTHER)]
    assert [g.oldest_running_start_s for g in other] == [5.003]


def test_the_label_with_the_most_values_folds_first_smallest_values_first_and_no_further() -> None:
    snapshot = world(6, 8)  # metadata_team has 8 values; benchmark_id has 6
    total = snapshot_series(snapshot)
    budget = total - 60
    fitted, folded = fit(snapshot, budget, {})
    assert snapshot_series(fitted) <= budget
    assert set(folded) == {"metadata_team"}, "benchmark_id folds only when no other label is enough"
    teams = folded["metadata_team"]
    weights: dict[Hashable, int] = {}
    for group in snapshot.groups:
        for _, value in group.key.labels:
            weights[value] = weights.get(value, 0) + sum(group.counts.values())
    lightest = sorted(weights, key=lambda v: (weights[v], repr(v)))
    assert sorted(teams, key=repr) == sorted(lightest[: len(teams)], key=repr)
    # As few as make it fit: one value fewer would not.
    fewer = frozenset(lightest[: len(teams) - 1])
    assert snapshot_series(fold(snapshot, {"metadata_team": fewer})) > budget


def test_benchmarks_fold_when_nothing_else_is_enough() -> None:
    snapshot = world(40, 0)
    budget = snapshot_series(snapshot) // 2
    fitted, folded = fit(snapshot, budget, {})
    assert snapshot_series(fitted) <= budget
    assert set(folded) == {BENCHMARK_LABEL}
    assert totals_of(fitted) == totals_of(snapshot)
    kept = {g.key.benchmark_id for g in fitted.groups} - {OTHER, None}
    assert len(kept) >= 1
    assert len(kept) + len(folded[BENCHMARK_LABEL]) == 40


def test_a_folded_value_stays_folded_and_is_counted_once() -> None:
    big, small = world(6, 8), world(6, 1)
    counted: list[tuple[str, int]] = []
    series: list[int] = []
    hooks = BudgetHooks(
        self_series=lambda: 40,
        count_folded=lambda label, n: counted.append((label, n)),
        set_series=series.append,
    )
    budget = SeriesBudget(snapshot_series(big) - 60 + 40, hooks)
    first = budget(big)
    assert counted
    assert series == [snapshot_series(first) + 40]
    folded_teams = {v for g in big.groups for n, v in g.key.labels} - {
        v for g in first.groups for n, v in g.key.labels
    }
    budget(big)
    assert len(counted) == 1, "the same values again: nothing newly folded"
    # A later, smaller snapshot fits the budget by far, and its team-0 was folded before: still folded.
    third = budget(small)
    assert "team-0" in folded_teams
    assert all(dict(g.key.labels).get("metadata_team") != "team-0" for g in third.groups)


@settings(max_examples=40, deadline=None)
@given(
    benchmarks=st.integers(1, 15),
    teams=st.integers(0, 6),
    agents=st.integers(0, 4),
    cut=st.floats(0.05, 1.0),
    seed=st.integers(0, 1000),
)
def test_fitting_keeps_totals_and_meets_any_budget_folding_can_meet(
    benchmarks: int, teams: int, agents: int, cut: float, seed: int
) -> None:
    snapshot = world(benchmarks, teams, agents=agents, seed=seed)
    budget = int(snapshot_series(snapshot) * cut)
    fitted, _ = fit(snapshot, budget, {})
    assert totals_of(fitted) == totals_of(snapshot)
    assert snapshot_series(fitted) == collected(fitted)
    everything = fold(snapshot, {label: frozenset(values) for label, values in _all_values(snapshot).items()})
    if snapshot_series(everything) <= budget:
        assert snapshot_series(fitted) <= budget
    else:
        assert snapshot_series(fitted) == snapshot_series(everything)


def _all_values(snapshot: Snapshot) -> dict[str, set[Hashable]]:
    ids: set[Hashable] = {g.key.benchmark_id for g in snapshot.groups if g.key.benchmark_id is not None}
    out: dict[str, set[Hashable]] = {BENCHMARK_LABEL: ids}
    for group in snapshot.groups:
        for name, value in group.key.labels:
            out.setdefault(name, set()).add(value)
    if snapshot.jobs is not None:
        out[BENCHMARK_LABEL] |= set(snapshot.jobs.by_benchmark) - {None}
        out["agent_name"] = {(g.key.agent_name, g.key.model_name) for g in snapshot.jobs.groups}
        out["exception_type"] = {kind for g in snapshot.jobs.groups for kind in g.failures}
    return out
