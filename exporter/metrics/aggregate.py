"""Runs in, per-benchmark figures out.

Finished runs never change, so their figures are kept as add-only totals (`Totals`): a sync can add
the runs it learns of without ever re-reading history. Besides counts, a group keeps its last few failed
runs (`FailedRun`, at most LAST_FAILED) for the status page only: run ids are never labels. Runs that can still change (running, or in a
state new to us that is not known to be final) are kept one small record each (`RunningRun`). `build_snapshot` freezes both into a `Snapshot` that the
collector renders; a snapshot is never modified, so it can be read by any number of scrapes at once.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exporter.runloop.models import KNOWN_STATES, RUNNING, TERMINAL_STATES, Run

if TYPE_CHECKING:  # the jobs part builds on this module
    from exporter.metrics.agents import JobsSnapshot

Labels = tuple[tuple[str, str], ...]

DURATION_SCALE = 1000  # units per second: Runloop reports whole milliseconds, so duration sums are exact
SCORE_SCALE = 10**9  # score sums exact to 1e-9 per run
LAST_FAILED = 5  # failed runs kept per group, newest first, for the status page

DEFAULT_SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# One minute to one day: benchmark runs take minutes to hours.
DEFAULT_DURATION_BUCKETS = (
    60.0,
    120.0,
    300.0,
    600.0,
    1200.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    43200.0,
    86400.0,
)


@dataclass(frozen=True, slots=True, order=True)
class GroupKey:
    """What one set of series is about: a benchmark (None for runs outside any) and extra labels."""

    benchmark_id: str | None
    labels: Labels = ()


@dataclass(frozen=True, slots=True)
class RunningRun:
    """All that is kept of a run that can still change: enough to count it and age the oldest one."""

    id: str
    key: GroupKey
    start_ms: int
    state: str = RUNNING


@dataclass(frozen=True, slots=True)
class FailedRun:
    """A failed run as the status page names it: its id, when it started and how long it ran."""

    id: str
    start_ms: int
    duration_ms: int | None

    @property
    def end_ms(self) -> int | None:
        """When it ended (start + duration), when Runloop gave a duration."""
        return None if self.duration_ms is None else self.start_ms + self.duration_ms

    @property
    def order(self) -> tuple[int, str]:
        """Newest is largest: by its end (its start when it has no duration), then by id."""
        end = self.end_ms
        return (self.start_ms if end is None else end, self.id)


def newest_failed(runs: Iterable[FailedRun], n: int = LAST_FAILED) -> tuple[FailedRun, ...]:
    """The `n` newest of some failed runs, newest first (the same whatever order they come in)."""
    return tuple(sorted(runs, key=lambda run: run.order, reverse=True)[:n])


@dataclass(slots=True)
class Histogram:
    """A cumulative-free histogram: `counts[i]` holds observations in bucket i, the last one +Inf.

    The sum is kept as a whole number of 1/`scale` units, so it does not depend on the order runs are
    added in: a full read and the incremental syncs before it give the very same `_sum`, which
    therefore never moves backwards (a `rate()` would read that as a counter reset).
    """

    bounds: tuple[float, ...]
    scale: int
    counts: list[int] = field(default_factory=list)
    total_units: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Add one observation (`le` semantics: a value equal to a bound falls in that bound's bucket)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total_units += round(value * self.scale)

    @property
    def total(self) -> float:
        """Sum of the observations (correctly rounded: an integer divided by an integer)."""
        return self.total_units / self.scale

    def freeze(self) -> HistogramView:
        """An immutable view with cumulative bucket counts, as Prometheus exposes them."""
        cumulative = []
        running = 0
        for count in self.counts:
            running += count
            cumulative.append(running)
        return HistogramView(self.bounds, tuple(cumulative), self.total)


@dataclass(frozen=True, slots=True)
class HistogramView:
    """Frozen histogram: `cumulative[i]` counts observations <= bounds[i]; the last entry is +Inf."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        """Number of observations."""
        return self.cumulative[-1]


@dataclass(slots=True)
class GroupTotals:
    """Add-only figures over the finished runs of one group."""

    finished: dict[str, int]
    durations: dict[str, Histogram]
    scores: Histogram
    last_completed_end_ms: int | None = None
    last_completed_score: float | None = None
    last_failed: tuple[FailedRun, ...] = ()  # newest first, at most LAST_FAILED


class Totals:
    """Figures over finished runs, per group; add-only so that syncs can extend them."""

    def __init__(self, score_buckets: tuple[float, ...], duration_buckets: tuple[float, ...]) -> None:
        self.score_buckets = score_buckets
        self.duration_buckets = duration_buckets
        self.groups: dict[GroupKey, GroupTotals] = {}
        self.finished_runs = 0

    def group(self, key: GroupKey) -> GroupTotals:
        """The totals of one group, created empty on first use."""
        totals = self.groups.get(key)
        if totals is None:
            totals = GroupTotals(
                finished={},
                durations={
                    state: Histogram(self.duration_buckets, DURATION_SCALE) for state in TERMINAL_STATES
                },
                scores=Histogram(self.score_buckets, SCORE_SCALE),
            )
            self.groups[key] = totals
        return totals

    def add(self, run: Run, key: GroupKey) -> None:
        """Count one finished run (completed, failed or canceled)."""
        totals = self.group(key)
        totals.finished[run.state] = totals.finished.get(run.state, 0) + 1
        self.finished_runs += 1
        if run.duration_ms is not None:
            totals.durations[run.state].observe(run.duration_ms / 1000)
        if run.state == "failed":
            failed = FailedRun(run.id, run.start_ms, run.duration_ms)
            kept = totals.last_failed
            if len(kept) < LAST_FAILED or failed.order > kept[-1].order:
                totals.last_failed = newest_failed((*kept, failed))
        if run.state != "completed" or run.score is None:
            return
        totals.scores.observe(run.score)
        end_ms = run.end_ms
        # Ties on the end time go to the higher score, so the result does not depend on listing order.
        if end_ms is not None and (
            totals.last_completed_end_ms is None
            or (end_ms, run.score) > (totals.last_completed_end_ms, totals.last_completed_score or 0.0)
        ):
            totals.last_completed_end_ms = end_ms
            totals.last_completed_score = run.score


@dataclass(frozen=True, slots=True)
class GroupView:
    """Everything exported for one group, frozen."""

    key: GroupKey
    counts: Mapping[str, int]
    durations: Mapping[str, HistogramView]
    scores: HistogramView
    last_completed_score: float | None
    last_completed_end_s: float | None
    oldest_running_start_s: float | None
    last_failed: tuple[FailedRun, ...] = ()  # newest first: for the status page, never a series


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What /metrics shows between two syncs; never modified after it is built."""

    groups: tuple[GroupView, ...]
    benchmark_names: Mapping[str, str]
    runs: int
    jobs: JobsSnapshot | None = None  # benchmark jobs, when they are read (a separate, optional part)
    jobs_note: str | None = None  # for the status page: why jobs are absent or stale (None: fine, or off)

    @property
    def benchmark_ids(self) -> frozenset[str]:
        """Benchmarks that have runs."""
        return frozenset(g.key.benchmark_id for g in self.groups if g.key.benchmark_id is not None)


def build_snapshot(
    totals: Totals, running: Iterable[RunningRun], benchmark_names: Mapping[str, str]
) -> Snapshot:
    """Freeze finished totals and the runs that can still change into one snapshot."""
    live: dict[GroupKey, dict[str, int]] = {}
    oldest: dict[GroupKey, int] = {}
    for run in running:
        states = live.setdefault(run.key, {})
        states[run.state] = states.get(run.state, 0) + 1
        if run.state == RUNNING and (run.key not in oldest or run.start_ms < oldest[run.key]):
            oldest[run.key] = run.start_ms

    empty = GroupTotals(
        finished={},
        durations={state: Histogram(totals.duration_buckets, DURATION_SCALE) for state in TERMINAL_STATES},
        scores=Histogram(totals.score_buckets, SCORE_SCALE),
    )
    views = []
    for key in sorted(set(totals.groups) | set(live), key=_sort_key):
        group = totals.groups.get(key, empty)
        counts = dict.fromkeys(KNOWN_STATES, 0)
        for state, count in [*group.finished.items(), *live.get(key, {}).items()]:
            counts[state] = counts.get(state, 0) + count
        end_ms = group.last_completed_end_ms
        start_ms = oldest.get(key)
        views.append(
            GroupView(
                key=key,
                counts=counts,
                durations={state: hist.freeze() for state, hist in group.durations.items()},
                scores=group.scores.freeze(),
                last_completed_score=group.last_completed_score,
                last_completed_end_s=None if end_ms is None else end_ms / 1000,
                oldest_running_start_s=None if start_ms is None else start_ms / 1000,
                last_failed=group.last_failed,
            )
        )
    ids = {v.key.benchmark_id for v in views if v.key.benchmark_id is not None}
    names = {bid: name for bid, name in benchmark_names.items() if bid in ids}
    return Snapshot(
        groups=tuple(views),
        benchmark_names=names,
        runs=totals.finished_runs + sum(sum(states.values()) for states in live.values()),
    )


def _sort_key(key: GroupKey) -> tuple[str, Labels]:
    return (key.benchmark_id or "", key.labels)
