"""Command-line entry point: wires settings, client, sync, scheduler and server, and handles signals.

Three modes: serve (the default), `--once` (one sync, the exposition on stdout: for debugging and for
node_exporter's textfile collector) and `check` (settings, key and API in a few requests, in words).
Logs always go to stderr, so stdout carries only what the mode prints.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from pydantic import SecretStr

from exporter import __version__
from exporter.logs import configure
from exporter.metrics.agents import AGENT_LABEL, EXCEPTION_LABEL, AgentCaps
from exporter.metrics.aggregate import Snapshot
from exporter.metrics.exposition import render_registry
from exporter.metrics.labels import FoldCounting, RunLabels, make_grouping
from exporter.metrics.telemetry import Telemetry
from exporter.runloop.apikey import ApiKey
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.errors import ApiError, AuthError, CancelledError, RunloopError, explain
from exporter.runloop.models import RUNNING, Invalid, parse_run
from exporter.runloop.politeness import RequestGate
from exporter.server import CLOSE_REASONS, Limits, MetricsServer, State
from exporter.settings import Settings, SettingsError, describe, load_invocation
from exporter.simulator import DEFAULT_API_KEY, DemoDriver, Latency, Simulator, World
from exporter.sync import BenchmarkNames, CombinedSync, IncrementalSync, InvalidRecords, Sync, SyncConfig
from exporter.sync.job import SyncJob
from exporter.sync.jobs import JobsSync, WithJobs
from exporter.webconfig import WebConfigError, load_web_config

log = structlog.get_logger("exporter")

DEMO_SYNC_INTERVAL_S = 5.0
SHUTDOWN_GRACE_S = 3.0
CHECK_PAGE_SIZE = 100  # runs and benchmarks `check` reads: one small page of each
CHECK_MAX_IDS = 20  # included ids `check` counts one by one
ONCE_TIMEOUT_S = 30.0
"""How long --once tries, unless RUNLOOP_EXPORTER_SYNC_TIMEOUT_SECONDS says otherwise."""
ONCE_GRACE_S = 2.0
"""How long --once waits past its timeout for the sync to stop before it gives up on it (it then exits
at once): the README and --help promise an exit within 5 s of the timeout, process start included."""
ONCE_RETRY = RetryPolicy(max_retries=2, base_delay_s=0.5, max_delay_s=2.0)
"""--once rides out a brief 503 but fails in seconds when the network is down, not after 20 s."""


class _ToStructlog(logging.Handler):
    """Send the few stdlib log records (APScheduler's) through structlog, so every line has one format."""

    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger(record.name).log(record.levelno, record.getMessage())


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


def _fail_settings(problems: Sequence[str]) -> int:
    for problem in problems:
        print(f"runloop-exporter: {problem}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, or sync once, or check; exit 2 on bad settings."""
    try:
        invocation = load_invocation(argv)
    except SettingsError as exc:
        return _fail_settings(exc.problems)
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    if invocation.mode == "check":
        return check(invocation.settings)
    if invocation.mode == "once":
        return once(invocation.settings)
    return run(invocation.settings)


def _api_key(settings: Settings, demo: Demo | None) -> ApiKey:
    if demo:
        return ApiKey(value=SecretStr(DEFAULT_API_KEY))
    return ApiKey(value=settings.api_key, path=settings.api_key_file)


def _quiet_level(settings: Settings) -> str:
    """--once and check log only warnings unless a level was asked for: their output is the point."""
    return settings.log_level if "log_level" in settings.model_fields_set else "warning"


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
    invalid = InvalidRecords(lambda reason: telemetry.invalid_records.labels(reason).inc())
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
        sync = _with_jobs(settings, client, telemetry, sync, names)
    return sync


def _with_jobs(
    settings: Settings, client: RunloopClient, telemetry: Telemetry, sync: Sync, names: BenchmarkNames
) -> Sync:
    """The run sync followed by the benchmark-jobs sync, whose failures never fail the runs."""
    benchmarks = settings.benchmark_filter()
    jobs = JobsSync(
        client,
        score_buckets=settings.score_buckets,
        caps=AgentCaps(settings.agent_model_max_values, settings.exception_type_max_values),
        admits=lambda benchmark_id: benchmarks.admits(benchmark_id, names.name_of),
        invalid=InvalidRecords(
            lambda reason: telemetry.invalid_records.labels(reason).inc(), kind="benchmark job"
        ),
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


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def run(settings: Settings) -> int:
    """Serve until told to stop."""
    # SIGTERM and SIGINT are blocked here, before any thread starts (threads inherit the mask), and
    # taken synchronously with sigwait below. A Python signal handler would have to set an Event, and
    # a second signal arriving while the main thread holds that Event's lock deadlocks the process:
    # a double Ctrl-C, or a SIGTERM relayed twice, would leave the exporter unkillable but by SIGKILL.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    configure(settings.log_format, settings.log_level)
    stdlib_handler = _ToStructlog()
    logging.getLogger("apscheduler").addHandler(stdlib_handler)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)

    demo = Demo.start() if settings.demo else None
    base_url = demo.simulator.url if demo else settings.base_url
    interval = settings.sync_interval_seconds
    if demo and "sync_interval_seconds" not in settings.model_fields_set:
        interval = DEMO_SYNC_INTERVAL_S
    key = _api_key(settings, demo)

    stop = threading.Event()
    telemetry = Telemetry()
    telemetry.init_http(CLOSE_REASONS)
    client = build_client(settings, base_url, key, telemetry, stop)
    sync = build_sync(settings, client, telemetry)
    state = State(lambda: render_registry(telemetry.registry), demo=bool(demo))
    try:
        web = load_web_config(settings.web_config_file) if settings.web_config_file else None
    except WebConfigError as exc:
        if demo:
            demo.stop()
        return _fail_settings([f"{describe('web_config_file')}: {exc}"])
    try:
        server = MetricsServer(
            (settings.address, settings.port),
            state,
            web,
            limits=http_limits(settings),
            on_close=telemetry.count_http_close,
        )
    except OSError as exc:
        if demo:
            demo.stop()
        # Taken or forbidden ports are the port's fault; anything else (no such host) the address's.
        field = "port" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "address"
        where = f"{settings.address}:{settings.port}"
        return _fail_settings([f"{describe(field)}: cannot listen on {where}: {exc.strerror or exc}"])
    telemetry.http_connections.set_function(server.open_connections)
    deadline_s = settings.sync_deadline_seconds if settings.sync_timeout_seconds else interval * 0.9
    job = SyncJob(sync, client, state, telemetry, deadline_s=deadline_s, base_url=base_url)
    idle = threading.Event()
    idle.set()

    def guarded_job() -> None:
        idle.clear()
        try:
            job()
        finally:
            idle.set()

    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        guarded_job,
        "interval",
        seconds=interval,
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        id="sync",
    )

    server.start()
    scheduler.start()
    log.info(
        "runloop-exporter started",
        version=__version__,
        listen=f"{settings.address}:{server.server_port}",
        base_url=base_url,
        demo=bool(demo),
        sync_interval_s=interval,
    )
    received = signal.sigwait(STOP_SIGNALS)
    stop.set()

    log.info("stopping", signal=signal.Signals(received).name)
    scheduler.shutdown(wait=False)
    server.shutdown()
    server.server_close()
    finished = idle.wait(SHUTDOWN_GRACE_S)
    client.close()
    if demo:
        demo.stop()
    log.info("stopped", sync_interrupted=not finished)
    if not finished:
        # A request is still in flight past the grace period; do not let it hold the exit.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


class _Recording:
    """A Sync that remembers the error of its last run, so that --once can say what went wrong."""

    def __init__(self, sync: Sync) -> None:
        self._sync = sync
        self.error: Exception | None = None

    def run(self, deadline: float | None = None) -> Snapshot:
        try:
            return self._sync.run(deadline)
        except Exception as exc:
            self.error = exc
            raise


def once_timeout(settings: Settings) -> float:
    """How long --once tries: the sync timeout when one is set, else ONCE_TIMEOUT_S (not the interval's)."""
    return settings.sync_timeout_seconds if settings.sync_timeout_seconds is not None else ONCE_TIMEOUT_S


def once(settings: Settings) -> int:
    """One sync; the exposition (benchmark series, then self-metrics) on stdout. Exit 0, or 1 on failure.

    A failure is exactly one line on stderr, within ONCE_GRACE_S of the timeout: logs are held back and
    shown only after a success (or live, when a log level was asked for), requests are retried briefly,
    and a sync that does not stop in time is abandoned.
    """
    started = time.monotonic()
    timeout_s = once_timeout(settings)
    held = io.StringIO()
    live_logs = "log_level" in settings.model_fields_set
    configure(settings.log_format, _quiet_level(settings), stream=None if live_logs else held)
    # The first sync is a full read; within --once it gets the same deadline, not the backfill's half hour.
    settings = settings.model_copy(
        update={
            "full_read_timeout_seconds": min(settings.full_read_timeout_seconds, timeout_s),
            "request_timeout_seconds": min(settings.request_timeout_seconds, timeout_s),
        }
    )
    demo = Demo.start() if settings.demo else None
    base_url = demo.simulator.url if demo else settings.base_url
    telemetry = Telemetry()
    telemetry.init_http(CLOSE_REASONS)
    client = build_client(settings, base_url, _api_key(settings, demo), telemetry, retry=ONCE_RETRY)
    sync = _Recording(build_sync(settings, client, telemetry))
    state = State(lambda: render_registry(telemetry.registry))
    job = SyncJob(sync, client, state, telemetry, deadline_s=timeout_s - (time.monotonic() - started))
    outcome: list[bool] = []
    worker = threading.Thread(target=lambda: outcome.append(job()), name="once", daemon=True)
    worker.start()
    worker.join(max(started + timeout_s + ONCE_GRACE_S - time.monotonic(), 0.0))
    if worker.is_alive():  # stuck past every timeout: say so and leave the thread behind
        print(
            f"runloop-exporter: sync failed: it did not finish within {timeout_s:g} s"
            f" ({describe('sync_timeout_seconds')})",
            file=sys.stderr,
        )
        sys.stderr.flush()
        os._exit(1)
    client.close()
    if demo:
        demo.stop()
    if not outcome or not outcome[0] or state.rendered is None:
        reason = explain(sync.error, base_url) if sync.error else "the exposition could not be rendered"
        if isinstance(sync.error, CancelledError) and time.monotonic() >= started + timeout_s:
            reason = (
                f"no answer from {base_url} within {timeout_s:g} s ({describe('sync_timeout_seconds')}):"
                f" {sync.error}"
            )
        print(f"runloop-exporter: sync failed: {reason}", file=sys.stderr)
        return 1
    sys.stderr.write(held.getvalue())
    sys.stdout.buffer.write(state.rendered.body(state.self_metrics(), gzip=False))
    sys.stdout.flush()
    return 0


def check(settings: Settings) -> int:
    """Validate settings, reach the API with the key, and say what is there or what is wrong: exit 0 or 1."""
    configure(settings.log_format, _quiet_level(settings))
    demo = Demo.start() if settings.demo else None
    base_url = demo.simulator.url if demo else settings.base_url
    # No retries: a check should answer in seconds and report a failure as it is.
    client = RunloopClient(
        base_url,
        _api_key(settings, demo),
        timeout_s=settings.request_timeout_seconds,
        retry=RetryPolicy(max_retries=0),
    )
    print("settings: valid")
    print(f"api: {base_url}")
    print(
        f"requests: at most {settings.max_concurrent_requests} at once and"
        f" {settings.max_requests_per_second:g} per second"
    )
    limits = http_limits(settings)
    print(
        f"http: read-header timeout {limits.read_header_timeout_s:g} s, idle timeout "
        f"{limits.idle_timeout_s:g} s, at most {limits.max_connections} connections"
    )
    try:
        _report(settings, client)
    except RunloopError as exc:
        print(f"runloop-exporter: check failed: {explain(exc, base_url)}", file=sys.stderr)
        return 1
    finally:
        client.close()
        if demo:
            demo.stop()
    print("ok")
    return 0


def _count(total: int | None) -> str:
    return "unknown (no total_count)" if total is None else str(total)


def _report_jobs(settings: Settings, client: RunloopClient) -> None:
    """One line on benchmark jobs: off, not readable with this key, or how many there are."""
    if not settings.jobs:
        print("benchmark jobs: off (RUNLOOP_EXPORTER_JOBS=false)")
        return
    try:
        page = client.list_jobs(limit=1, include_total_count=True)
    except (AuthError, ApiError) as exc:
        if exc.status not in (403, 404):
            raise
        print(f"benchmark jobs: not readable with this key ({exc.status}); run metrics are unaffected")
        return
    print(f"benchmark jobs: {_count(page.total_count)}")


def _report(settings: Settings, client: RunloopClient) -> None:
    """What `check` prints about the account; raises RunloopError when a request fails."""
    first = client.list_runs(limit=CHECK_PAGE_SIZE, include_total_count=True)
    print("key: accepted")
    print(f"runs: {_count(first.total_count)}")
    running = client.list_runs(limit=1, state=RUNNING, include_total_count=True)
    print(f"running: {_count(running.total_count)}")

    parsed = [parse_run(record) for record in first.records]
    runs = [run for run in parsed if not isinstance(run, Invalid)]
    states = Counter(run.state for run in runs)
    seen = sorted({run.benchmark_id for run in runs if run.benchmark_id is not None})
    no_benchmark = sum(run.benchmark_id is None for run in runs)
    print(
        f"first page: {len(first.records)} runs of {len(seen)} benchmarks"
        f" ({no_benchmark} without a benchmark); states: "
        + (", ".join(f"{state}={n}" for state, n in sorted(states.items())) or "none")
    )
    invalid = Counter(run.reason for run in parsed if isinstance(run, Invalid))
    if invalid:
        print(
            "invalid records in the first page: " + ", ".join(f"{r}={n}" for r, n in sorted(invalid.items()))
        )
    keys = Counter(key for run in runs for key in run.metadata)
    if keys:  # key names and counts only: metadata values are user data
        values = {key: len({run.metadata[key] for run in runs if key in run.metadata}) for key in keys}
        print(
            "metadata keys in the first page: "
            + ", ".join(f"{key} ({values[key]} values)" for key in sorted(keys))
        )

    listing = next(iter(client.iter_benchmark_pages(page_size=CHECK_PAGE_SIZE)))
    more = " or more" if listing.has_more else ""
    print(f"benchmarks listed: {len(listing.records)}{more} (archived ones are not listed)")

    _report_jobs(settings, client)
    benchmarks = settings.benchmark_filter()
    if benchmarks.is_empty:
        print("filters: none (every benchmark is exported)")
        return
    names = BenchmarkNames(client)
    for bid in benchmarks.listed_ids()[:CHECK_MAX_IDS]:
        page = client.list_runs(limit=1, benchmark_id=bid, include_total_count=True)
        name = names.name_of(bid)
        about = "Runloop knows no benchmark by this id (check it)" if name is None else f"named {name!r}"
        print(f"included {bid}: {_count(page.total_count)} runs; {about}")
    exported = sum(benchmarks.admits(run.benchmark_id, names.name_of) for run in runs)
    print(f"filters: {exported} of the {len(runs)} valid runs of the first page pass")


if __name__ == "__main__":
    sys.exit(main())
