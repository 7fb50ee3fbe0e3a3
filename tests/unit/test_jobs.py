"""Job parsing, the aggregation against an independent oracle, and the simulator's bodies against the
official SDK's response model."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from pydantic import BaseModel
from runloop_api_client.types import BenchmarkJobView
from runloop_api_client.types.benchmark_job_list_view import BenchmarkJobListView

from exporter.metrics.agents import AgentCaps, JobsTotals, build_jobs_snapshot
from exporter.metrics.aggregate import DEFAULT_SCORE_BUCKETS, Snapshot
from exporter.metrics.exposition import Rendered
from exporter.runloop.jobs import Job, parse_job
from exporter.runloop.models import Invalid
from exporter.simulator import World
from exporter.simulator.jobs import render
from exporter.sync.jobpages import cut_depth
from tests.support.jobs_oracle import expected_agent_rows, expected_job_samples
from tests.support.samples import job_part, parse

T0 = 1_760_000_000_000
AGENTS = [("claude-code", "claude-opus-4"), ("openhands", "gpt-5"), ("aider", None)]
SECRETS = {
    "env": "PLANTED-ENV",
    "secret": "PLANTED-SECRET",
    "kwarg": "PLANTED-KWARG",
    "message": "PLANTED-MSG",
}


def world_with_jobs(seed: int = 0) -> World:
    """Jobs in every state, with and without a benchmark, models, secrets and failures."""
    world = World(seed=seed)
    rng = random.Random(seed)
    states = ("initializing", "queued", "running", "completed", "failed", "cancelled", "timeout")
    for i in range(60):
        state = states[i % len(states)]
        world.jobs.add(
            benchmark_id=None if i % 11 == 0 else f"bmd_{i % 4}",
            agents=rng.sample(AGENTS, rng.randint(1, 3)),
            levels=[rng.random() for _ in range(3)],
            create_ms=T0 + rng.randint(0, 20) * 1000,  # many ties on the creation time
            state=state,
            started=1 if state == "running" else None,
            n_scenarios=rng.randint(0, 25),
            secrets=SECRETS if i % 3 == 0 else None,
        )
    return world


def good_job(**changes: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "id": "bmj_1",
        "name": "my job",
        "create_time_ms": T0,
        "state": "completed",
        "job_source": {"type": "benchmark", "benchmark_id": "bmd_1"},
        "benchmark_outcomes": [
            {
                "agent_name": "a",
                "model_name": "m",
                "benchmark_run_id": "bmr_1",
                "n_completed": 2,
                "n_failed": 1,
                "n_timeout": 1,
                "average_score": 0.75,
                "scenario_outcomes": [
                    {"state": "COMPLETED", "score": 1.0},
                    {"state": "FAILED", "failure_reason": {"exception_type": "E", "exception_message": "x"}},
                    {"state": "TIMEOUT", "failure_reason": {"exception_type": "T", "exception_message": "y"}},
                    {
                        "state": "CANCELED",
                        "failure_reason": {"exception_type": "C", "exception_message": "z"},
                    },
                ],
            }
        ],
    }
    job.update(changes)
    return job


def test_a_job_is_reduced_to_counts() -> None:
    job = parse_job(good_job())
    assert isinstance(job, Job)
    assert job.benchmark_id == "bmd_1"
    assert job.is_terminal
    (outcome,) = job.outcomes
    assert (outcome.agent_name, outcome.model_name) == ("a", "m")
    assert (outcome.n_completed, outcome.n_failed, outcome.n_timeout) == (2, 1, 1)
    assert outcome.failures == (("E", 1), ("T", 1))  # canceled scenarios are not failures


def test_cancelled_with_two_ls_is_terminal_and_unknown_states_are_live() -> None:
    assert parse_job(good_job(state="cancelled")).is_terminal  # type: ignore[union-attr]
    new = parse_job(good_job(state="paused"))
    assert isinstance(new, Job)
    assert not new.is_terminal


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("text", "job_not_an_object"),
        ({"state": "completed"}, "job_missing_field"),
        (good_job(id=7), "job_invalid_id"),
        (good_job(state="Done!"), "job_invalid_state"),
        (good_job(create_time_ms=-1), "job_invalid_create_time"),
        (good_job(create_time_ms="yesterday"), "job_invalid_create_time"),
        (good_job(job_source={"type": "benchmark"}), "job_invalid_source"),
        (good_job(benchmark_outcomes=[{"agent_name": "a", "n_completed": -1}]), "job_invalid_outcome"),
        (good_job(benchmark_outcomes=[{"agent_name": "a", "average_score": 1.5}]), "job_invalid_outcome"),
        (
            good_job(benchmark_outcomes=[{"agent_name": "a", "average_score": float("nan")}]),
            "job_invalid_outcome",
        ),
        (good_job(benchmark_outcomes=[{"n_completed": 1}]), "job_invalid_outcome"),
        (good_job(create_time_ms=10**400), "job_invalid_create_time"),
        (good_job(benchmark_outcomes=[{"agent_name": "a", "average_score": 10**400}]), "job_invalid_outcome"),
        (good_job(benchmark_outcomes=[{"agent_name": "a", "n_failed": 10**400}]), "job_invalid_outcome"),
    ],
)
def test_invalid_jobs_are_reported_not_raised(record: Any, reason: str) -> None:
    result = parse_job(record)
    assert isinstance(result, Invalid)
    assert result.reason == reason
    assert "my job" not in result.detail


def test_nothing_of_the_user_data_is_kept() -> None:
    world = World()
    jid = world.jobs.add(
        benchmark_id=None, agents=AGENTS, create_ms=T0, secrets={**SECRETS, "yaml": "PLANTED-YAML"}
    )
    body = world.jobs.get(jid)
    assert body is not None
    assert b"PLANTED-YAML" in body
    assert "PLANTED" not in repr(parse_job(json.loads(body)))


def snapshot_samples(views: list[Any]) -> dict[Any, float]:
    caps = AgentCaps()
    totals = JobsTotals(DEFAULT_SCORE_BUCKETS)
    live = []
    for view in views:
        job = parse_job(view)
        assert isinstance(job, Job)
        if job.is_terminal:
            totals.add(job, caps)
        else:
            live.append(job)
    jobs = build_jobs_snapshot(totals, live, caps)
    snapshot = Snapshot(groups=(), benchmark_names={}, runs=0, jobs=jobs)
    return job_part(parse(Rendered.of(snapshot).body(b"", gzip=False).decode()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aggregation_matches_the_oracle_in_any_order(seed: int) -> None:
    views = world_with_jobs(seed).jobs.views()
    expected = expected_job_samples(views)
    for attempt in range(3):
        random.Random(attempt).shuffle(views)
        actual = snapshot_samples(views)
        assert set(actual) == set(expected)
        assert actual == pytest.approx(expected)


def world_over_two_weeks() -> World:
    """Jobs every 12 hours for 15 days, pairs sharing a millisecond; aider's newest jobs score low."""
    world = World(seed=4)
    rng = random.Random(4)
    for i in range(30):
        worse = i >= 26
        world.jobs.add(
            benchmark_id=f"bmd_{i % 2}",
            agents=AGENTS,
            levels=[0.7, rng.random(), 0.1 if worse else 0.8],
            create_ms=T0 + (i // 2) * 86_400_000 + (i % 2),
            state="running" if i == 29 else ("completed", "failed", "timeout")[i % 3],
            started=2 if i == 29 else None,
            n_scenarios=10,
        )
    return world


@pytest.mark.parametrize("attempt", [0, 1, 2])
def test_the_status_pages_figures_match_the_oracle_in_any_order(attempt: int) -> None:
    """Newest scores, the regression alert's 7-day window and its flag, whatever order jobs come in."""
    views = world_over_two_weeks().jobs.views()
    now_s = T0 / 1000 + 16 * 86_400  # the window holds the last 7 of the 15 days
    expected = expected_agent_rows(views, now_s)
    assert any(row["flagged"] for row in expected.values()), "the test needs a regression to flag"
    assert any(0 < row["count"] < row["runs"] for row in expected.values()), "and a window that cuts"
    random.Random(attempt).shuffle(views)
    caps = AgentCaps()
    totals = JobsTotals(DEFAULT_SCORE_BUCKETS)
    live = []
    for view in views:
        job = parse_job(view)
        assert isinstance(job, Job)
        if job.is_terminal:
            totals.add(job, caps)
        else:
            live.append(job)
    snapshot = build_jobs_snapshot(totals, live, caps, now_s=now_s)
    before = {key: (g.runs, g.in_progress, len(g.recent)) for key, g in totals.groups.items()}
    shown = {(v.key.benchmark_id, v.key.agent_name, v.key.model_name): v for v in snapshot.groups}
    assert set(shown) == set(expected)
    for key, row in expected.items():
        got = shown[key]
        assert (got.last_score, got.last_time_s) == (row["last"], row["last_time_s"]), key
        assert (got.window.count, got.window.complete) == (row["count"], True), key
        assert got.window.mean == pytest.approx(row["mean"]), key
        assert list(got.recent) == row["spark"], key
        assert (got.runs, got.in_progress) == (row["runs"], row["in_progress"]), key
        assert got.regressed == row["flagged"], key
    build_jobs_snapshot(totals, live, caps, now_s=now_s)
    after = {key: (g.runs, g.in_progress, len(g.recent)) for key, g in totals.groups.items()}
    assert after == before, "live jobs are added to an overlay, never to the totals"


def _extras(model: BaseModel, where: str = "job") -> list[str]:
    """Fields the SDK's model does not know: the simulator must not invent any."""
    found = [f"{where}.{name}" for name in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, BaseModel):
                found += _extras(item, f"{where}.{name}[{index}]")
    return found


def test_every_job_body_the_simulator_serves_validates_against_the_sdk() -> None:
    world = world_with_jobs(5)
    for view in world.jobs.views():
        body = world.jobs.get(view["id"])
        assert body is not None
        model = BenchmarkJobView.model_validate(json.loads(body))
        assert _extras(model) == []
    listing = BenchmarkJobListView.model_validate(
        json.loads(world.jobs.list_page(limit=100, starting_after=None, include_total_count=True))
    )
    assert listing.total_count == world.jobs.count() == len(listing.jobs)
    assert all(_extras(job) == [] for job in listing.jobs)


def test_an_ended_job_served_from_its_variant_template_is_its_own_rendering() -> None:
    """The simulator serves ended jobs from a cached template per variant; every body must still be
    exactly that job's own view (ids, names, times, run ids and scenario run ids its own)."""
    world = World(seed=5)
    ids = [
        world.jobs.add(
            benchmark_id=f"bmd_{i % 2}",
            agents=AGENTS,
            create_ms=T0 + i,
            state=("completed", "failed", "cancelled", "timeout", "running")[i % 5],
            n_scenarios=7,
            seed=i % 3,  # jobs share variants, so templates are reused
            name=f'job "{i}"',
            secrets=SECRETS if i % 4 == 0 else None,
        )
        for i in range(30)
    ]
    for jid in ids:
        job = world.jobs._jobs[jid]
        assert json.loads(world.jobs.get(jid) or b"") == render(job)
    bodies = [world.jobs.get(jid) for jid in ids]
    assert len(set(bodies)) == len(ids)
    listed = json.loads(world.jobs.list_page(limit=30, starting_after=None, include_total_count=True))
    assert listed["jobs"] == world.jobs.views()  # views() renders each job afresh, in list order


@pytest.mark.parametrize(
    ("depths", "reached", "per_page", "probe", "cut"),
    [
        ([], 0, 100, True, 0),  # no live job: the probe asks for one job
        ([0], 0, 100, True, 1),  # the newest is live: the probe reaches it
        (list(range(50)), 0, 100, True, 50),  # fifty at the top: one page of fifty
        (list(range(50)), 0, 10, True, 50),  # five pages beat fifty lookups
        ([200], 0, 40, True, 0),  # one far down: one lookup beats six pages
        ([200], 1, 40, False, 0),
        ([50, 51, 52, 53, 54, 55, 206], 40, 40, False, 56),  # a page for six, a lookup for the last
        ([3, 4], 10, 10, False, 0),  # above what was read: moved or gone, looked up by id
        ([12, 30], 10, 10, False, 0),  # 2 pages or 2 lookups: a tie reads less
    ],
)
def test_live_jobs_are_read_in_pages_only_where_that_takes_fewer_requests(
    depths: list[int], reached: int, per_page: int, probe: bool, cut: int
) -> None:
    assert cut_depth(depths, reached, per_page, first_page_free=probe) == cut
