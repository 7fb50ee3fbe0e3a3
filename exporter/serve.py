"""Serve mode (the default): sync on a schedule and serve the figures until SIGTERM or SIGINT (SIGHUP is
logged and otherwise ignored); with a state directory, resume from the checkpoint and keep it."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from exporter import __version__
from exporter.app import build, fail_settings, http_limits
from exporter.http.errors import WebConfigError
from exporter.http.server import MetricsServer
from exporter.http.state import State
from exporter.http.webconfig import load_web_config
from exporter.logs import configure
from exporter.loops import Loop
from exporter.metrics.exposition import render_registry
from exporter.publisher import StatePublisher
from exporter.settings import Settings, describe
from exporter.sync.cycle import JOBS, RUNS

log = structlog.get_logger("exporter")

SHUTDOWN_GRACE_S = 3.0
CHECKPOINT_PATIENCE_S = 1.0
"""Of the grace, how long a cycle in flight at a stop may run on before its requests give up (only when a
checkpoint is kept: what it confirms is then written)."""
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# SIGHUP asks a daemon to reload, and by default kills a Python process without a word. There is nothing
# to reload by hand: the key file and the web config are re-read when they change. So it is logged, no more.
RELOAD_SIGNAL = signal.SIGHUP


class _ToStructlog(logging.Handler):
    """Send the few stdlib log records (APScheduler's) through structlog, so every line has one format."""

    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger(record.name).log(record.levelno, record.getMessage())


def serve(settings: Settings) -> int:
    """Serve until told to stop."""
    # SIGTERM and SIGINT are blocked here, before any thread starts (threads inherit the mask), and
    # taken synchronously with sigwait below. A Python signal handler would have to set an Event, and
    # a second signal arriving while the main thread holds that Event's lock deadlocks the process:
    # a double Ctrl-C, or a SIGTERM relayed twice, would leave the exporter unkillable but by SIGKILL.
    signal.pthread_sigmask(signal.SIG_BLOCK, {*STOP_SIGNALS, RELOAD_SIGNAL})
    configure(settings.log_format, settings.log_level)
    stdlib_handler = _ToStructlog()
    logging.getLogger("apscheduler").addHandler(stdlib_handler)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)

    stop = threading.Event()
    app = build(settings, stop=stop, keep=True)
    telemetry = app.telemetry
    state = State(
        lambda: render_registry(telemetry.registry),
        demo=app.demo is not None,
        self_metrics_openmetrics=lambda: render_registry(telemetry.registry, open_metrics=True),
    )
    try:
        web = load_web_config(settings.web_config_file) if settings.web_config_file else None
    except WebConfigError as exc:
        app.close()
        return fail_settings([f"{describe('web_config_file')}: {exc}"])
    try:
        server = MetricsServer(
            (settings.address, settings.port),
            state,
            web,
            limits=http_limits(settings),
            on_close=telemetry.count_http_close,
        )
    except OSError as exc:
        app.close()
        # Taken or forbidden ports are the port's fault; anything else (no such host) the address's.
        field = "port" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "address"
        where = f"{settings.address}:{settings.port}"
        return fail_settings([f"{describe(field)}: cannot listen on {where}: {exc.strerror or exc}"])
    telemetry.http_connections.set_function(server.open_connections)
    publish = StatePublisher(state, base_url=app.base_url, board=app.board, budget=app.budget)
    scheduler = BackgroundScheduler(timezone=UTC)
    loops = [Loop(RUNS, app.runs_cycle(publish, deadline_s=settings.sync_deadline_seconds), scheduler)]
    loops[0].every(settings.interval_seconds)
    jobs_cycle = app.jobs_cycle(publish, deadline_s=settings.jobs_deadline_seconds)
    if jobs_cycle is not None:
        loops.append(Loop(JOBS, jobs_cycle, scheduler))
        loops[1].every(settings.jobs_interval_seconds)
    for loop in loops:
        app.bells[loop.name].connect(loop.wake)

    server.start()
    if app.checkpoints is not None:
        app.checkpoints.start()  # before the first cycle: a matching checkpoint replaces the backfill
    scheduler.start()
    log.info(
        "runloop-exporter started",
        version=__version__,
        listen=f"{settings.address}:{server.server_port}",
        base_url=app.base_url,
        demo=app.demo is not None,
        sync_interval_s=settings.interval_seconds,
        jobs_sync_interval_s=settings.jobs_interval_seconds if jobs_cycle is not None else None,
    )
    while (received := signal.sigwait({*STOP_SIGNALS, RELOAD_SIGNAL})) == RELOAD_SIGNAL:
        log.info(
            "SIGHUP received; nothing to reload: the API key file and the web config are re-read "
            "when they change"
        )
    log.info("stopping", signal=signal.Signals(received).name)
    grace_until = time.monotonic() + SHUTDOWN_GRACE_S
    if app.checkpoints is not None:
        # No new cycle; one in flight gets a moment to end on its own, so that the checkpoint written
        # below holds what it confirms (a cycle cut short confirms nothing), then requests give up.
        scheduler.shutdown(wait=False)
        for loop in loops:
            loop.stop()
        soft_until = time.monotonic() + CHECKPOINT_PATIENCE_S
        all(loop.idle.wait(max(soft_until - time.monotonic(), 0.0)) for loop in loops)
    stop.set()
    if app.checkpoints is None:
        scheduler.shutdown(wait=False)
    server.shutdown()
    server.server_close()
    finished = all(loop.idle.wait(max(grace_until - time.monotonic(), 0.0)) for loop in loops)
    if app.checkpoints is not None:  # a clean stop keeps what the last cycles confirmed
        app.checkpoints.stop([loop.name for loop in loops if loop.idle.is_set()])
    app.close()
    log.info("stopped", sync_interrupted=not finished)
    if not finished:
        # A request is still in flight past the grace period; do not let it hold the exit.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
