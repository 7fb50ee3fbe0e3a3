"""The wiring: one `build(settings)` that serve, `--once` and `check` all start from.

It decides once where the API is (Runloop, or the --demo simulator), which key and client to use, and
which sync the settings ask for; `App.close()` undoes it. The modes (exporter.serve, exporter.once,
exporter.check) only add what is theirs: a scheduler and a server, a deadline and stdout, a report.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from pydantic import SecretStr

from exporter.checkpoint import Checkpoints, JobsCheckpoint, RunsCheckpoint
from exporter.http.server import CLOSE_REASONS, Limits
from exporter.metrics.agents import AGENT_LABEL, EXCEPTION_LABEL, AgentCaps, JobsSnapshot
from exporter.metrics.aggregate import Snapshot
from exporter.metrics.budget import BENCHMARK_LABEL, BudgetHooks, SeriesBudget
from exporter.metrics.labels import FoldCounting, RunLabels, make_grouping
from exporter.metrics.telemetry import Telemetry
from exporter.resume import checkpoints
from exporter.runloop.apikey import ApiKey
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.politeness import RequestGate
from exporter.settings import Settings
from exporter.simulator import DEFAULT_API_KEY, DemoDriver, Latency, Simulator, World
from exporter.sync import BenchmarkNames, CombinedSync, IncrementalSync, InvalidRecords, Sync, SyncConfig
from exporter.sync.background import Bell
from exporter.sync.cycle import JOBS, RUNS, Cycle, Outcome, PartMetrics, Publish
from exporter.sync.jobs import JobsSync
from exporter.sync.jobspart import JobsPart
from exporter.sync.progress import ReadBoard

log = structlog.get_logger("exporter")


@dataclass
class Demo:
    """The simulator and the driver that makes its world change, for --demo."""

    simulator: Simulator
    driver: DemoDriver

    @classmethod
    def start(cls) -> Demo:
        """Seed a world with history and serve it on a free port of 127.0.0.1."""
        world = World(order="newest_first", seed=1)
        driver = DemoDriver(world, seed=1)
        driver.seed_history(int(time.time() * 1000))
        simulator = Simulator(world, api_key=DEFAULT_API_KEY, latency=Latency.realistic())
        simulator.start()
        driver.start()
        return cls(simulator, driver)

    def stop(self) -> None:
        """Stop the driver and the simulator."""
        self.driver.stop()
        self.simulator.stop()


@dataclass
class App:
    """Everything a mode needs from the settings, built once; `close()` releases it.

    Two parts, each a loop of its own: the runs (`sync`, on `client`) and, when read, the benchmark jobs
    (`jobs`, on `jobs_client`, a lane of the same request gate that yields to the runs).
    """

    base_url: str
    telemetry: Telemetry
    client: RunloopClient
    sync: Sync
    reader: RunloopClient  # the runs' full reads, on a lane of the client's gate
    jobs: JobsPart | None
    jobs_client: RunloopClient | None
    board: ReadBoard  # full reads in progress, for the status page
    bells: dict[str, Bell]  # rung when a part's full read ends, so its loop publishes at once
    budget: SeriesBudget  # folds the whole scrape (both parts) to RUNLOOP_EXPORTER_MAX_SERIES
    demo: Demo | None
    checkpoints: Checkpoints | None = None  # serve mode with a state directory

    def runs_cycle(self, publish: Publish[Snapshot], *, deadline_s: float | None) -> Cycle[Snapshot]:
        """A cycle of the run sync, publishing to `publish` (then writing the checkpoint when due); its
        first outcome that is not "still reading" starts the jobs' first read (JobsPart)."""
        clients = [self.client, self.reader]
        kept = self.checkpoints
        after = None if kept is None else lambda: kept.after_cycle(RUNS)

        def published(outcome: Outcome[Snapshot]) -> None:
            publish(outcome)
            ended = outcome.snapshot is not None or not outcome.ok
            if ended and self.jobs is not None and self.jobs.runs_ended():
                self.bells[JOBS]()

        return runs_cycle(self.sync, clients, self.telemetry, published, deadline_s=deadline_s, after=after)

    def jobs_cycle(
        self, publish: Publish[JobsSnapshot], *, deadline_s: float | None
    ) -> Cycle[JobsSnapshot] | None:
        """A cycle of the benchmark-jobs sync (None when jobs are off)."""
        if self.jobs is None or self.jobs_client is None:
            return None
        clients = [self.jobs_client, self.jobs.jobs.reader]
        kept = self.checkpoints
        after = None if kept is None else lambda: kept.after_cycle(JOBS)
        return jobs_cycle(self.jobs, clients, self.telemetry, publish, deadline_s=deadline_s, after=after)

    def close(self) -> None:
        """Close the client, and stop the demo's simulator when there is one."""
        self.client.close()
        if self.demo:
            self.demo.stop()


def build(
    settings: Settings,
    *,
    retry: RetryPolicy | None = None,
    stop: threading.Event | None = None,
    keep: bool = False,
) -> App:
    """The API (the demo's when --demo), the key, the clients and the parts the settings ask for.

    `retry` overrides the client's retries (--once retries briefly, check not at all); `stop` makes
    requests give up at shutdown; `keep` (serve mode) keeps a checkpoint in RUNLOOP_EXPORTER_STATE_DIR,
    which `App.checkpoints.start()` then reads (never in --demo, whose world is new at every start).
    """
    demo = Demo.start() if settings.demo else None
    try:
        base_url = demo.simulator.url if demo else settings.base_url
        key = (
            ApiKey(value=SecretStr(DEFAULT_API_KEY))
            if demo
            else ApiKey(value=settings.api_key, path=settings.api_key_file)
        )
        telemetry = Telemetry()
        telemetry.init_http(CLOSE_REASONS)
        client = build_client(settings, base_url, key, telemetry, stop, retry=retry)
        board = ReadBoard(telemetry.show_read_progress)
        bells = {RUNS: Bell(), JOBS: Bell()}
        names = BenchmarkNames(
            client,
            refresh_interval_s=settings.reconcile_interval_seconds,
            workers=settings.max_concurrent_requests,
        )
        reader = client.sibling(client.gate.lane())
        sync, runs_kept = build_runs(
            settings, client, telemetry, names=names, reader=reader, board=board, bell=bells[RUNS]
        )
        jobs_client = None
        jobs = None
        if settings.jobs:
            jobs_client = client.sibling(client.gate.lane(share=settings.jobs_request_share))
            jobs = _jobs_part(settings, jobs_client, telemetry, names, board=board, bell=bells[JOBS])
        budget = build_budget(settings, telemetry)
        kept = None
        if keep and not demo:
            jobs_kept = None if jobs is None else JobsCheckpoint(jobs.jobs, settings.score_buckets)
            kept = checkpoints(settings, base_url, key, telemetry, runs=runs_kept, jobs=jobs_kept)
        app = App(base_url, telemetry, client, sync, reader, jobs, jobs_client, board, bells, budget, demo)
        app.checkpoints = kept
        return app
    except BaseException:
        if demo:
            demo.stop()
        raise


def build_client(
    settings: Settings,
    base_url: str,
    key: ApiKey,
    telemetry: Telemetry,
    stop: threading.Event | None = None,
    *,
    retry: RetryPolicy | None = None,
) -> RunloopClient:
    """The API client, with the process-wide request limits of the settings."""
    return RunloopClient(
        base_url,
        key,
        timeout_s=settings.request_timeout_seconds,
        retry=retry,
        on_request=telemetry.count_request,
        on_rate_limited=telemetry.rate_limited.inc,
        on_latency=telemetry.time_request,
        stop=stop,
        gate=RequestGate(settings.max_concurrent_requests, settings.max_requests_per_second, stop=stop),
    )


def build_runs(
    settings: Settings,
    client: RunloopClient,
    telemetry: Telemetry,
    *,
    names: BenchmarkNames | None = None,
    reader: RunloopClient | None = None,
    board: ReadBoard | None = None,
    bell: Bell | None = None,
) -> tuple[Sync, RunsCheckpoint]:
    """The run sync the settings ask for: filters, extra labels, and one listing or one per included id;
    with what a checkpoint keeps of it.

    Its full reads ask through a lane of the client's gate, so the sync's own requests go first.
    """
    names = names or BenchmarkNames(
        client,
        refresh_interval_s=settings.reconcile_interval_seconds,
        workers=settings.max_concurrent_requests,
    )
    invalid = InvalidRecords(telemetry.count_invalid)
    labels = RunLabels(
        settings.metadata_labels,
        purpose=settings.purpose_label,
        max_values=settings.metadata_label_max_values,
    )
    benchmarks = settings.benchmark_filter()
    config = SyncConfig(
        score_buckets=settings.score_buckets,
        duration_buckets=settings.duration_buckets,
        page_size=settings.page_size,
        reconcile_interval_s=settings.reconcile_interval_seconds,
        full_read_timeout_s=settings.full_read_timeout_seconds,
        full_every_sync=settings.sync_mode == "full",
        max_concurrent=settings.max_concurrent_requests,
        grouping=make_grouping(benchmarks, labels, names.name_of),
    )
    reader = reader or client.sibling(client.gate.lane())

    def listing(benchmark_id: str | None) -> IncrementalSync:
        return IncrementalSync(
            client,
            config,
            names=names,
            invalid=invalid,
            telemetry=telemetry,
            benchmark_id=benchmark_id,
            reader=reader,
            board=board,
            bell=bell,
        )

    kept = RunsCheckpoint(names, labels, settings.score_buckets, settings.duration_buckets)
    sync: Sync
    if benchmarks.include_ids:  # other benchmarks cost no request: the API filters by id
        kept.listings = {bid: listing(bid) for bid in benchmarks.listed_ids()}
        sync = CombinedSync(list(kept.listings.values()), names, telemetry)
    else:
        sync = kept.listings[None] = listing(None)
    if labels.names:
        telemetry.init_folded(labels.names)
        sync = FoldCounting(sync, labels.names, telemetry.count_folded)
    return sync, kept


def build_budget(settings: Settings, telemetry: Telemetry) -> SeriesBudget:
    """The whole-scrape series budget, applied where the parts meet (exporter.publisher)."""
    labels = (*settings.metadata_labels, *(("purpose",) if settings.purpose_label else ()))
    telemetry.init_budget(
        (BENCHMARK_LABEL, *labels, *((AGENT_LABEL, EXCEPTION_LABEL) if settings.jobs else ()))
    )
    hooks = BudgetHooks(
        self_series=telemetry.own_series,
        count_folded=telemetry.count_budget_folded,
        set_series=telemetry.scrape_series.set,
    )
    return SeriesBudget(settings.max_series, hooks)


def _jobs_part(
    settings: Settings,
    client: RunloopClient,
    telemetry: Telemetry,
    names: BenchmarkNames,
    *,
    board: ReadBoard,
    bell: Bell,
) -> JobsPart:
    """The benchmark-jobs sync as a part of its own, whose failures never touch the runs."""
    benchmarks = settings.benchmark_filter()
    jobs = JobsSync(
        client,
        score_buckets=settings.score_buckets,
        caps=AgentCaps(settings.agent_model_max_values, settings.exception_type_max_values),
        admits=lambda benchmark_id: benchmarks.admits(benchmark_id, names.name_of),
        invalid=InvalidRecords(telemetry.count_invalid, kind="benchmark job"),
        page_size=settings.jobs_page_size,
        max_concurrent=settings.max_concurrent_requests,
        reconcile_interval_s=settings.jobs_reconcile_interval_seconds,
        full_read_timeout_s=settings.full_read_timeout_seconds,
        recheck_min_s=settings.jobs_interval_seconds,
        recheck_max_s=settings.jobs_recheck_max_seconds,
        on_full_read=lambda reason: telemetry.job_full_reads.labels(reason).inc(),
        on_read_failed=telemetry.full_read_failures.labels("jobs").inc,
        reader=client.sibling(client.gate),
        board=board,
        bell=bell,
    )
    telemetry.init_jobs()
    telemetry.init_folded((AGENT_LABEL, EXCEPTION_LABEL))
    retry_s = settings.reconcile_interval_seconds
    return JobsPart(jobs, count_folded=telemetry.count_folded, retry_s=retry_s, wait_for_runs=True)


def runs_cycle(
    sync: Sync,
    clients: Sequence[RunloopClient],
    t: Telemetry,
    publish: Publish[Snapshot],
    *,
    deadline_s: float | None,
    after: Callable[[], None] | None = None,
) -> Cycle[Snapshot]:
    """A cycle of the run sync: `runloop_up`, the sync counters and a "sync finished" line; then `after`
    (the checkpoint)."""

    def finished(outcome: Outcome[Snapshot]) -> None:
        snapshot = outcome.snapshot
        assert snapshot is not None
        t.runs_known.set(snapshot.runs)
        log.info(
            "sync finished",
            part=RUNS,
            runs=snapshot.runs,
            benchmarks=len(snapshot.benchmark_ids),
            requests=outcome.requests,
            duration_s=round(outcome.duration_s, 3),
        )
        if after is not None:
            after()

    metrics = PartMetrics(t.up, t.last_success, t.syncs, t.sync_duration)
    return Cycle(RUNS, sync.run, clients, publish, metrics, deadline_s=deadline_s, on_success=finished)


def jobs_cycle(
    part: JobsPart,
    clients: Sequence[RunloopClient],
    t: Telemetry,
    publish: Publish[JobsSnapshot],
    *,
    deadline_s: float | None,
    after: Callable[[], None] | None = None,
) -> Cycle[JobsSnapshot]:
    """A cycle of the benchmark-jobs part: `runloop_exporter_jobs_available` and the jobs' sync counters;
    then `after` (the checkpoint)."""
    metrics = PartMetrics(t.jobs_available, t.jobs_last_success, t.jobs_syncs, t.jobs_sync_duration)
    return Cycle(
        JOBS,
        part.run,
        clients,
        publish,
        metrics,
        deadline_s=deadline_s,
        log_failure=part.log_failure,
        on_success=None if after is None else lambda outcome: after(),
    )


def http_limits(settings: Settings) -> Limits:
    """How long and how many clients may hold the HTTP server."""
    return Limits(
        read_header_timeout_s=settings.read_header_timeout_seconds,
        idle_timeout_s=settings.idle_timeout_seconds,
        max_connections=settings.max_connections,
    )


def fail_settings(problems: Sequence[str]) -> int:
    """Print one line per settings problem on stderr; the exit status of bad settings (2)."""
    for problem in problems:
        print(f"runloop-exporter: {problem}", file=sys.stderr)
    return 2


def log_level_asked(settings: Settings) -> bool:
    """Whether a log level was set (RUNLOOP_EXPORTER_LOG_LEVEL or --log-level), not defaulted."""
    return "log_level" in settings.model_fields_set


def quiet_log_level(settings: Settings) -> str:
    """--once and check log only warnings unless a level was asked for: their output is the point."""
    return settings.log_level if log_level_asked(settings) else "warning"
