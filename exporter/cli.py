"""Command-line entry point: wires settings, client, sync, scheduler and server, and handles signals."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from pydantic import SecretStr

from exporter import __version__
from exporter.api import RunloopClient
from exporter.apikey import ApiKey
from exporter.exposition import render_registry
from exporter.job import SyncJob
from exporter.logs import configure
from exporter.server import MetricsServer, State
from exporter.settings import Settings, SettingsError, describe, load_settings
from exporter.simulator import DEFAULT_API_KEY, DemoDriver, Simulator, World
from exporter.sync import BenchmarkNames, IncrementalSync, InvalidRecords
from exporter.telemetry import Telemetry
from exporter.webconfig import WebConfigError, load_web_config

log = structlog.get_logger("exporter")

DEMO_SYNC_INTERVAL_S = 5.0
SHUTDOWN_GRACE_S = 3.0


class _ToStructlog(logging.Handler):
    """Send the few stdlib log records (APScheduler's) through structlog, so every line has one format."""

    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger(record.name).log(record.levelno, record.getMessage())


@dataclass
class Demo:
    """The simulator and the driver that makes its world change, for --demo."""

    simulator: Simulator
    driver: DemoDriver
    stopped: list[bool] = field(default_factory=list)

    @classmethod
    def start(cls) -> Demo:
        """Seed a world with history and serve it on a free port of 127.0.0.1."""
        world = World(order="newest_first", seed=1)
        driver = DemoDriver(world, seed=1)
        driver.seed_history(int(time.time() * 1000))
        simulator = Simulator(world, api_key=DEFAULT_API_KEY)
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
    """Run the exporter until SIGTERM or SIGINT; exit 2 on bad settings."""
    try:
        settings = load_settings(argv)
    except SettingsError as exc:
        return _fail_settings(exc.problems)
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    return run(settings)


def run(settings: Settings) -> int:
    """Serve until told to stop."""
    configure(settings.log_format, settings.log_level)
    stdlib_handler = _ToStructlog()
    logging.getLogger("apscheduler").addHandler(stdlib_handler)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)

    demo = Demo.start() if settings.demo else None
    base_url = demo.simulator.url if demo else settings.base_url
    interval = settings.sync_interval_seconds
    if demo and "sync_interval_seconds" not in settings.model_fields_set:
        interval = DEMO_SYNC_INTERVAL_S
    if demo:
        key = ApiKey(value=SecretStr(DEFAULT_API_KEY))
    else:
        key = ApiKey(value=settings.api_key, path=settings.api_key_file)

    stop = threading.Event()
    telemetry = Telemetry()
    client = RunloopClient(
        base_url,
        key,
        timeout_s=settings.request_timeout_seconds,
        on_request=telemetry.count_request,
        on_rate_limited=telemetry.rate_limited.inc,
        stop=stop,
    )
    sync = IncrementalSync(
        client,
        page_size=settings.page_size,
        score_buckets=settings.score_buckets,
        duration_buckets=settings.duration_buckets,
        names=BenchmarkNames(client),
        invalid=InvalidRecords(lambda reason: telemetry.invalid_records.labels(reason).inc()),
        telemetry=telemetry,
        reconcile_interval_s=settings.reconcile_interval_seconds,
        full_read_timeout_s=settings.full_read_timeout_seconds,
        full_every_sync=settings.sync_mode == "full",
    )
    state = State(lambda: render_registry(telemetry.registry))
    try:
        web = load_web_config(settings.web_config_file) if settings.web_config_file else None
    except WebConfigError as exc:
        if demo:
            demo.stop()
        return _fail_settings([f"{describe('web_config_file')}: {exc}"])
    try:
        server = MetricsServer((settings.address, settings.port), state, web)
    except OSError as exc:
        if demo:
            demo.stop()
        return _fail_settings(
            [
                f"{describe('port')}: cannot listen on {settings.address}:{settings.port}: {exc.strerror or exc}"
            ]
        )
    deadline_s = settings.sync_deadline_seconds if settings.sync_timeout_seconds else interval * 0.9
    job = SyncJob(sync, client, state, telemetry, deadline_s=deadline_s)
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

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

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
    stop.wait()

    log.info("stopping")
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


if __name__ == "__main__":
    sys.exit(main())
