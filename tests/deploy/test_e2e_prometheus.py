"""End to end: the real exporter on the simulator, scraped by a real Prometheus with the rules.

Every dashboard query, with its variables filled in as Grafana would, returns data through Prometheus'
HTTP API, and "All" counts the runs and jobs without a benchmark and a benchmark used only through jobs;
every rule evaluates without error; a run that fails in the simulator makes
RunloopBenchmarkRunFailed fire, and a benchmark job that ends failed or timeout makes
RunloopBenchmarkJobFailed fire, while the failures already in the history did not; an agent and model whose
newest job scores far below its earlier ones makes RunloopAgentScoreRegression fire, and the dashboard's
leaderboard shows the mean the alert compared with.
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.simulator import Simulator, World
from tests.deploy.test_dashboard import grafana_query_result_lines, picker_options
from tests.support.deploy import DASHBOARD_FILE, RULES_FILE
from tests.support.exporter_process import Exporter
from tests.support.ports import free_port
from tests.support.tools import require_tool
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

API_KEY = "e2e-key"
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
# Two benchmarks with history (one failure each already), and runs still going.
BENCHMARKS = {"bmd_e2eAlpha0001": "alpha suite", "bmd_e2eBravo0002": "bravo suite"}
# Scrapes every 5 s with as long a timeout: on a busy machine (2 cores shared with other jobs) Prometheus
# and the exporter stall for seconds at times, and with 1 s a scrape times out now and then. A failed scrape
# marks every series stale, which resets the `for` of a pending alert.
SCRAPE_S = 5
# The `for` of the alerts fired here, in the rules this Prometheus loads: the rule file's own 5 minutes
# would hold the suite for 5 minutes each. Only these fields differ, with the baselines' group evaluated at
# the global interval rather than once a minute (test_only_the_holds_are_shortened); promtool's unit tests
# (deploy/prometheus/alerts_test.yaml) check the real `for` of the real file.
REGRESSION_HOLD = "30s"
FAILED_HOLD = "5s"
SHORTENED = {
    "RunloopAgentScoreRegression": REGRESSION_HOLD,
    "RunloopBenchmarkRunFailed": FAILED_HOLD,
    "RunloopBenchmarkJobFailed": FAILED_HOLD,
}
BASELINES_GROUP = "runloop-baselines"
# What Grafana would put in: $__rate_interval is at least 4 scrape intervals.
RATE_INTERVAL = f"{4 * SCRAPE_S}s"
RANGE = "5m"
WAIT_S = 90.0
ALPHA, BRAVO = BENCHMARKS
# A benchmark used only through benchmark jobs: no run of its own, so no runloop_benchmark_info (the runs its
# jobs make, like every job's, have no benchmark).
JOBS_ONLY = "bmd_e2eJobsOnly03"
# The agent and model whose score drops (on alpha), and the one whose jobs fail (on bravo).
REGRESSING = ("claude-code", "claude-opus-4")
FAILING = ("swe-agent", "gpt-4.1")
JOB_SCENARIOS = 20


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:  # Prometheus explains errors in a JSON body
        return json.load(err)


def wait_for(
    check: Callable[[], bool], what: str, on_timeout: Callable[[], str] = lambda: "", wait_s: float = WAIT_S
) -> None:
    """Poll until `check()` holds; the deadline only bounds a broken run, it is not a speed assertion."""
    wait_until(check, wait_s, what, interval=0.25, on_timeout=on_timeout)


@dataclass
class Stack:
    """The simulator's world, the exporter and Prometheus, all running."""

    world: World
    running: dict[str, str]  # benchmark id -> id of a run of it still running
    live_job: str  # id of a benchmark job still running
    prometheus_url: str
    exporter_log: Path
    prometheus_log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = get_json(url)
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """The alerts of one rule, pending or firing."""
        alerts = self.api("/api/v1/alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == name]

    def api(self, path: str) -> Any:
        body = get_json(f"{self.prometheus_url}{path}")
        assert body["status"] == "success", body
        return body["data"]

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name} (last lines) ---\n"
            + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
            for path in (self.exporter_log, self.prometheus_log)
        )


def _seed(world: World, now_ms: int) -> dict[str, str]:
    running: dict[str, str] = {}
    for index, (benchmark_id, name) in enumerate(BENCHMARKS.items()):
        world.add_benchmark(benchmark_id, name)
        for n in range(6):
            world.add_run(
                benchmark_id=benchmark_id,
                state="completed",
                start_ms=now_ms - (300 - 20 * n) * MINUTE_MS,
                duration_ms=(5 + 3 * n + index) * MINUTE_MS,
                score=0.55 + 0.05 * n,
            )
        world.add_run(
            benchmark_id=benchmark_id,
            state="failed",
            start_ms=now_ms - 150 * MINUTE_MS,
            duration_ms=9 * MINUTE_MS,
        )
        world.add_run(
            benchmark_id=benchmark_id,
            state="canceled",
            start_ms=now_ms - 140 * MINUTE_MS,
            duration_ms=MINUTE_MS,
        )
        running[benchmark_id] = world.add_run(benchmark_id=benchmark_id, start_ms=now_ms - 20 * MINUTE_MS)
    return running


def _seed_jobs(world: World, now_ms: int) -> str:
    """Benchmark jobs on both benchmarks: history (one failed already) and one job still running."""
    for days in (2, 1):
        world.jobs.add(
            benchmark_id=ALPHA,
            agents=[REGRESSING, ("aider", None)],
            levels=[0.7, 0.5],
            create_ms=now_ms - days * DAY_MS,
            n_scenarios=JOB_SCENARIOS,
        )
    world.jobs.add(
        benchmark_id=BRAVO,
        agents=[("openhands", "gpt-5"), FAILING],
        levels=[0.6, 0.4],
        create_ms=now_ms - 6 * HOUR_MS,
        n_scenarios=JOB_SCENARIOS,
    )
    world.jobs.add(
        benchmark_id=BRAVO,
        agents=[FAILING],
        state="failed",
        create_ms=now_ms - 3 * HOUR_MS,
        n_scenarios=JOB_SCENARIOS,
    )
    world.jobs.add(
        benchmark_id=JOBS_ONLY,
        agents=[("aider", None)],
        levels=[0.6],
        create_ms=now_ms - 2 * HOUR_MS,
        n_scenarios=JOB_SCENARIOS,
    )
    return world.jobs.add(
        benchmark_id=BRAVO,
        agents=[FAILING],
        state="running",
        create_ms=now_ms - 10 * MINUTE_MS,
        n_scenarios=JOB_SCENARIOS,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = require_tool("prometheus")
    tmp = tmp_path_factory.mktemp("e2e")
    world = World(order="newest_first", seed=5)
    now_ms = int(time.time() * 1000)
    running = _seed(world, now_ms)
    live_job = _seed_jobs(world, now_ms)
    procs: list[subprocess.Popen[bytes]] = []
    with Simulator(world, api_key=API_KEY) as simulator:
        exporter = Exporter(
            ["--base-url", simulator.url, "--sync-interval-seconds", "1", "--log-format", "console"],
            env={"RUNLOOP_API_KEY": API_KEY},
        )
        try:
            exporter_log = exporter.start(tmp).log_path
            assert exporter_log is not None
            config = {
                "global": {
                    "scrape_interval": f"{SCRAPE_S}s",
                    "scrape_timeout": f"{SCRAPE_S}s",
                    "evaluation_interval": "1s",
                },
                "rule_files": [str(_rules_for_e2e(tmp))],
                "scrape_configs": [
                    {
                        "job_name": "runloop-exporter",
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                    }
                ],
            }
            config_file = tmp / "prometheus.yml"
            config_file.write_text(yaml.safe_dump(config))
            prometheus_port = free_port()
            prometheus_log = tmp / "prometheus.log"
            with prometheus_log.open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [
                            prometheus,
                            f"--config.file={config_file}",
                            f"--storage.tsdb.path={tmp / 'data'}",
                            f"--web.listen-address=127.0.0.1:{prometheus_port}",
                            "--log.level=warn",
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            yield Stack(
                world,
                running,
                live_job,
                f"http://127.0.0.1:{prometheus_port}",
                exporter_log,
                prometheus_log,
            )
        finally:
            for proc in procs:
                _stop(proc)
            if exporter.proc is not None:
                exporter.stop()


@pytest.fixture(scope="module")
def scraping(stack: Stack) -> Stack:
    """The stack once Prometheus holds a few scrapes of a synced exporter, benchmark jobs included."""

    def synced() -> bool:
        try:
            up = stack.query("count_over_time(runloop_up[2m]) >= 5 and runloop_up == 1")
            jobs = stack.query(
                "count_over_time(runloop_exporter_jobs_available[2m]) >= 5 and runloop_exporter_jobs_available == 1"
                ' and on () count_over_time(runloop_benchmark_jobs{state="failed"}[2m]) >= 5'
            )
        except (OSError, AssertionError):
            return False
        return bool(up) and bool(jobs)

    wait_for(synced, "Prometheus to scrape a synced exporter", stack.logs)
    return stack


def _fill(expr: str, benchmark_regex: str) -> str:
    return (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE)
        .replace("$benchmark", benchmark_regex)
    )


def _shorten(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for group in groups:
        if group["name"] == BASELINES_GROUP:
            del group["interval"]
        for rule in group["rules"]:
            if rule.get("alert") in SHORTENED:
                rule["for"] = SHORTENED[rule["alert"]]
    return groups


def _e2e_groups() -> list[dict[str, Any]]:
    """The rule file's groups, with the holds of SHORTENED and the baselines at the global interval."""
    groups: list[dict[str, Any]] = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return _shorten(groups)


def _rules_for_e2e(tmp: Path) -> Path:
    path = tmp / "alerts.yaml"
    path.write_text(yaml.safe_dump({"groups": _e2e_groups()}, sort_keys=False))
    return path


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
        (g["name"], r.get("alert") or r.get("record"))
        for g, e in zip(shipped, _e2e_groups(), strict=True)
        for r, f in zip(g["rules"], e["rules"], strict=True)
        if r != f
    ]
    assert sorted(name for _, name in changed) == sorted(SHORTENED)
    assert [g["name"] for g in shipped if "interval" in g] == [BASELINES_GROUP]
    assert _shorten(shipped) == _e2e_groups()


def test_rules_load_and_evaluate_cleanly(scraping: Stack) -> None:
    groups = scraping.api("/api/v1/rules")["groups"]
    assert {g["name"] for g in groups} == {
        g["name"] for g in yaml.safe_load(RULES_FILE.read_text())["groups"]
    }

    def evaluated() -> bool:
        rules = [r for g in scraping.api("/api/v1/rules")["groups"] for r in g["rules"]]
        return all(r.get("lastEvaluation", "").startswith("20") for r in rules)

    wait_for(evaluated, "every rule to be evaluated")
    for group in scraping.api("/api/v1/rules")["groups"]:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return loaded


def _all_value() -> str:
    """What Grafana puts in for the Benchmark picker's "All"."""
    (picker,) = [v for v in _dashboard()["templating"]["list"] if v["name"] == "benchmark"]
    value: str = picker["allValue"]
    return value


def test_dashboard_variables_resolve(scraping: Stack) -> None:
    """The Benchmark picker, as Grafana builds it: names from runloop_benchmark_info, and the benchmark
    known only from its jobs by its id; each option's value is the id the panels select on."""
    (picker,) = [v for v in _dashboard()["templating"]["list"] if v["name"] == "benchmark"]
    query = picker["definition"].removeprefix("query_result(").removesuffix(")")
    lines = grafana_query_result_lines(scraping.query(query))
    expected = {(name, bid) for bid, name in BENCHMARKS.items()} | {(JOBS_ONLY, JOBS_ONLY)}
    assert picker_options(picker, lines) == expected, lines


def _key_selector(benchmark_id: str, agent: tuple[str, str]) -> str:
    name, model = agent
    return f'benchmark_id="{benchmark_id}", agent_name="{name}", model_name="{model}"'


def _outcome_score(stack: Stack, job_id: str) -> float:
    """The average score the simulator lists for the (only) outcome of a job."""
    (view,) = [v for v in stack.world.jobs.views() if v["id"] == job_id]
    (outcome,) = view["benchmark_outcomes"]
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

    @property
    def latest(self) -> float:
        return self.scores[-1]

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)


@pytest.fixture(scope="module")
def score_drop(scraping: Stack) -> ScoreDrop:
    """REGRESSING on alpha: three jobs that score high, then one that scores low.

    The alert's 7-day mean is "sum and count of the score histogram now, minus their lowest value in the
    7 days", i.e. the mean of the outcomes scored while Prometheus watched. Seven days cannot pass here,
    and they need not: the jobs already in the history are in the key's first sample (its baseline, as
    seven days of history would be in a real window's first sample), and the outcomes that arrive after
    it are exactly what a real window would average. So the test scrapes the history first, then adds
    jobs through the simulator as Runloop would list them; no sample is written into Prometheus by hand
    and the rule runs unchanged. (Backfilling older samples with promtool would only move the baseline
    back in time: the rule reads the same difference.)
    """
    stack = scraping
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
        stack.world.jobs.add(
            benchmark_id=ALPHA,
            agents=[REGRESSING],
            levels=[0.9],
            create_ms=now_ms - (3 - n) * MINUTE_MS,
            n_scenarios=JOB_SCENARIOS,
        )
        for n in range(3)
    ]
    wait_for(lambda: _scalar(stack, count) == 3, "the three good outcomes in Prometheus", stack.logs)
    # The latest score is at its mean: nothing to report.
    assert stack.alerts("RunloopAgentScoreRegression") == []
    drop = stack.world.jobs.add(
        benchmark_id=ALPHA, agents=[REGRESSING], levels=[0.1], create_ms=now_ms, n_scenarios=JOB_SCENARIOS
    )
    scores = [_outcome_score(stack, job) for job in [*good, drop]]
    assert scores[-1] < 0.8 * sum(scores) / len(scores), scores  # the simulated drop is a drop

    wait_for(
        lambda: bool(stack.alerts("RunloopAgentScoreRegression")),
        "RunloopAgentScoreRegression to become active",
        stack.logs,
    )
    return ScoreDrop(scores)


def test_a_score_drop_makes_the_agent_regression_alert_pending(
    score_drop: ScoreDrop, scraping: Stack
) -> None:
    """Only the agent and model that dropped, with its latest score; `for` keeps it pending for now."""
    (alert,) = scraping.alerts("RunloopAgentScoreRegression")
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
    (table,) = [p for p in _dashboard()["panels"] if p["title"].startswith("Leaderboard")]
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


def _targets() -> list[tuple[str, str]]:
    return [
        (p["title"], t["expr"]) for p in _dashboard()["panels"] if p["type"] != "row" for t in p["targets"]
    ]


def test_every_dashboard_query_returns_data(scraping: Stack, score_drop: ScoreDrop) -> None:
    """Including the agents row: the leaderboard's 7-day mean needs outcomes scored in the window."""
    targets = _targets()
    regex = _all_value()  # "All", as Grafana puts it in
    missing: list[str] = []

    def all_have_data() -> bool:
        missing[:] = [f"{title}: {expr}" for title, expr in targets if not scraping.query(_fill(expr, regex))]
        return not missing

    wait_for(all_have_data, "every dashboard query to return data", lambda: "Empty:\n" + "\n".join(missing))


def test_all_counts_what_has_no_benchmark_or_no_name(scraping: Stack) -> None:
    """Issue 23: with "All", every panel counts the runs and jobs without a benchmark and the benchmark
    used only through jobs. Each panel that follows the picker, asked for only those (a regex matching an
    empty benchmark_id or JOBS_ONLY), shows data, so they reach it; under All, the per-benchmark panels
    name them, and the counts include them."""
    # A job scored now on JOBS_ONLY, so that its 7-day mean (outcomes scored in the window) exists too.
    scraping.world.jobs.add(
        benchmark_id=JOBS_ONLY,
        agents=[("aider", None)],
        levels=[0.7],
        create_ms=int(time.time() * 1000),
        n_scenarios=JOB_SCENARIOS,
    )
    hidden = f"|{JOBS_ONLY}"
    targets = [(title, expr) for title, expr in _targets() if "$benchmark" in expr]
    assert len(targets) >= 20
    missing: list[str] = []

    def all_reached() -> bool:
        missing[:] = [
            f"{title}: {expr}" for title, expr in targets if not scraping.query(_fill(expr, hidden))
        ]
        return not missing

    wait_for(all_reached, "every panel to show the unnamed world", lambda: "Empty:\n" + "\n".join(missing))

    def legends(title: str) -> set[str]:
        (expr,) = [e for t, e in _targets() if t == title][:1]
        return {r["metric"].get("benchmark_name", "") for r in scraping.query(_fill(expr, _all_value()))}

    assert "(no benchmark)" in legends("Running runs per benchmark")
    assert {"(no benchmark)", *BENCHMARKS.values()} <= legends("Latest score per benchmark")
    assert JOBS_ONLY in legends("Latest score by agent and model")
    assert JOBS_ONLY in legends("Leaderboard: latest and 7-day mean score by agent and model")

    # The counts, against the simulator's own truth.
    def stat(title: str) -> float | None:
        (expr,) = [e for t, e in _targets() if t == title]
        return _scalar(scraping, _fill(expr, _all_value()))

    def running() -> int:
        return sum(1 for run in scraping.world.runs() if run["state"] == "running")

    assert running() > len(BENCHMARKS), "runs of the live job, without a benchmark, are running too"
    wait_for(lambda: stat("Running now") == running(), "Running now to count every running run")
    assert stat("Benchmarks") == len(BENCHMARKS) + 1


def test_a_failed_run_fires_the_run_failed_alert(scraping: Stack) -> None:
    # The failures in the history were there from the first scrape: not news.
    assert scraping.query('runloop_benchmark_runs{state="failed"} == 1')
    assert scraping.alerts("RunloopBenchmarkRunFailed") == []

    benchmark_id = "bmd_e2eBravo0002"
    scraping.world.finish_run(scraping.running[benchmark_id], "failed", duration_ms=21 * MINUTE_MS)

    def firing() -> list[dict[str, Any]]:
        return [a for a in scraping.alerts("RunloopBenchmarkRunFailed") if a["state"] == "firing"]

    wait_for(lambda: bool(firing()), "RunloopBenchmarkRunFailed to fire", scraping.logs)
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

    scraping.world.jobs.finish(scraping.live_job, "failed")
    scraping.world.jobs.add(
        benchmark_id=BRAVO,
        agents=[FAILING],
        state="timeout",
        create_ms=int(time.time() * 1000),
        n_scenarios=JOB_SCENARIOS,
    )

    def firing() -> dict[str, dict[str, Any]]:
        alerts = scraping.alerts("RunloopBenchmarkJobFailed")
        return {a["labels"]["state"]: a for a in alerts if a["state"] == "firing"}

    wait_for(lambda: len(firing()) == 2, "RunloopBenchmarkJobFailed to fire for both states", scraping.logs)
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
    """Last in the module: in one process the other tests run while the alert is pending.

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

    wait_for(fired, "RunloopAgentScoreRegression to fire", why, 2 * hold + WAIT_S)
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
