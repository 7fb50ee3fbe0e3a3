"""Shared by the deploy tests: where things are, the metric contract, rendering the chart, checking shapes."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.tools import REPO

CHART = REPO / "deploy" / "helm" / "runloop-exporter"
RULES_FILE = CHART / "files" / "alerts.yaml"
DASHBOARD_FILE = CHART / "files" / "runloop-exporter.json"
RULES_LINK = REPO / "deploy" / "prometheus" / "alerts.yaml"
RULES_TEST_FILE = REPO / "deploy" / "prometheus" / "alerts_test.yaml"
DASHBOARD_LINK = REPO / "deploy" / "grafana" / "runloop-exporter.json"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
NAMESPACE = "runloop"
RELEASE = "rel"

# The metric contract (issue 2, plus the exporter's extra series), by name and type. Rules and dashboard
# may only use these (and Prometheus' own `up`).
HISTOGRAMS = {
    "runloop_benchmark_run_duration_seconds",
    "runloop_benchmark_run_score",
    "runloop_exporter_sync_duration_seconds",
    "runloop_agent_benchmark_run_score",
    "runloop_exporter_api_request_duration_seconds",
}
SIMPLE = {
    "runloop_benchmark_runs",
    "runloop_benchmark_last_completed_run_score",
    "runloop_benchmark_last_completed_run_timestamp_seconds",
    "runloop_benchmark_oldest_running_run_start_timestamp_seconds",
    "runloop_benchmark_info",
    "runloop_up",
    "runloop_exporter_last_successful_sync_timestamp_seconds",
    "runloop_exporter_syncs_total",
    "runloop_exporter_api_requests_total",
    "runloop_exporter_invalid_records_total",
    "runloop_exporter_build_info",
    "runloop_exporter_rate_limited_total",
    "runloop_exporter_runs",
    "runloop_benchmark_jobs",
    "runloop_agent_benchmark_runs",
    "runloop_agent_benchmark_runs_in_progress",
    "runloop_agent_scenarios",
    "runloop_agent_scenario_failures",
    "runloop_agent_last_benchmark_run_score",
    "runloop_agent_last_benchmark_run_timestamp_seconds",
    "runloop_exporter_jobs_available",
    "runloop_exporter_full_reads_total",
    "runloop_exporter_job_full_reads_total",
    "runloop_exporter_backlog_runs",
    "runloop_exporter_label_values_folded_total",
    "runloop_exporter_series_budget_folded_values_total",
    "runloop_exporter_scrape_series",
}
CONTRACT = SIMPLE | {f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}

_RUNLOOP_NAME = re.compile(r"\b(runloop_[a-z0-9_]+)")
_RECORDED_NAME = re.compile(r"\b(runloop:[a-z0-9_]+:[a-z0-9_]+)")


def metric_names(expr: str) -> set[str]:
    """The runloop_* metric names an expression refers to."""
    return set(_RUNLOOP_NAME.findall(expr))


def recorded_names(expr: str) -> set[str]:
    """The runloop:...:... series of the rules file's recording rules that an expression refers to."""
    return set(_RECORDED_NAME.findall(expr))


@dataclass(frozen=True)
class Run:
    """A finished command."""

    returncode: int
    stdout: str
    stderr: str


def run(args: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Run:
    done = subprocess.run(
        list(args), capture_output=True, text=True, env=dict(env) if env else None, cwd=cwd, check=False
    )
    return Run(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class Helm:
    """The helm binary with a private home, so the tests neither read nor write the user's helm config."""

    path: str
    env: Mapping[str, str]

    def __call__(self, *args: str) -> Run:
        return run([self.path, *args], env=self.env)

    def template(self, *values_files: Path, sets: Iterable[str] = (), set_json: Iterable[str] = ()) -> Run:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        for path in values_files:
            args += ["-f", str(path)]
        for assignment in sets:
            args += ["--set", assignment]
        for assignment in set_json:  # numbers stay numbers: --set reads 0.25 as a string
            args += ["--set-json", assignment]
        return self(*args)

    def render(
        self, *values_files: Path, sets: Iterable[str] = (), set_json: Iterable[str] = ()
    ) -> Manifests:
        result = self.template(*values_files, sets=sets, set_json=set_json)
        assert result.returncode == 0, result.stderr
        docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return Manifests(docs)


@dataclass(frozen=True)
class Manifests:
    """The objects of one render."""

    docs: list[dict[str, Any]]

    def kinds(self) -> list[str]:
        return sorted(str(doc["kind"]) for doc in self.docs)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def maybe(self, kind: str) -> dict[str, Any] | None:
        found = self.all(kind)
        assert len(found) <= 1, f"more than one {kind}"
        return found[0] if found else None

    def one(self, kind: str) -> dict[str, Any]:
        found = self.maybe(kind)
        assert found is not None, f"no {kind} rendered; kinds: {self.kinds()}"
        return found


def ci_values(name: str) -> Path:
    path = CHART / "ci" / f"{name}-values.yaml"
    assert path.is_file(), path
    return path


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


# --- A small structural checker for objects that have no official schema here (ServiceMonitor,
# PrometheusRule). A shape is a type, a tuple of allowed types, a list [item shape], a dict of
# {key: shape} (keys ending in "?" optional, no other keys allowed), or a predicate function.
Shape = Any


def check_shape(value: Any, shape: Shape, path: str = "$") -> list[str]:
    """Every way `value` does not fit `shape`, as readable lines (empty when it fits)."""
    problems: list[str] = []
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping, got {type(value).__name__}"]
        allowed = {key.rstrip("?"): key.endswith("?") for key in shape}
        problems += [f"{path}.{key}: unknown field" for key in value if key not in allowed]
        for key, optional in allowed.items():
            sub = shape[key + "?" if optional else key]
            if key in value:
                problems += check_shape(value[key], sub, f"{path}.{key}")
            elif not optional:
                problems.append(f"{path}.{key}: missing")
    elif isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        for index, item in enumerate(value):
            problems += check_shape(item, shape[0], f"{path}[{index}]")
    elif isinstance(shape, type | tuple):
        if not isinstance(value, shape) or (isinstance(value, bool) and shape in (int, (int, str))):
            return [f"{path}: expected {shape}, got {value!r}"]
    elif callable(shape):
        message = shape(value)
        if message:
            problems.append(f"{path}: {message}")
    else:  # pragma: no cover - a mistake in a test's shape
        raise TypeError(f"bad shape at {path}: {shape!r}")
    return problems
