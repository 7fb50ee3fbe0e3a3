"""The e2e tests' stack, started once per run in a process of its own: the simulator with the e2e history,
the exporter on it, and Prometheus scraping it with the shipped rules (one `for` shortened).

Once per run, not once per xdist worker: the first worker to collect a test that needs it starts it, under
the run's lock (tests/support/once.py), and every worker shares it. Its world lives in that process, so tests change it
through a small JSON control endpoint (`WorldControl`). It stops when the controller says so at the end
of the run (or once the run's last test that uses it is done), or by itself as soon as the pytest
process that owns the run is gone.

    python -m tests.support.e2e_stack FOLDER OWNER_PID
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from exporter.simulator import Simulator, World
from tests.support.deploy import RULES_FILE
from tests.support.exporter_process import Exporter
from tests.support.once import locked, worker_id
from tests.support.prometheus import Prometheus, PrometheusApi
from tests.support.tools import REPO, find_tool
from tests.support.waiting import Child, Pid, log_tail, pid_alive, wait_until

API_KEY = "e2e-key"
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
# Two benchmarks with history (one failure each already), and runs still going.
BENCHMARKS = {"bmd_e2eAlpha0001": "alpha suite", "bmd_e2eBravo0002": "bravo suite"}
ALPHA, BRAVO = BENCHMARKS
# The agent and model whose score drops (on alpha), and the one whose jobs fail (on bravo).
REGRESSING = ("claude-code", "claude-opus-4")
FAILING = ("swe-agent", "gpt-4.1")
# A benchmark used only through benchmark jobs: no run of its own, so no runloop_benchmark_info (the runs its
# jobs make, like every job's, have no benchmark).
JOBS_ONLY = "bmd_e2eJobsOnly03"
JOB_SCENARIOS = 20
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
STACK = "e2e-stack"


# --- the stack's process --------------------------------------------------------------------------


def regression_rule(groups: list[dict[str, Any]]) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        r for g in groups for r in g["rules"] if r.get("alert") == "RunloopAgentScoreRegression"
    ]
    (rule,) = rules
    return rule


def shorten(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The holds of SHORTENED, and the baselines at the global interval."""
    for group in groups:
        if group["name"] == BASELINES_GROUP:
            del group["interval"]
        for rule in group["rules"]:
            if rule.get("alert") in SHORTENED:
                rule["for"] = SHORTENED[rule["alert"]]
    return groups


def e2e_groups() -> list[dict[str, Any]]:
    """The rule file's groups, shortened (see SHORTENED)."""
    groups: list[dict[str, Any]] = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return shorten(groups)


def _seed_runs(world: World, now_ms: int) -> dict[str, str]:
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
    """Benchmark jobs on both benchmarks (history, one failed already, and one job still running) and on a
    benchmark that has only jobs."""
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
        benchmark_id=JOBS_ONLY,
        agents=[("aider", None)],
        levels=[0.6],
        create_ms=now_ms - 2 * HOUR_MS,
        n_scenarios=JOB_SCENARIOS,
    )
    world.jobs.add(
        benchmark_id=BRAVO,
        agents=[FAILING],
        state="failed",
        create_ms=now_ms - 3 * HOUR_MS,
        n_scenarios=JOB_SCENARIOS,
    )
    return world.jobs.add(
        benchmark_id=BRAVO,
        agents=[FAILING],
        state="running",
        create_ms=now_ms - 10 * MINUTE_MS,
        n_scenarios=JOB_SCENARIOS,
    )


def _control_server(world: World) -> ThreadingHTTPServer:
    """POST /<call> with JSON keyword arguments: the world changes the tests make, and what they read."""
    calls: dict[str, Callable[..., Any]] = {
        "finish_run": world.finish_run,
        "add_job": lambda agents, **kw: world.jobs.add(agents=[tuple(a) for a in agents], **kw),
        "finish_job": world.jobs.finish,
        "job_view": lambda job_id: next(v for v in world.jobs.views() if v["id"] == job_id),
        "running_runs": lambda: dict(
            Counter(str(run.get("benchmark_id") or "") for run in world.runs() if run["state"] == "running")
        ),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            kwargs = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            try:
                status, body = 200, {"result": calls[self.path.strip("/")](**kwargs)}
            except Exception as err:  # the test sees it, with its type
                status, body = 500, {"error": f"{type(err).__name__}: {err}"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def serve(folder: Path, owner_pid: int) -> None:
    """Run the stack until SIGTERM, or until the owner is gone or a part of the stack exits."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    prometheus_binary = find_tool("prometheus")
    assert prometheus_binary is not None, "prometheus is not installed"
    world = World(order="newest_first", seed=5)
    now_ms = int(time.time() * 1000)
    running = _seed_runs(world, now_ms)
    live_job = _seed_jobs(world, now_ms)
    rules = folder / "alerts.yaml"
    rules.write_text(yaml.safe_dump({"groups": e2e_groups()}, sort_keys=False))
    with Simulator(world, api_key=API_KEY) as simulator:
        exporter = Exporter(
            ["--base-url", simulator.url, "--sync-interval-seconds", "1", "--log-format", "console"],
            env={"RUNLOOP_API_KEY": API_KEY},
        )
        prometheus: Prometheus | None = None
        control = _control_server(world)
        threading.Thread(target=control.serve_forever, daemon=True).start()
        try:
            exporter.start(folder)
            config = {
                "global": {
                    "scrape_interval": f"{SCRAPE_S}s",
                    "scrape_timeout": f"{SCRAPE_S}s",
                    "evaluation_interval": "1s",
                },
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {
                        "job_name": "runloop-exporter",
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                    }
                ],
            }
            prometheus = Prometheus.start(prometheus_binary, config, folder / "prometheus")
            info = {
                "pid": os.getpid(),
                "prometheus_url": prometheus.url,
                "control_url": f"http://127.0.0.1:{control.server_address[1]}",
                "running": running,
                "live_job": live_job,
                "logs": [str(exporter.log_path), str(prometheus.log)],
            }
            temporary = folder / "stack.json.tmp"
            temporary.write_text(json.dumps(info))
            temporary.rename(folder / "stack.json")
            parts = [exporter.child, prometheus.child]
            while not stopping.wait(0.5):
                if not pid_alive(owner_pid):
                    print(f"the test run (pid {owner_pid}) is gone: stopping", flush=True)
                    break
                gone = [part.exited() for part in parts if part.exited() is not None]
                if gone:
                    print("\n".join(str(g) for g in gone), flush=True)
                    break
        finally:
            control.shutdown()
            if prometheus is not None:
                prometheus.stop()
            if exporter.proc is not None:
                exporter.stop()
            used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            (folder / "cpu").write_text(f"{sum(u.ru_utime + u.ru_stime for u in used):.1f}")


# --- the tests' side ------------------------------------------------------------------------------


class WorldControl:
    """The stack's world, changed over its control endpoint as the tests would change a World."""

    def __init__(self, url: str) -> None:
        self._url = url

    def _call(self, name: str, **kwargs: Any) -> Any:
        response = httpx.post(f"{self._url}/{name}", json=kwargs, timeout=30)
        body = response.json()
        assert response.status_code == 200, f"{name}{kwargs}: {body.get('error')}"
        return body["result"]

    def finish_run(self, run_id: str, state: str, duration_ms: int) -> None:
        self._call("finish_run", run_id=run_id, state=state, duration_ms=duration_ms)

    def add_job(self, **kwargs: Any) -> str:
        job_id: str = self._call("add_job", **kwargs)
        return job_id

    def finish_job(self, job_id: str, state: str) -> None:
        self._call("finish_job", job_id=job_id, state=state)

    def job_view(self, job_id: str) -> dict[str, Any]:
        view: dict[str, Any] = self._call("job_view", job_id=job_id)
        return view

    def running_runs(self) -> dict[str, int]:
        """Runs running now in the world by benchmark id ("" for those without one, as benchmark jobs')."""
        counts: dict[str, int] = self._call("running_runs")
        return counts


@dataclass
class Stack(PrometheusApi):
    """The running stack, as a test sees it: Prometheus' API, the world's controls, the logs."""

    world: WorldControl
    running: dict[str, str]  # benchmark id -> id of a run of it still running
    live_job: str  # id of a benchmark job still running
    child: Child  # the stack's process: a wait that watches it fails at once if it stops
    log_files: list[Path]

    def logs(self) -> str:
        """The tails of the exporter's and Prometheus' logs, for a failure message."""
        return "\n".join(log_tail(path.stem, path, 15) for path in self.log_files)


_LAUNCHED: list[subprocess.Popen[bytes]] = []  # kept, so that Python does not warn it still runs


def launch(run_folder: Path, owner_pid: int) -> None:
    """Start the run's stack unless a worker did already, without waiting for it.

    Every worker calls this as soon as it has collected a test that needs the stack, so that the stack
    starts (and Prometheus gathers its first scrapes) while the tests before those run.
    """
    folder = run_folder / STACK
    with locked(run_folder / f"{STACK}.lock"):
        if folder.exists():
            return
        folder.mkdir()
        with (folder / "stack.log").open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.e2e_stack", str(folder), str(owner_pid)],
                cwd=REPO,
                stdin=subprocess.DEVNULL,  # not the xdist worker's channel, which it outlives
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _LAUNCHED.append(proc)
        (folder / "pid").write_text(str(proc.pid))
        (folder / "starts").write_text(f"{worker_id()}\n")


def shared_stack(run_folder: Path, owner_pid: int) -> Stack:
    """The run's stack, once it serves: started by the first worker to ask, shared by every other."""
    launch(run_folder, owner_pid)
    folder = run_folder / STACK
    child = Child("the e2e stack", Pid(int((folder / "pid").read_text())), folder / "stack.log")
    info_file = folder / "stack.json"
    wait_until(info_file.exists, 120, "the e2e stack to start", watch=child)
    info = json.loads(info_file.read_text())
    with locked(folder / "users.lock"), (folder / "users").open("a") as users:
        users.write(f"{worker_id()}\n")
    return Stack(
        info["prometheus_url"],
        WorldControl(info["control_url"]),
        info["running"],
        info["live_job"],
        child,
        [Path(p) for p in info["logs"]],
    )


def one_test_done(run_folder: Path, tests_using_it: int) -> None:
    """After a test that used the stack: whoever ends the run's last such test stops the stack, so that
    it does not sync and scrape through the rest of the run (the controller stops it otherwise)."""
    folder = run_folder / STACK
    if not folder.exists():
        return
    with locked(folder / "users.lock"):
        counter = folder / "done"
        done = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(done))
    if done == tests_using_it:
        _stop(folder)


def _stop(folder: Path) -> None:
    pid = int((folder / "pid").read_text())
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        try:
            wait_until(lambda: not pid_alive(pid), 30, "the e2e stack to stop")
        except AssertionError:
            os.kill(pid, signal.SIGKILL)


def stop_shared_stack(run_folder: Path) -> str | None:
    """Stop the run's stack if one was started and still runs; a line for the run's summary (None if
    none was started)."""
    folder = run_folder / STACK
    if not (folder / "pid").exists():
        return None
    _stop(folder)
    starts = (folder / "starts").read_text().split()
    users = sorted(set((folder / "users").read_text().split())) if (folder / "users").exists() else []
    cpu = (folder / "cpu").read_text() if (folder / "cpu").exists() else "?"
    return (
        f"e2e Prometheus stack: started {len(starts)} time(s) (by {', '.join(starts)}),"
        f" used by {', '.join(users) or 'no test'}; {cpu} s of CPU (simulator, exporter, Prometheus)"
    )


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]))
