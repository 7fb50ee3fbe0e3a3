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


WINDOW_MS = 7 * 86_400_000  # RunloopAgentScoreRegression's [7d]
MARGIN = 0.8
MIN_OUTCOMES = 3
SPARK = 20  # the status page's sparkline
KEEP = 100  # scored outcomes the exporter keeps per agent and model


def expected_agent_rows(
    views: Iterable[dict[str, Any]], now_s: float
) -> dict[tuple[str | None, str | None, str | None], dict[str, Any]]:
    """What the status page must show per (benchmark, agent, model), from job views: the latest score and
    its job's creation time (s), the mean and count of the scored outcomes whose job was created in the
    last 7 days (of the newest KEEP), the newest SPARK scores oldest first, runs, runs in progress, the
    scenarios completed/failed/timed out, the most frequent exception type (ties: the smallest name) and
    whether the row is flagged as RunloopAgentScoreRegression would be."""
    rows: dict[tuple[str | None, str | None, str | None], dict[str, Any]] = {}

    def row(key: tuple[str | None, str | None, str | None]) -> dict[str, Any]:
        return rows.setdefault(
            key, {"runs": 0, "in_progress": 0, "scen": [0, 0, 0], "fail": {}, "scored": [], "last": None}
        )

    for view in views:
        source = view.get("job_source") or {}
        bid = source.get("benchmark_id") if source.get("type") == "benchmark" else None
        for outcome in view.get("benchmark_outcomes") or []:
            r = row((bid, outcome["agent_name"], outcome.get("model_name")))
            r["runs"] += 1
            for i, field in enumerate(("n_completed", "n_failed", "n_timeout")):
                r["scen"][i] += outcome[field]
            for scenario in outcome["scenario_outcomes"]:
                reason = scenario.get("failure_reason")
                if scenario["state"] in ("FAILED", "TIMEOUT") and reason:
                    r["fail"][reason["exception_type"]] = r["fail"].get(reason["exception_type"], 0) + 1
            score = outcome.get("average_score")
            if score is not None:
                r["scored"].append((view["create_time_ms"], score))
                order = (view["create_time_ms"], view["id"], outcome["benchmark_run_id"])
                if r["last"] is None or order > r["last"][0]:
                    r["last"] = (order, score)
        if view["state"] not in ENDED:
            for run in view.get("in_progress_runs") or []:
                config = run.get("agent_config") or {}
                if run["state"] == "running" and config.get("type") == "job_agent":
                    row((bid, config["name"], config.get("model_name")))["in_progress"] += 1
                elif run["state"] == "running":
                    row((bid, None, None))["in_progress"] += 1

    out: dict[tuple[str | None, str | None, str | None], dict[str, Any]] = {}
    for key, r in rows.items():
        kept = sorted(r["scored"])[-KEEP:]
        inside = [score for created, score in kept if created >= now_s * 1000 - WINDOW_MS]
        mean = sum(inside) / len(inside) if inside else None
        last = None if r["last"] is None else r["last"][1]
        top = sorted(r["fail"].items(), key=lambda item: (-item[1], item[0]))
        out[key] = {
            "last": last,
            "last_time_s": None if r["last"] is None else r["last"][0][0] / 1000,
            "mean": mean,
            "count": len(inside),
            "spark": [score for _, score in kept[-SPARK:]],
            "runs": r["runs"],
            "in_progress": r["in_progress"],
            "scenarios": tuple(r["scen"]),
            "exception": top[0] if top else None,
            "flagged": last is not None
            and mean is not None
            and len(inside) >= MIN_OUTCOMES
            and last < MARGIN * mean,
        }
    return out
