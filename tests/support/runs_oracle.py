"""The benchmark-run samples /metrics must show, computed straight from raw run records.

Independent of the exporter's parsing and aggregation: plain loops over the documented fields (a
duration is `duration_ms / 1000` seconds, `le` buckets are cumulative and inclusive), so a test
comparing the two can fail when either is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tests.support.samples import Samples

SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DURATION_BUCKETS = (60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 43200, 86400)
STATES = ("running", "completed", "failed", "canceled")
TERMINAL = ("completed", "failed", "canceled")


def _le(bound: float) -> str:
    return repr(float(bound))


def _labels(bid: str | None, **extra: str) -> frozenset[tuple[str, str]]:
    base = {} if bid is None else {"benchmark_id": bid}
    return frozenset({**base, **extra}.items())


def expected_samples(
    runs: Iterable[Mapping[str, Any]],
    names: Mapping[str, str],
    score_buckets: tuple[float, ...] = SCORE_BUCKETS,
    duration_buckets: tuple[float, ...] = DURATION_BUCKETS,
) -> Samples:
    """The benchmark-run samples that /metrics must show for these (valid) runs."""
    runs = list(runs)
    out: Samples = {}
    benchmarks = sorted({r.get("benchmark_id") or None for r in runs}, key=lambda b: b or "")
    for bid in benchmarks:
        mine = [r for r in runs if (r.get("benchmark_id") or None) == bid]
        states = set(STATES) | {r["state"] for r in mine}
        for state in states:
            out[("runloop_benchmark_runs", _labels(bid, state=state))] = float(
                sum(r["state"] == state for r in mine)
            )
        for state in TERMINAL:
            durations = [
                r["duration_ms"] / 1000
                for r in mine
                if r["state"] == state and r.get("duration_ms") is not None
            ]
            name = "runloop_benchmark_run_duration_seconds"
            for bound in duration_buckets:
                out[(f"{name}_bucket", _labels(bid, state=state, le=_le(bound)))] = float(
                    sum(d <= bound for d in durations)
                )
            out[(f"{name}_bucket", _labels(bid, state=state, le="+Inf"))] = float(len(durations))
            out[(f"{name}_count", _labels(bid, state=state))] = float(len(durations))
            out[(f"{name}_sum", _labels(bid, state=state))] = float(sum(durations))
        scores = [r["score"] for r in mine if r["state"] == "completed" and r.get("score") is not None]
        name = "runloop_benchmark_run_score"
        for bound in score_buckets:
            out[(f"{name}_bucket", _labels(bid, le=_le(bound)))] = float(sum(s <= bound for s in scores))
        out[(f"{name}_bucket", _labels(bid, le="+Inf"))] = float(len(scores))
        out[(f"{name}_count", _labels(bid))] = float(len(scores))
        out[(f"{name}_sum", _labels(bid))] = float(sum(scores))
        finished = [
            r
            for r in mine
            if r["state"] == "completed" and r.get("score") is not None and r.get("duration_ms") is not None
        ]
        if finished:
            # The run that ended last; on a tie, the higher score.
            last = max(finished, key=lambda r: (r["start_time_ms"] + r["duration_ms"], r["score"]))
            out[("runloop_benchmark_last_completed_run_score", _labels(bid))] = float(last["score"])
            out[("runloop_benchmark_last_completed_run_timestamp_seconds", _labels(bid))] = (
                last["start_time_ms"] + last["duration_ms"]
            ) / 1000
        running = [r["start_time_ms"] for r in mine if r["state"] == "running"]
        if running:
            out[("runloop_benchmark_oldest_running_run_start_timestamp_seconds", _labels(bid))] = (
                min(running) / 1000
            )
        if bid is not None and bid in names:
            out[
                (
                    "runloop_benchmark_info",
                    frozenset({"benchmark_id": bid, "benchmark_name": names[bid]}.items()),
                )
            ] = 1.0
    return out
