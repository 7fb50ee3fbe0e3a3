"""Extra labels from run metadata and purpose: names, the cap, and counting folded runs once."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from exporter.metrics.aggregate import (
    DEFAULT_DURATION_BUCKETS,
    DEFAULT_SCORE_BUCKETS,
    GroupKey,
    Snapshot,
    Totals,
    build_snapshot,
)
from exporter.metrics.filters import BenchmarkFilter
from exporter.metrics.labels import (
    OTHER,
    FoldCounting,
    RunLabels,
    check_metadata_keys,
    folded_runs,
    make_grouping,
    metadata_label_name,
)
from exporter.metrics.telemetry import Telemetry
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.models import Run
from exporter.simulator import DEFAULT_API_KEY, Simulator, World
from exporter.sync import BenchmarkNames, IncrementalSync, InvalidRecords, SyncConfig

PROMETHEUS_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def run(
    run_id: str = "bmr_1",
    *,
    bid: str | None = "bmd_a",
    state: str = "completed",
    metadata: dict[str, str] | None = None,
    purpose: str | None = None,
) -> Run:
    return Run(
        id=run_id,
        benchmark_id=bid,
        state=state,
        start_ms=1_000,
        duration_ms=None if state == "running" else 60_000,
        score=None,
        metadata=metadata or {},
        purpose=purpose,
    )


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("team", "metadata_team"),
        ("model.name", "metadata_model_name"),
        ("run-by", "metadata_run_by"),
        ("1st place", "metadata_1st_place"),
        ("ünï", "metadata__n_"),
        ("Team", "metadata_Team"),
    ],
)
def test_label_names_follow_prometheus_rules(key: str, label: str) -> None:
    assert metadata_label_name(key) == label
    assert PROMETHEUS_LABEL.fullmatch(label)


def test_metadata_keys_are_stripped_deduplicated_and_collisions_refused() -> None:
    assert check_metadata_keys([" team", "model", "team ", "", "Team"]) == ("team", "model", "Team")
    with pytest.raises(
        ValueError,
        match=re.escape("'model.name' and 'model-name' would both become label metadata_model_name"),
    ):
        check_metadata_keys(["model.name", "model-name"])


def test_missing_and_empty_values_leave_the_label_out() -> None:
    labels = RunLabels(["team", "model.name"], purpose=True, max_values=5)
    assert labels.names == ("metadata_team", "metadata_model_name", "purpose")
    assert labels.labels(run(metadata={"team": "x", "model.name": "m"}, purpose="ci")) == (
        ("metadata_team", "x"),
        ("metadata_model_name", "m"),
        ("purpose", "ci"),
    )
    assert labels.labels(run(metadata={"team": "", "other": "y"})) == ()


def test_nothing_is_added_when_nothing_is_allowlisted() -> None:
    labels = RunLabels([], purpose=False, max_values=5)
    grouping = make_grouping(BenchmarkFilter(), labels, lambda bid: None)
    assert grouping(run(metadata={"team": "x"}, purpose="ci")) == GroupKey("bmd_a")


def test_the_cap_admits_first_come_and_folds_the_rest_for_good() -> None:
    labels = RunLabels(["team"], purpose=False, max_values=2)
    seen = [labels.labels(run(metadata={"team": t})) for t in ("a", "b", "c", "a", "d", "b", "c")]
    assert [dict(x)["metadata_team"] for x in seen] == ["a", "b", OTHER, "a", OTHER, "b", OTHER]


def test_each_label_has_its_own_cap_and_a_literal_other_is_folded() -> None:
    labels = RunLabels(["team"], purpose=True, max_values=1)
    assert labels.labels(run(metadata={"team": OTHER}, purpose="ci")) == (
        ("metadata_team", OTHER),
        ("purpose", "ci"),
    )
    assert labels.labels(run(metadata={"team": "a"}, purpose="nightly")) == (
        ("metadata_team", "a"),
        ("purpose", OTHER),
    )


def test_filtered_runs_take_no_slot_under_the_cap() -> None:
    labels = RunLabels(["team"], purpose=False, max_values=1)
    grouping = make_grouping(BenchmarkFilter(exclude_ids=frozenset({"bmd_x"})), labels, lambda bid: None)
    assert grouping(run(bid="bmd_x", metadata={"team": "first"})) is None
    assert grouping(run(bid="bmd_a", metadata={"team": "second"})) == GroupKey(
        "bmd_a", (("metadata_team", "second"),)
    )


# --- counting folded runs ---------------------------------------------------------------------------


def snapshot_of(*keys_and_states: tuple[GroupKey, str]) -> Snapshot:
    totals = Totals(DEFAULT_SCORE_BUCKETS, DEFAULT_DURATION_BUCKETS)
    for i, (key, state) in enumerate(keys_and_states):
        totals.add(run(f"bmr_{i}", state=state), key)
    return build_snapshot(totals, [], {})


OTHER_TEAM = GroupKey("bmd_a", (("metadata_team", OTHER),))
TEAM_A = GroupKey("bmd_a", (("metadata_team", "a"),))


def test_folded_runs_counts_every_state_under_other() -> None:
    snap = snapshot_of((OTHER_TEAM, "completed"), (OTHER_TEAM, "failed"), (TEAM_A, "completed"))
    assert folded_runs(snap, ["metadata_team", "purpose"]) == {"metadata_team": 2, "purpose": 0}


class Replay:
    """A Sync that returns given snapshots in turn."""

    def __init__(self, snapshots: list[Snapshot]) -> None:
        self._snapshots: Iterator[Snapshot] = iter(snapshots)

    def run(self, deadline: float | None = None) -> Snapshot:
        return next(self._snapshots)


def test_fold_counting_adds_only_increases() -> None:
    one = snapshot_of((OTHER_TEAM, "completed"))
    two = snapshot_of((OTHER_TEAM, "completed"), (OTHER_TEAM, "failed"))
    counted: list[tuple[str, int]] = []
    sync = FoldCounting(
        Replay([one, one, two, two, one, two]), ["metadata_team"], lambda n, k: counted.append((n, k))
    )
    for _ in range(6):
        sync.run()
    # 1 at first, nothing while unchanged, 1 more, nothing; a run deleted then another folded: 1 more
    assert counted == [("metadata_team", 1), ("metadata_team", 1), ("metadata_team", 1)]


def test_a_folded_run_is_counted_once_across_syncs_finishing_and_reconciles() -> None:
    world = World(order="newest_first", seed=3)
    for team in ("a", "b", "c"):
        world.add_run(
            benchmark_id="bmd_a", state="completed", start_ms=1_000, duration_ms=10, metadata={"team": team}
        )
    running = world.add_run(benchmark_id="bmd_a", state="running", start_ms=2_000, metadata={"team": "d"})
    now = [0.0]
    with Simulator(world) as sim:
        telemetry = Telemetry()
        client = RunloopClient(sim.url, lambda: DEFAULT_API_KEY, retry=RetryPolicy(max_retries=0))
        names = BenchmarkNames(client)
        labels = RunLabels(["team"], purpose=False, max_values=2)
        inner = IncrementalSync(
            client,
            SyncConfig(
                page_size=2,
                reconcile_interval_s=100,
                grouping=make_grouping(BenchmarkFilter(), labels, names.name_of),
            ),
            names=names,
            invalid=InvalidRecords(lambda reason: None),
            telemetry=telemetry,
            clock=lambda: now[0],
        )
        sync = FoldCounting(inner, labels.names, telemetry.count_folded)

        def folded() -> float | None:
            return telemetry.registry.get_sample_value(
                "runloop_exporter_label_values_folded_total", {"label": "metadata_team"}
            )

        first = sync.run()  # newest first: d (running) and c come first and take the two slots
        teams = {dict(g.key.labels)["metadata_team"]: g.counts for g in first.groups}
        assert set(teams) == {"d", "c", OTHER}
        assert sum(teams[OTHER].values()) == 2  # a and b
        assert folded() == 2
        sync.run()
        assert folded() == 2  # the same runs, regrouped: not counted again

        world.finish_run(running, "completed", duration_ms=5)
        world.add_run(
            benchmark_id="bmd_a", state="failed", start_ms=3_000, duration_ms=1, metadata={"team": "e"}
        )
        sync.run()
        assert folded() == 3  # e is new and folded; d finishing keeps its label

        now[0] = 1_000  # the next sync ends with a full read that regroups every run
        after = sync.run()
        assert (
            telemetry.registry.get_sample_value("runloop_exporter_full_reads_total", {"reason": "scheduled"})
            == 1
        )
        assert folded() == 3
        assert {dict(g.key.labels)["metadata_team"] for g in after.groups} == {"c", "d", OTHER}
