"""Aggregation: totals over finished runs plus running runs, frozen into snapshots."""

from __future__ import annotations

import random

import pytest

from exporter.metrics.aggregate import LAST_FAILED, GroupKey, Histogram, RunningRun, Totals, build_snapshot
from exporter.runloop.models import Run

SCORES = (0.5, 1.0)
DURATIONS = (60.0, 3600.0)


def run(
    state: str, *, bid: str | None = "b1", start: int = 0, dur: int | None = None, score: float | None = None
) -> Run:
    return Run("r", bid, state, start, dur, score, {}, None)


def test_histogram_le_semantics() -> None:
    h = Histogram((1.0, 2.0), 2)
    for v in (0.5, 1.0, 1.5, 2.0, 9.0):
        h.observe(v)
    view = h.freeze()
    assert view.cumulative == (2, 4, 5)
    assert view.total == 14.0
    assert view.count == 5


def test_snapshot_counts_states_and_histograms() -> None:
    totals = Totals(SCORES, DURATIONS)
    totals.add(run("completed", start=1000, dur=30_000, score=0.4), GroupKey("b1"))
    totals.add(run("completed", start=5000, dur=120_000, score=0.9), GroupKey("b1"))
    totals.add(run("completed", start=9000, dur=10_000, score=None), GroupKey("b1"))
    totals.add(run("failed", start=0, dur=4_000_000), GroupKey("b1"))
    totals.add(run("canceled", start=0, dur=None), GroupKey("b1"))
    running = [
        RunningRun("x", GroupKey("b1"), 7000),
        RunningRun("y", GroupKey("b1"), 3000),
        RunningRun("z", GroupKey("b1"), 1000, state="paused"),  # not running: not the oldest running
    ]
    snap = build_snapshot(totals, running, {"b1": "Bench One", "gone": "x"})
    (group,) = snap.groups
    assert dict(group.counts) == {"running": 2, "completed": 3, "failed": 1, "canceled": 1, "paused": 1}
    assert group.durations["completed"].cumulative == (2, 3, 3)
    assert group.durations["failed"].cumulative == (0, 0, 1)
    assert group.durations["canceled"].count == 0
    assert group.scores.cumulative == (1, 2, 2)
    assert group.scores.total == 0.4 + 0.9
    # The completed run that ended last is the one started at 5000 (ends 125000), not the one started last.
    assert group.last_completed_score == 0.9
    assert group.last_completed_end_s == 125.0
    assert group.oldest_running_start_s == 3.0
    assert snap.benchmark_names == {"b1": "Bench One"}
    assert snap.runs == 8


def test_every_known_state_present_even_when_zero() -> None:
    snap = build_snapshot(Totals(SCORES, DURATIONS), [RunningRun("x", GroupKey("b2"), 1)], {})
    (group,) = snap.groups
    assert dict(group.counts) == {"running": 1, "completed": 0, "failed": 0, "canceled": 0}
    assert group.last_completed_score is None


def test_runs_without_benchmark_are_their_own_group() -> None:
    totals = Totals(SCORES, DURATIONS)
    totals.add(run("completed", bid=None, dur=1000, score=1.0), GroupKey(None))
    totals.add(run("completed", dur=1000, score=0.2), GroupKey("b1"))
    snap = build_snapshot(totals, [], {})
    assert [g.key.benchmark_id for g in snap.groups] == [None, "b1"]
    assert snap.benchmark_ids == frozenset({"b1"})


def test_sums_do_not_depend_on_order_and_are_correctly_rounded() -> None:
    values = [0.1, 0.2, 0.3, 0.7, 0.123456789]
    forward, backward = Histogram(SCORES, 10**9), Histogram(SCORES, 10**9)
    for value in values:
        forward.observe(value)
    for value in reversed(values):
        backward.observe(value)
    assert forward.total == backward.total == 1.423456789
    durations = Histogram(DURATIONS, 1000)
    durations.observe(971828.352)
    assert durations.total == 971828.352


def test_last_completed_tie_on_end_time_does_not_depend_on_order() -> None:
    a = Run("a", "b1", "completed", 1000, 5000, 0.2, {}, None)
    b = Run("b", "b1", "completed", 2000, 4000, 0.9, {}, None)  # ends at the same ms
    results = []
    for order in ([a, b], [b, a]):
        totals = Totals(SCORES, DURATIONS)
        for r in order:
            totals.add(r, GroupKey("b1"))
        (group,) = build_snapshot(totals, [], {}).groups
        results.append(group.last_completed_score)
    assert results == [0.9, 0.9]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_group_keeps_its_newest_failed_runs_in_any_order(seed: int) -> None:
    """At most LAST_FAILED, newest first by their end (their start without a duration), then by id."""
    runs = [
        Run(f"f{i}", "b1", "failed", 10_000 * i, None if i == 7 else 5_000 + (i % 3) * 10_000, None, {}, None)
        for i in range(9)
    ]
    runs.append(
        Run("f9", "b1", "failed", 65_000, 5_000, None, {}, None)
    )  # ends when f7 (no duration) started
    runs += [Run(f"c{i}", "b1", "completed", 10**9 + i, 1000, 0.5, {}, None) for i in range(3)]
    runs.append(Run("x", "b1", "canceled", 10**9, 1000, None, {}, None))
    ends = {r.id: (r.start_ms + r.duration_ms if r.duration_ms is not None else r.start_ms) for r in runs}
    expected = sorted((r.id for r in runs if r.state == "failed"), key=lambda i: (ends[i], i), reverse=True)
    random.Random(seed).shuffle(runs)
    totals = Totals(SCORES, DURATIONS)
    for r in runs:
        totals.add(r, GroupKey("b1"))
    (group,) = build_snapshot(totals, [], {}).groups
    assert [f.id for f in group.last_failed] == expected[:LAST_FAILED]
    newest = group.last_failed[0]
    source = next(r for r in runs if r.id == newest.id)
    assert (newest.start_ms, newest.duration_ms, newest.end_ms) == (
        source.start_ms,
        source.duration_ms,
        source.end_ms,
    )
