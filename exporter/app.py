"""The wiring: one `build(settings)` that serve, `--once` and `check` all start from.

It decides once where the API is (Runloop, or the --demo simulator), which key and client to use, and
which sync the settings ask for; `App.close()` undoes it. The modes (exporter.serve, exporter.once,
exporter.check) only add what is theirs: a scheduler and a server, a deadline and stdout, a report.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from exporter.http import status
from exporter.http.server import CLOSE_REASONS, Limits
from exporter.http.state import State
from exporter.logs import REDACTOR
from exporter.metrics.agents import AGENT_LABEL, EXCEPTION_LABEL, AgentCaps
from exporter.metrics.budget import BENCHMARK_LABEL, BudgetHooks, SeriesBudget
from exporter.metrics.filters import BenchmarkFilter
from exporter.metrics.labels import FoldCounting, RunLabels, make_grouping
from exporter.metrics.telemetry import Telemetry
from exporter.runloop.apikey import ApiKey
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.errors import explain
from exporter.runloop.politeness import RequestGate
from exporter.settings import Settings
from exporter.simulator import DEFAULT_API_KEY, DemoDriver, Latency, Simulator, World
from exporter.sync import BenchmarkNames, CombinedSync, IncrementalSync, InvalidRecords, Sync, SyncConfig
from exporter.sync.job import Outcome, Publish, SyncJob
from exporter.sync.jobs import JobsSync
from exporter.sync.withjobs import WithJobs


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
    """Everything a mode needs from the settings, built once; `close()` releases it."""

    base_url: str
    telemetry: Telemetry
    client: RunloopClient
    sync: Sync
    demo: Demo | None

    def job(self, publish: Publish, *, deadline_s: float) -> SyncJob:
        """A sync job over this app's sync, publishing to `publish`."""
        return SyncJob(self.sync, self.client, publish, self.telemetry, deadline_s=deadline_s)

    def close(self) -> None:
        """Close the client, and stop the demo's simulator when there is one."""
        self.client.close()
        if self.demo:
            self.demo.stop()


def build(
    settings: Settings, *, retry: RetryPolicy | None = None, stop: threading.Event | None = None
) -> App:
    """The API (the demo's when --demo), the key, the client and the sync the settings ask for.

    `retry` overrides the client's retries (--once retries briefly, check not at all); `stop` makes
    requests give up at shutdown.
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
        return App(base_url, telemetry, client, build_sync(settings, client, telemetry), demo)
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


def build_sync(settings: Settings, client: RunloopClient, telemetry: Telemetry) -> Sync:
    """The sync the settings ask for: filters, extra labels, and one listing or one per included id."""
    names = BenchmarkNames(
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

    def listing(benchmark_id: str | None) -> IncrementalSync:
        return IncrementalSync(
            client, config, names=names, invalid=invalid, telemetry=telemetry, benchmark_id=benchmark_id
        )

    sync: Sync
    if benchmarks.include_ids:  # other benchmarks cost no request: the API filters by id
        sync = CombinedSync([listing(bid) for bid in benchmarks.listed_ids()], names, telemetry)
    else:
        sync = listing(None)
    if labels.names:
        telemetry.init_folded(labels.names)
        sync = FoldCounting(sync, labels.names, telemetry.count_folded)
    if settings.jobs:
        sync = _with_jobs(settings, client, telemetry, sync, names, benchmarks=benchmarks)
    telemetry.init_budget(
        (BENCHMARK_LABEL, *labels.names, *((AGENT_LABEL, EXCEPTION_LABEL) if settings.jobs else ()))
    )
    hooks = BudgetHooks(
        self_series=telemetry.own_series,
        count_folded=telemetry.count_budget_folded,
        set_series=telemetry.scrape_series.set,
    )
    return SeriesBudget(sync, settings.max_series, hooks)


def _with_jobs(
    settings: Settings,
    client: RunloopClient,
    telemetry: Telemetry,
    sync: Sync,
    names: BenchmarkNames,
    *,
    benchmarks: BenchmarkFilter,
) -> Sync:
    """The run sync followed by the benchmark-jobs sync, whose failures never fail the runs."""
    jobs = JobsSync(
        client,
        score_buckets=settings.score_buckets,
        caps=AgentCaps(settings.agent_model_max_values, settings.exception_type_max_values),
        admits=lambda benchmark_id: benchmarks.admits(benchmark_id, names.name_of),
        invalid=InvalidRecords(telemetry.count_invalid, kind="benchmark job"),
        page_size=settings.jobs_page_size,
        max_concurrent=settings.max_concurrent_requests,
        reconcile_interval_s=settings.reconcile_interval_seconds,
        full_read_timeout_s=settings.full_read_timeout_seconds,
        on_full_read=lambda reason: telemetry.job_full_reads.labels(reason).inc(),
    )
    telemetry.init_jobs()
    telemetry.init_folded((AGENT_LABEL, EXCEPTION_LABEL))
    return WithJobs(
        sync,
        jobs,
        available=telemetry.set_jobs_available,
        count_folded=telemetry.count_folded,
        retry_s=settings.reconcile_interval_seconds,
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


class StatePublisher:
    """Publishes sync outcomes to the HTTP server's State: the exposition, and the status page.

    The status page's table is rendered once per new snapshot and its "last sync" part after every
    sync, so requests only copy bytes.
    """

    def __init__(self, state: State, *, base_url: str = "") -> None:
        self._state = state
        self._base_url = base_url or "the API"
        self._table: status.Table | None = None  # the table of the snapshot served now

    def __call__(self, outcome: Outcome) -> None:
        """Serve a successful outcome's exposition; render the status page for any outcome."""
        if outcome.snapshot is not None and outcome.rendered is not None:
            self._table = status.render_table(outcome.snapshot)
            self._state.rendered = outcome.rendered
        error = outcome.error
        last = status.LastSync(
            ended_at=outcome.ended_at,
            duration_s=outcome.duration_s,
            requests=outcome.requests,
            ok=error is None,
            # Scrubbed although explain() never puts the key in: a page is no place to find out.
            error=None if error is None else str(REDACTOR.scrub(explain(error, self._base_url))),
        )
        self._state.page = status.render(demo=self._state.demo, last=last, table=self._table)
