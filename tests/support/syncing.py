"""Build syncs against a simulator in-process, and compare their snapshots."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from exporter.metrics.aggregate import RunningRun, Snapshot
from exporter.metrics.exposition import Rendered
from exporter.metrics.telemetry import Telemetry
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.politeness import RequestGate
from exporter.simulator import DEFAULT_API_KEY, World
from exporter.sync import BenchmarkNames, IncrementalSync, InvalidRecords, SyncConfig
from tests.support.runs_oracle import expected_samples
from tests.support.samples import Samples, assert_samples, benchmark_part, parse


def new_sync(
    url: str,
    *,
    full: bool = False,
    page_size: int = 1000,
    clock: Callable[[], float] | None = None,
    reconcile_interval_s: float = 1e9,
    max_concurrent: int = 4,
    max_per_second: float = 1000.0,
    retry: RetryPolicy | None = None,
) -> tuple[IncrementalSync, Telemetry]:
    """An IncrementalSync (or a full rescan with `full=True`) talking to `url` over HTTP."""
    telemetry = Telemetry()
    client = RunloopClient(
        url,
        lambda: DEFAULT_API_KEY,
        retry=retry or RetryPolicy(max_retries=0),
        gate=RequestGate(max_concurrent, max_per_second),
        on_request=telemetry.count_request,
    )
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
    config = SyncConfig(
        page_size=page_size,
        reconcile_interval_s=reconcile_interval_s,
        full_every_sync=full,
        max_concurrent=max_concurrent,
    )
    sync = IncrementalSync(
        client,
        config,
        names=BenchmarkNames(client),
        invalid=InvalidRecords(telemetry.count_invalid),
        telemetry=telemetry,
        **kwargs,
    )
    return sync, telemetry


def figures(snapshot: Snapshot | None) -> dict[Any, Any]:
    """Every figure of a snapshot, sums rounded so that addition order does not matter."""
    assert snapshot is not None, "the sync published nothing (its first full read is still going on)"
    out: dict[Any, Any] = {"runs": snapshot.runs, "names": dict(snapshot.benchmark_names)}
    for group in snapshot.groups:
        out[group.key] = (
            dict(group.counts),
            {s: (h.cumulative, round(h.total, 6)) for s, h in group.durations.items()},
            (group.scores.cumulative, round(group.scores.total, 6)),
            group.last_completed_score,
            group.last_completed_end_s,
            group.oldest_running_start_s,
        )
    return out


def full_figures(url: str) -> dict[Any, Any]:
    """What a plain full read of the listing shows now."""
    sync, _ = new_sync(url, full=True)
    return figures(sync.run())


def exposed(snapshot: Snapshot) -> Samples:
    """The benchmark-run samples a scrape of this snapshot shows."""
    return benchmark_part(parse(Rendered.of(snapshot).body(b"", gzip=False).decode()))


def truth(
    world: World,
    *,
    still_running: Mapping[str, RunningRun] | None = None,
    duration_buckets: tuple[float, ...] | None = None,
) -> Samples:
    """What the snapshot must show, computed from the simulator's own state (not our aggregation).

    `still_running` holds the runs the exporter has not learned the end of yet (its backlog), as it
    last saw them: a snapshot is exact for the runs it accounts for, and these it accounts for in their
    last known state, a run deleted since included (the planner may leave its lookup for a later sync).
    """
    held = still_running or {}
    runs = [
        {**run, "state": held[str(run["id"])].state, "duration_ms": None, "score": None}
        if run["id"] in held
        else run
        for run in world.runs()
        if isinstance(run.get("id"), str) and run["id"]  # an entry without an id is invalid
    ]
    listed = {run["id"] for run in runs}
    runs += [
        {"id": rid, "benchmark_id": run.key.benchmark_id, "state": run.state, "start_time_ms": run.start_ms}
        for rid, run in held.items()
        if rid not in listed
    ]
    if duration_buckets is not None:
        return expected_samples(runs, world.benchmark_names(), duration_buckets=duration_buckets)
    return expected_samples(runs, world.benchmark_names())


def assert_exact(
    snapshot: Snapshot | None, world: World, *, still_running: Mapping[str, RunningRun] | None = None
) -> None:
    """Every benchmark-run sample equals the simulator's truth (sums to rounding)."""
    assert snapshot is not None, "the sync published nothing (its first full read is still going on)"
    assert_samples(exposed(snapshot), truth(world, still_running=still_running))


def backlog_ids(sync: IncrementalSync, world: World) -> dict[str, RunningRun]:
    """Held runs that have in truth left the state held for them, or are gone (the sync has not learned
    it yet), as held."""
    assert sync.ledger is not None
    return {
        rid: held
        for rid, held in sync.ledger.running.items()
        if (world.get_run(rid) or {}).get("state") != held.state
    }
