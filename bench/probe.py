"""The exporter side of the scale benchmark, in its own process; driven line by line on stdin.

Commands: `backfill` (prints seconds, then CPU seconds), `sync` (prints requests sent), `serve` (prints a port serving the
current snapshot), `rss` (prints peak RSS in MB).
"""

from __future__ import annotations

import sys
import time

from bench.support import peak_rss_mb
from exporter.app import build_runs
from exporter.http.server import MetricsServer
from exporter.http.state import State
from exporter.logs import configure
from exporter.metrics.exposition import Rendered, render_registry
from exporter.metrics.telemetry import Telemetry
from exporter.runloop.client import RunloopClient
from exporter.settings import Settings
from exporter.simulator import DEFAULT_API_KEY


def requests_sent(telemetry: Telemetry) -> int:
    """Every request sent so far: the sync's and its full reads' (which ask through a lane of their own)."""
    [family] = telemetry.api_requests.collect()
    return int(sum(s.value for s in family.samples if s.name.endswith("_total")))


def main(url: str, mode: str, page_size: int) -> None:
    """Answer the driver's commands until stdin closes."""
    configure("console", "warning")  # logs to stderr; stdout carries the answers
    telemetry = Telemetry()
    client = RunloopClient(url, lambda: DEFAULT_API_KEY, on_request=telemetry.count_request)
    settings = Settings(
        demo=True, jobs=False, page_size=page_size, sync_mode="full" if mode == "full" else "incremental"
    )
    sync, _ = build_runs(settings, client, telemetry)
    snapshot = None
    for line in sys.stdin:
        command = line.strip()
        if command == "backfill":
            started, cpu = time.perf_counter(), time.process_time()
            snapshot = sync.run()
            print(f"{time.perf_counter() - started:.3f} {time.process_time() - cpu:.3f}", flush=True)
        elif command == "sync":
            before = requests_sent(telemetry)
            snapshot = sync.run()
            print(requests_sent(telemetry) - before, flush=True)
        elif command == "serve":
            assert snapshot is not None
            state = State(lambda: render_registry(telemetry.registry))
            state.rendered = Rendered.of(snapshot)
            server = MetricsServer(("127.0.0.1", 0), state)
            server.start()
            print(server.server_port, flush=True)
        elif command == "rss":
            print(peak_rss_mb(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
