"""End to end: the real exporter on the simulator, scraped by a real Prometheus with the rules.

Every dashboard query, with its variables filled in as Grafana would, returns data through Prometheus'
HTTP API, and "All" counts the runs and jobs without a benchmark and a benchmark used only through jobs;
every rule evaluates without error; a run that fails in the simulator makes
RunloopBenchmarkRunFailed fire, and a benchmark job that ends failed or timeout makes
RunloopBenchmarkJobFailed fire, while the failures already in the history did not; an agent and model whose
newest job scores far below its earlier ones makes RunloopAgentScoreRegression fire, and the dashboard's
leaderboard shows the mean the alert compared with.
The stack (simulator, exporter, Prometheus) starts once per run and every xdist worker shares it
(tests/support/e2e_stack.py); what changes its world is done once. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from tests.deploy.test_dashboard import grafana_query_result_lines, picker_options
from tests.support.deploy import DASHBOARD_FILE, RULES_FILE
from tests.support.e2e_stack import (
    ALPHA,
    BASELINES_GROUP,
    BENCHMARKS,
    BRAVO,
    FAILING,
    JOB_SCENARIOS,
    JOBS_ONLY,
    MINUTE_MS,
    REGRESSING,
    REGRESSION_HOLD,
    SCRAPE_S,
    SHORTENED,
    Stack,
    e2e_groups,
    shared_stack,
    shorten,
)
from tests.support.once import once_per_run, owner_pid, run_folder
from tests.support.tools import require_tool
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

# What Grafana would put in: $__rate_interval is at least 4 scrape intervals.
RATE_INTERVAL = f"{4 * SCRAPE_S}s"
RANGE = "5m"
WAIT_S = 90.0


def wait_for(
    stack: Stack,
    check: Callable[[], object],
    what: str,
    on_timeout: Callable[[], str] | None = None,
    wait_s: float = WAIT_S,
) -> None:
    """Poll until `check()` holds (NotYet while Prometheus cannot answer), watching the stack."""
    wait_until(check, wait_s, what, interval=0.25, on_timeout=on_timeout or stack.logs, watch=stack.child)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Stack:
    """The run's one stack, shared by every worker; tests/conftest.py starts it once this is collected."""
    require_tool("prometheus")
    return shared_stack(run_folder(request.config), owner_pid(request.config))


@pytest.fixture(scope="session")
def scraping(stack: Stack) -> Stack:
    """The stack once Prometheus holds a few scrapes of a synced exporter, benchmark jobs included."""

    def synced() -> bool:
        up = stack.query("count_over_time(runloop_up[2m]) >= 5 and runloop_up == 1")
        jobs = stack.query(
            "count_over_time(runloop_exporter_jobs_available[2m]) >= 5 and runloop_exporter_jobs_available == 1"
            ' and on () count_over_time(runloop_benchmark_jobs{state="failed"}[2m]) >= 5'
        )
        return bool(up) and bool(jobs)

    wait_for(stack, synced, "Prometheus to scrape a synced exporter")
    return stack


def _fill(expr: str, benchmark_regex: str) -> str:
    return (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE)
        .replace("$benchmark", benchmark_regex)
    )


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]]


def _epoch(rfc3339: str) -> float:
    """Seconds since the epoch of a Prometheus timestamp such as 2026-01-02T03:04:05.123456789Z."""
    whole, _, fraction = rfc3339.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
    return stamp + float(f"0.{fraction or 0}")


REGRESSION_HOLD_S = _seconds(REGRESSION_HOLD)


def test_only_the_holds_are_shortened() -> None:
    """The e2e rules are the shipped rules but for a few `for`s and the baselines' interval, so the alerts
    fired here are the real ones."""
    shipped: list[dict[str, Any]] = yaml.safe_load(RULES_FILE.read_text())["groups"]
    holds = {r["alert"]: r["for"] for g in shipped for r in g["rules"] if r.get("alert") in SHORTENED}
    assert set(holds) == set(SHORTENED)
    assert all(_seconds(str(holds[name])) > _seconds(SHORTENED[name]) for name in SHORTENED)
    changed = [
        r.get("alert") or r.get("record")
        for g, e in zip(shipped, e2e_groups(), strict=True)
        for r, f in zip(g["rules"], e["rules"], strict=True)
        if r != f
    ]
    assert sorted(changed) == sorted(SHORTENED)
    assert [g["name"] for g in shipped if "interval" in g] == [BASELINES_GROUP]
    assert shorten(shipped) == e2e_groups()


def test_rules_load_and_evaluate_cleanly(scraping: Stack) -> None:
    groups = scraping.api("/api/v1/rules")["groups"]
    assert {g["name"] for g in groups} == {
        g["name"] for g in yaml.safe_load(RULES_FILE.read_text())["groups"]
    }

    def evaluated() -> bool:
        rules = [r for g in scraping.api("/api/v1/rules")["groups"] for r in g["rules"]]
        return all(r.get("lastEvaluation", "").startswith("20") for r in rules)

    wait_for(scraping, evaluated, "every rule to be evaluated")
    for group in scraping.api("/api/v1/rules")["groups"]:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return loaded


def _picker() -> dict[str, Any]:
    pickers: list[dict[str, Any]] = [
        v for v in _dashboard()["templating"]["list"] if v["name"] == "benchmark"
    ]
    (picker,) = pickers
    return picker


def _all_value() -> str:
    """What Grafana puts in for the Benchmark picker's "All"."""
    value: str = _picker()["allValue"]
    return value


def _targets() -> list[tuple[str, str]]:
    """(panel title, query) of every panel's every target."""
    return [
        (p["title"], t["expr"]) for p in _dashboard()["panels"] if p["type"] != "row" for t in p["targets"]
    ]


def test_dashboard_variables_resolve(scraping: Stack) -> None:
    """The Benchmark picker, as Grafana builds it: names from runloop_benchmark_info, and the benchmark
    known only from its jobs by its id; each option's value is the id the panels select on."""
    picker = _picker()
    query = picker["definition"].removeprefix("query_result(").removesuffix(")")
    expected = {(name, bid) for bid, name in BENCHMARKS.items()} | {(JOBS_ONLY, JOBS_ONLY)}
    lines: list[str] = []

    def resolved() -> bool:
        lines[:] = grafana_query_result_lines(scraping.query(query))
        return picker_options(picker, lines) == expected

    wait_for(scraping, resolved, f"the picker to offer {sorted(expected)}", lambda: "\n".join(lines))


def _key_selector(benchmark_id: str, agent: tuple[str, str]) -> str:
    name, model = agent
    return f'benchmark_id="{benchmark_id}", agent_name="{name}", model_name="{model}"'


def _outcome_score(stack: Stack, job_id: str) -> float:
    """The average score the simulator lists for the (only) outcome of a job."""
    (outcome,) = stack.world.job_view(job_id)["benchmark_outcomes"]
    score: float = outcome["average_score"]
    return score


def _scalar(stack: Stack, expr: str) -> float | None:
    result = stack.query(expr)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


@dataclass(frozen=True)
class ScoreDrop:
    """What the score_drop fixture did: outcomes scored after Prometheus' first sample of the key."""

    scores: list[float]  # every outcome scored since, the drop last
    first_active: list[dict[str, Any]]  # the rule's alerts as they first showed, right after the drop

    @property
    def latest(self) -> float:
        return self.scores[-1]

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)


@pytest.fixture(scope="session")
def score_drop(scraping: Stack, request: pytest.FixtureRequest) -> ScoreDrop:
    """REGRESSING on alpha: three jobs that score high, then one that scores low; once per run, since
    every worker shares the stack: the first worker to need it drops the score, the others read what it saw.

    The alert's 7-day mean is "sum and count of the score histogram now, minus their lowest value in the
    7 days", i.e. the mean of the outcomes scored while Prometheus watched. Seven days cannot pass here,
    and they need not: the jobs already in the history are in the key's first sample (its baseline, as
    seven days of history would be in a real window's first sample), and the outcomes that arrive after
    it are exactly what a real window would average. So the test scrapes the history first, then adds
    jobs through the simulator as Runloop would list them; no sample is written into Prometheus by hand
    and the rule runs unchanged. (Backfilling older samples with promtool would only move the baseline
    back in time: the rule reads the same difference.)
    """
    done = once_per_run(run_folder(request.config), "e2e-score-drop", lambda: _drop_the_score(scraping))
    return ScoreDrop(done["scores"], done["first_active"])


def _drop_the_score(stack: Stack) -> dict[str, Any]:
    key = _key_selector(ALPHA, REGRESSING)
    count = (
        f"max without (instance, pod) (runloop_agent_benchmark_run_score_count{{{key}}})"
        f" - min without (instance, pod) (min_over_time(runloop_agent_benchmark_run_score_count{{{key}}}[7d]))"
    )
    # The history is the baseline: two scored outcomes, none of them new to the window.
    assert (
        _scalar(stack, f"max without (instance, pod) (runloop_agent_benchmark_run_score_count{{{key}}})") == 2
    )
    assert _scalar(stack, count) == 0
    now_ms = int(time.time() * 1000)
    good = [
        stack.world.add_job(
            benchmark_id=ALPHA,
            agents=[REGRESSING],
            levels=[0.9],
            create_ms=now_ms - (3 - n) * MINUTE_MS,
            n_scenarios=JOB_SCENARIOS,
        )
        for n in range(3)
    ]
    wait_for(stack, lambda: _scalar(stack, count) == 3, "the three good outcomes in Prometheus")
    # The latest score is at its mean: nothing to report.
    assert stack.alerts("RunloopAgentScoreRegression") == []
    drop = stack.world.add_job(
        benchmark_id=ALPHA, agents=[REGRESSING], levels=[0.1], create_ms=now_ms, n_scenarios=JOB_SCENARIOS
    )
    scores = [_outcome_score(stack, job) for job in [*good, drop]]
    assert scores[-1] < 0.8 * sum(scores) / len(scores), scores  # the simulated drop is a drop

    active: list[list[dict[str, Any]]] = []

    def became_active() -> bool:
        alerts = stack.alerts("RunloopAgentScoreRegression")
        if alerts:
            active.append(alerts)
        return bool(alerts)

    wait_for(stack, became_active, "RunloopAgentScoreRegression to become active")
    return {"scores": scores, "first_active": active[0]}


def test_a_score_drop_makes_the_agent_regression_alert_pending(score_drop: ScoreDrop) -> None:
    """Only the agent and model that dropped, with its latest score; `for` keeps it pending at first.

    As the alert first showed: the stack is shared, so this test may run after its `for` has run out.
    """
    (alert,) = score_drop.first_active
    assert alert["state"] == "pending"
    name, model = REGRESSING
    assert alert["labels"] == {
        "alertname": "RunloopAgentScoreRegression",
        "severity": "warning",
        "job": "runloop-exporter",
        "benchmark_id": ALPHA,
        "agent_name": name,
        "model_name": model,
    }
    assert float(alert["value"]) == pytest.approx(score_drop.latest, abs=1e-9)


def test_leaderboard_shows_the_alerts_mean(score_drop: ScoreDrop, scraping: Stack) -> None:
    """The dashboard's leaderboard, queried as Grafana would, shows the latest score and the mean the
    alert compares it with, over the outcomes scored in the window."""
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    (table,) = [p for p in dashboard["panels"] if p["title"].startswith("Leaderboard")]
    latest, mean, count = (
        _fill(t["expr"], "(" + "|".join(sorted(BENCHMARKS)) + ")") for t in table["targets"]
    )
    name, model = REGRESSING

    def row(expr: str) -> dict[str, float]:
        return {
            f"{r['metric']['benchmark_name']}/{r['metric']['agent_name']}/{r['metric'].get('model_name')}": float(
                r["value"][1]
            )
            for r in scraping.query(expr)
        }

    key = f"{BENCHMARKS[ALPHA]}/{name}/{model}"
    assert row(latest)[key] == pytest.approx(score_drop.latest, abs=1e-9)
    assert row(count)[key] == len(score_drop.scores)
    assert row(mean)[key] == pytest.approx(score_drop.mean, abs=1e-6)
    # Agents with no outcome scored in the window have no mean (not 0, not NaN) but a count of 0.
    idle = f"{BENCHMARKS[ALPHA]}/aider/None"
    assert idle not in row(mean)
    assert row(count)[idle] == 0


def test_every_dashboard_query_returns_data(scraping: Stack, score_drop: ScoreDrop) -> None:
    """Including the agents row: the leaderboard's 7-day mean needs outcomes scored in the window."""
    targets = _targets()
    regex = _all_value()  # "All", as Grafana puts it in
    missing: list[str] = []

    def all_have_data() -> bool:
        missing[:] = [f"{title}: {expr}" for title, expr in targets if not scraping.query(_fill(expr, regex))]
        return not missing

    wait_for(
        scraping,
        all_have_data,
        "every dashboard query to return data",
        lambda: "Empty:\n" + "\n".join(missing),
    )


def test_all_counts_what_has_no_benchmark_or_no_name(scraping: Stack) -> None:
    """Issue 23: with "All", every panel counts the runs and jobs without a benchmark and the benchmark
    used only through jobs. Each panel that follows the picker, asked for only those (a regex matching an
    empty benchmark_id or JOBS_ONLY), shows data, so they reach it; under All, the per-benchmark panels
    name them, and the counts include them."""
    # A job scored now on JOBS_ONLY, so that its 7-day mean (outcomes scored in the window) exists too.
    scraping.world.add_job(
        benchmark_id=JOBS_ONLY,
        agents=[("aider", None)],
        levels=[0.7],
        create_ms=int(time.time() * 1000),
        n_scenarios=JOB_SCENARIOS,
    )
    targets = [(title, expr) for title, expr in _targets() if "$benchmark" in expr]
    assert len(targets) >= 20
    unnamed = f"|{JOBS_ONLY}"  # an empty benchmark_id, or the jobs-only benchmark
    missing: list[str] = []

    def all_reached() -> bool:
        missing[:] = [
            f"{title}: {expr}" for title, expr in targets if not scraping.query(_fill(expr, unnamed))
        ]
        return not missing

    wait_for(
        scraping,
        all_reached,
        "every panel to show the unnamed world",
        lambda: "Empty:\n" + "\n".join(missing),
    )

    def legends(title: str) -> set[str]:
        expr = next(e for t, e in _targets() if t == title)
        return {r["metric"].get("benchmark_name", "") for r in scraping.query(_fill(expr, _all_value()))}

    assert "(no benchmark)" in legends("Running runs per benchmark")
    assert {"(no benchmark)", *BENCHMARKS.values()} <= legends("Latest score per benchmark")
    assert JOBS_ONLY in legends("Latest score by agent and model")
    assert JOBS_ONLY in legends("Leaderboard: latest and 7-day mean score by agent and model")

    def stat(title: str) -> float | None:
        (expr,) = [e for t, e in _targets() if t == title]
        return _scalar(scraping, _fill(expr, _all_value()))

    assert scraping.world.running_runs().get("", 0) > 0, "the live job's runs run, without a benchmark"
    # Against the simulator's own count (other tests end runs meanwhile: read it again each time).
    wait_for(
        scraping,
        lambda: stat("Running now") == sum(scraping.world.running_runs().values()),
        "Running now to count every running run",
        lambda: f"Running now {stat('Running now')}, the world {scraping.world.running_runs()}",
    )
    assert stat("Benchmarks") == len(BENCHMARKS) + 1


def test_a_failed_run_fires_the_run_failed_alert(scraping: Stack) -> None:
    # The failures in the history were there from the first scrape: not news.
    assert scraping.query('runloop_benchmark_runs{state="failed"} == 1')
    assert scraping.alerts("RunloopBenchmarkRunFailed") == []

    benchmark_id = "bmd_e2eBravo0002"
    scraping.world.finish_run(scraping.running[benchmark_id], "failed", duration_ms=21 * MINUTE_MS)

    def firing() -> list[dict[str, Any]]:
        return [a for a in scraping.alerts("RunloopBenchmarkRunFailed") if a["state"] == "firing"]

    wait_for(scraping, lambda: bool(firing()), "RunloopBenchmarkRunFailed to fire")
    (alert,) = firing()
    assert alert["labels"]["benchmark_id"] == benchmark_id
    assert alert["labels"]["job"] == "runloop-exporter"
    assert alert["labels"]["severity"] == "warning"
    assert float(alert["value"]) == 1
    assert alert["annotations"]["summary"] == (
        f"1 run(s) of benchmark {BENCHMARKS[benchmark_id]} ({benchmark_id}) failed in the last 15 minutes."
    )


def test_a_job_that_fails_or_times_out_fires_the_job_failed_alert(scraping: Stack) -> None:
    # The failed job in the history was there from the first scrape: not news.
    assert scraping.query('runloop_benchmark_jobs{state="failed"} == 1')
    assert scraping.alerts("RunloopBenchmarkJobFailed") == []

    scraping.world.finish_job(scraping.live_job, "failed")
    scraping.world.add_job(
        benchmark_id=BRAVO,
        agents=[FAILING],
        state="timeout",
        create_ms=int(time.time() * 1000),
        n_scenarios=JOB_SCENARIOS,
    )

    def firing() -> dict[str, dict[str, Any]]:
        alerts = scraping.alerts("RunloopBenchmarkJobFailed")
        return {a["labels"]["state"]: a for a in alerts if a["state"] == "firing"}

    wait_for(scraping, lambda: len(firing()) == 2, "RunloopBenchmarkJobFailed to fire for both states")
    alerts = firing()
    assert set(alerts) == {"failed", "timeout"}
    assert len(scraping.alerts("RunloopBenchmarkJobFailed")) == 2
    for state, alert in alerts.items():
        assert alert["labels"]["job"] == "runloop-exporter"
        assert alert["labels"]["severity"] == "warning"
        assert float(alert["value"]) == 1
        assert alert["labels"]["benchmark_id"] == BRAVO
        assert alert["annotations"]["summary"] == (
            f"1 benchmark job(s) of benchmark {BENCHMARKS[BRAVO]} ({BRAVO}) ended {state} in the last 15 minutes."
        )


@pytest.mark.timeout(2 * REGRESSION_HOLD_S + 3 * WAIT_S)
def test_the_agent_regression_alert_fires_after_its_for_duration(
    score_drop: ScoreDrop, scraping: Stack
) -> None:
    """Last in the module: in one process the other tests run while the alert is pending (and on other
    workers they run beside it, on the same stack).

    Its `for` is REGRESSION_HOLD here (the only change to the shipped rules); the wait for it is real.
    """
    hold = REGRESSION_HOLD_S

    def firing() -> list[dict[str, Any]]:
        return [a for a in scraping.alerts("RunloopAgentScoreRegression") if a["state"] == "firing"]

    def why() -> str:
        alerts = [(a["state"], a["activeAt"]) for a in scraping.alerts("RunloopAgentScoreRegression")]
        checks = {
            expr: [r["value"][1] for r in scraping.query(expr)]
            for expr in (
                'min_over_time(up{job="runloop-exporter"}[10m])',
                "changes(runloop_agent_last_benchmark_run_score[10m])",
                'count_over_time(ALERTS{alertname="RunloopAgentScoreRegression"}[10m])',
            )
        }
        return f"alerts: {alerts}; {checks}\n{scraping.logs()}"

    firing_at: list[float] = []

    def fired() -> bool:
        """Firing; else keep waiting while the alert is pending and its `for` has not run out."""
        alerts = scraping.alerts("RunloopAgentScoreRegression")
        if not alerts:
            return False  # a missed scrape: every series stale for a moment (see SCRAPE_S)
        (alert,) = alerts
        if alert["state"] == "firing":
            firing_at.append(time.time())
            return True
        return False  # pending (a missed scrape restarts its clock, see SCRAPE_S: wait_for bounds it)

    wait_for(scraping, fired, "RunloopAgentScoreRegression to fire", why, 2 * hold + WAIT_S)
    (alert,) = firing()
    # Prometheus' own record of when the condition started holding: it held for the whole `for`.
    assert firing_at[0] - _epoch(alert["activeAt"]) >= hold
    name, model = REGRESSING
    assert alert["labels"]["agent_name"] == name
    assert alert["labels"]["model_name"] == model
    assert alert["labels"]["benchmark_id"] == ALPHA
    assert float(alert["value"]) == pytest.approx(score_drop.latest, abs=1e-9)
    assert alert["annotations"]["summary"] == (
        f"The latest score of agent {name} with model {model} on benchmark {ALPHA} is "
        f"{score_drop.latest:.3f}, well below its 7-day average."
    )
