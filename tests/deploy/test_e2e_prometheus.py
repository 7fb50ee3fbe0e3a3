"""End to end: the real exporter on the simulator, scraped every second by a real Prometheus with the rules.

Every dashboard query, with its variables filled in as Grafana would, returns data through Prometheus'
HTTP API; every rule evaluates without error; and a run that fails in the simulator makes
RunloopBenchmarkRunFailed fire, while the failure already in the history did not.
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.simulator import Simulator, World
from tests.support.deploy import DASHBOARD_FILE, RULES_FILE
from tests.support.ports import free_port
from tests.support.tools import require_tool
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

API_KEY = "e2e-key"
MINUTE_MS = 60_000
# Two benchmarks with history (one failure each already), and runs still going.
BENCHMARKS = {"bmd_e2eAlpha0001": "alpha suite", "bmd_e2eBravo0002": "bravo suite"}
# What Grafana would put in: $__rate_interval is at least 4 scrape intervals.
RATE_INTERVAL = "4s"
RANGE = "5m"
WAIT_S = 90.0


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:  # Prometheus explains errors in a JSON body
        return json.load(err)


def wait_for(check: Callable[[], bool], what: str, on_timeout: Callable[[], str] = lambda: "") -> None:
    """Poll until `check()` holds; the deadline only bounds a broken run, it is not a speed assertion."""
    wait_until(check, WAIT_S, what, interval=0.25, on_timeout=on_timeout)


@dataclass
class Stack:
    """The simulator's world, the exporter and Prometheus, all running."""

    world: World
    running: dict[str, str]  # benchmark id -> id of a run of it still running
    prometheus_url: str
    exporter_log: Path
    prometheus_log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = get_json(url)
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

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
    running = _seed(world, int(time.time() * 1000))
    procs: list[subprocess.Popen[bytes]] = []
    with Simulator(world, api_key=API_KEY) as simulator:
        try:
            exporter_port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOOP")}
            env["RUNLOOP_API_KEY"] = API_KEY
            exporter_log = tmp / "exporter.log"
            with exporter_log.open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "exporter",
                            "--address",
                            "127.0.0.1",
                            "--port",
                            str(exporter_port),
                            "--base-url",
                            simulator.url,
                            "--sync-interval-seconds",
                            "1",
                            "--log-format",
                            "console",
                        ],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            config = {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES_FILE)],
                "scrape_configs": [
                    {
                        "job_name": "runloop-exporter",
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
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
            yield Stack(world, running, f"http://127.0.0.1:{prometheus_port}", exporter_log, prometheus_log)
        finally:
            for proc in reversed(procs):
                _stop(proc)


@pytest.fixture(scope="module")
def scraping(stack: Stack) -> Stack:
    """The stack once Prometheus holds a few scrapes of a synced exporter."""

    def synced() -> bool:
        try:
            up = stack.query("count_over_time(runloop_up[1m]) >= 5 and runloop_up == 1")
        except (OSError, AssertionError):
            return False
        return bool(up)

    wait_for(synced, "Prometheus to scrape a synced exporter", stack.logs)
    return stack


def _fill(expr: str, benchmark_regex: str) -> str:
    return (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE)
        .replace("$benchmark", benchmark_regex)
    )


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


def test_dashboard_variables_resolve(scraping: Stack) -> None:
    """The Benchmark picker: names from runloop_benchmark_info, then the ids of the chosen names."""
    names = scraping.api("/api/v1/label/benchmark_name/values?match[]=runloop_benchmark_info")
    assert sorted(names) == sorted(BENCHMARKS.values())
    chosen = "alpha suite"
    selector = urllib.parse.quote(f'runloop_benchmark_info{{benchmark_name=~"{chosen}"}}')
    ids = scraping.api(f"/api/v1/label/benchmark_id/values?match[]={selector}")
    assert ids == ["bmd_e2eAlpha0001"]


def test_every_dashboard_query_returns_data(scraping: Stack) -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    targets = [
        (p["title"], t["expr"]) for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]
    ]
    # "All" benchmarks, as Grafana renders a multi-value variable for a regex matcher.
    regex = "(" + "|".join(sorted(BENCHMARKS)) + ")"
    missing: list[str] = []

    def all_have_data() -> bool:
        missing[:] = [f"{title}: {expr}" for title, expr in targets if not scraping.query(_fill(expr, regex))]
        return not missing

    wait_for(all_have_data, "every dashboard query to return data", lambda: "Empty:\n" + "\n".join(missing))


def _failed_alerts(stack: Stack) -> list[dict[str, Any]]:
    alerts = stack.api("/api/v1/alerts")["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == "RunloopBenchmarkRunFailed"]


def test_a_failed_run_fires_the_run_failed_alert(scraping: Stack) -> None:
    # The failures in the history were there from the first scrape: not news.
    assert scraping.query('runloop_benchmark_runs{state="failed"} == 1')
    assert _failed_alerts(scraping) == []

    benchmark_id = "bmd_e2eBravo0002"
    scraping.world.finish_run(scraping.running[benchmark_id], "failed", duration_ms=21 * MINUTE_MS)

    def firing() -> list[dict[str, Any]]:
        return [a for a in _failed_alerts(scraping) if a["state"] == "firing"]

    wait_for(lambda: bool(firing()), "RunloopBenchmarkRunFailed to fire", scraping.logs)
    (alert,) = firing()
    assert alert["labels"]["benchmark_id"] == benchmark_id
    assert alert["labels"]["job"] == "runloop-exporter"
    assert alert["labels"]["severity"] == "warning"
    assert float(alert["value"]) == 1
    assert alert["annotations"]["summary"] == (
        f"1 run(s) of benchmark {BENCHMARKS[benchmark_id]} ({benchmark_id}) failed in the last 15 minutes."
    )
