"""Expected benchmark-job samples, computed straight from job views (the simulator's own JSON).

Independent of the exporter's parsing and aggregation: plain loops over the documented fields, so a
test comparing the two can fail when either is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.utils import floatToGoString

from exporter.metrics.aggregate import DEFAULT_SCORE_BUCKETS
from tests.support.samples import Samples

STATES = ("initializing", "queued", "running", "completed", "failed", "cancelled", "timeout")
ENDED = {"completed", "failed", "cancelled", "timeout"}


def _go(bound: float) -> str:
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]  # the exposition's `le` spelling


def expected_job_samples(
    views: Iterable[dict[str, Any]],
    *,
    admits: Callable[[str | None], bool] = lambda bid: True,
    buckets: tuple[float, ...] = DEFAULT_SCORE_BUCKETS,
) -> Samples:
    """Every `runloop_benchmark_jobs` and `runloop_agent_*` sample the exporter must show."""
    states: dict[str | None, dict[str, int]] = {None: dict.fromkeys(STATES, 0)}  # per benchmark
    groups: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}

    def labels_of(bid: str | None, agent: str | None, model: str | None) -> tuple[tuple[str, str], ...]:
        out: list[tuple[str, str]] = []
        if bid is not None:
            out.append(("benchmark_id", bid))
        if agent is not None:
            out.append(("agent_name", agent))
        if model is not None:
            out.append(("model_name", model))
        return tuple(out)

    def group(key: tuple[tuple[str, str], ...]) -> dict[str, Any]:
        return groups.setdefault(
            key,
            {"runs": 0, "in_progress": 0, "scen": [0, 0, 0], "scores": [], "fail": {}, "last": None},
        )

    for view in views:
        source = view.get("job_source") or {}
        bid = source.get("benchmark_id") if source.get("type") == "benchmark" else None
        if not admits(bid):
            continue
        of_benchmark = states.setdefault(bid, dict.fromkeys(STATES, 0))
        of_benchmark[view["state"]] = of_benchmark.get(view["state"], 0) + 1
        for out in view.get("benchmark_outcomes") or []:
            g = group(labels_of(bid, out["agent_name"], out.get("model_name")))
            g["runs"] += 1
            g["scen"][0] += out["n_completed"]
            g["scen"][1] += out["n_failed"]
            g["scen"][2] += out["n_timeout"]
            for scenario in out["scenario_outcomes"]:
                reason = scenario.get("failure_reason")
                if scenario["state"] in ("FAILED", "TIMEOUT") and reason:
                    kind = reason["exception_type"]
                    g["fail"][kind] = g["fail"].get(kind, 0) + 1
            score = out.get("average_score")
            if score is not None:
                g["scores"].append(score)
                order = (view["create_time_ms"], view["id"], out["benchmark_run_id"])
                if g["last"] is None or order > g["last"][0]:
                    g["last"] = (order, score)
        if view["state"] not in ENDED:
            for run in view.get("in_progress_runs") or []:
                if run["state"] != "running":
                    continue
                config = run.get("agent_config") or {}
                if config.get("type") == "job_agent":
                    key = labels_of(bid, config["name"], config.get("model_name"))
                else:
                    key = labels_of(bid, None, None)
                group(key)["in_progress"] += 1

    samples: Samples = {}
    for bid, counts in states.items():
        where = () if bid is None else (("benchmark_id", bid),)
        for state, count in counts.items():
            samples[("runloop_benchmark_jobs", frozenset({*where, ("state", state)}))] = count
    for key, g in groups.items():
        base = frozenset(key)
        samples[("runloop_agent_benchmark_runs", base)] = g["runs"]
        samples[("runloop_agent_benchmark_runs_in_progress", base)] = g["in_progress"]
        for state, count in zip(("completed", "failed", "timeout"), g["scen"], strict=True):
            samples[("runloop_agent_scenarios", base | {("state", state)})] = count
        for kind, count in g["fail"].items():
            samples[("runloop_agent_scenario_failures", base | {("exception_type", kind)})] = count
        for bound in buckets:
            samples[("runloop_agent_benchmark_run_score_bucket", base | {("le", _go(bound))})] = sum(
                score <= bound for score in g["scores"]
            )
        samples[("runloop_agent_benchmark_run_score_bucket", base | {("le", "+Inf")})] = len(g["scores"])
        samples[("runloop_agent_benchmark_run_score_count", base)] = len(g["scores"])
        samples[("runloop_agent_benchmark_run_score_sum", base)] = sum(g["scores"])
        if g["last"] is not None:
            samples[("runloop_agent_last_benchmark_run_score", base)] = g["last"][1]
            samples[("runloop_agent_last_benchmark_run_timestamp_seconds", base)] = g["last"][0][0] / 1000
    return samples
