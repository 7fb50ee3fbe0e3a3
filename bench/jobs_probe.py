"""The exporter side of the jobs benchmark, in its own process so that its peak RSS is its own.

`python -m bench.jobs_probe URL`: one backfill (a full read of the job listing) and then a steady sync,
with the settings' defaults; prints one JSON line with requests, bytes, seconds, CPU seconds and peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

from bench.support import peak_rss_mb
from exporter.logs import configure
from exporter.metrics.agents import AgentCaps
from exporter.runloop.client import Page, RunloopClient
from exporter.settings import Settings
from exporter.simulator import DEFAULT_API_KEY
from exporter.sync.jobs import JobsSync
from exporter.sync.records import InvalidRecords


class CountingClient(RunloopClient):
    """The real client, counting the bytes of job pages as they arrive."""

    body_bytes = 0

    def list_jobs(self, **kwargs: Any) -> Page:
        page = super().list_jobs(**kwargs)
        self.body_bytes += page.body_bytes
        return page


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(url: str) -> None:
    """Backfill, then one steady sync; print the figures."""
    configure("console", "warning")
    settings = Settings(demo=True)  # the defaults; demo only so that no key is required
    client = CountingClient(url, lambda: DEFAULT_API_KEY)
    invalid: list[str] = []
    jobs = JobsSync(
        client,
        score_buckets=settings.score_buckets,
        caps=AgentCaps(settings.agent_model_max_values, settings.exception_type_max_values),
        admits=lambda benchmark_id: True,
        invalid=InvalidRecords(invalid.append, kind="benchmark job"),
        page_size=settings.jobs_page_size,
        max_concurrent=settings.max_concurrent_requests,
        reconcile_interval_s=settings.reconcile_interval_seconds,
        # Not cut off at the deadline: the driver compares the time it took with it (its last column).
        full_read_timeout_s=4 * settings.full_read_timeout_seconds,
    )
    rss_before = peak_rss_mb()
    started, cpu = time.perf_counter(), cpu_s()
    snapshot = jobs.run()
    backfill_s, backfill_cpu = time.perf_counter() - started, cpu_s() - cpu
    requests, body_bytes = client.requests, client.body_bytes
    ledger = jobs.ledger
    assert ledger is not None
    steady_before = client.requests
    jobs.run()
    result = {
        "jobs": ledger.listed,
        "live": len(ledger.live),
        "requests": requests,
        "bytes": body_bytes,
        "seconds": backfill_s,
        "cpu_s": backfill_cpu,
        "rss_import_mb": rss_before,
        "rss_mb": peak_rss_mb(),
        "steady_requests": client.requests - steady_before,
        "groups": len(snapshot.groups),
        "invalid": len(invalid),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
