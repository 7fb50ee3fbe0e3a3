"""`check`: validate the settings, reach the API with the key, and say in words what is there or wrong.

A few requests (a page of runs and of benchmarks, a count per included id), no retries; exit 0 or 1.
The checkpoint (RUNLOOP_EXPORTER_STATE_DIR) is read and checked as a start would, and never written.
Key names and counts only: metadata values are user data and never printed.
"""

from __future__ import annotations

import sys
from collections import Counter

from exporter.app import build, http_limits, quiet_log_level
from exporter.checkpoint import Checkpoints
from exporter.checkpoint.header import MISSING, USED
from exporter.logs import configure
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.errors import ApiError, AuthError, RunloopError, cannot_read_jobs, explain
from exporter.runloop.models import RUNNING, Invalid, parse_run
from exporter.settings import Settings
from exporter.sync import BenchmarkNames
from exporter.sync.cycle import JOBS, RUNS

CHECK_PAGE_SIZE = 100  # runs and benchmarks `check` reads: one small page of each
CHECK_MAX_IDS = 20  # included ids `check` counts one by one


def check(settings: Settings) -> int:
    """Validate settings, reach the API with the key, and say what is there or what is wrong: exit 0 or 1."""
    configure(settings.log_format, quiet_log_level(settings))
    # No retries: a check should answer in seconds and report a failure as it is.
    app = build(settings, retry=RetryPolicy(max_retries=0), keep=True)
    client, base_url = app.client, app.base_url
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
    _report_checkpoint(settings, app.checkpoints)
    try:
        _report(settings, client)
    except RunloopError as exc:
        print(f"runloop-exporter: check failed: {explain(exc, base_url)}", file=sys.stderr)
        return 1
    finally:
        app.close()
    print("ok")
    return 0


def _report_checkpoint(settings: Settings, kept: Checkpoints | None) -> None:
    """Whether a checkpoint is there and whether a start would use it, and why not (nothing is written)."""
    if settings.state_dir is None:
        print("checkpoint: none (RUNLOOP_EXPORTER_STATE_DIR is not set): a start reads in full")
        return
    if kept is None:
        print("checkpoint: none (--demo keeps no checkpoint)")
        return
    holder = kept.held_elsewhere()
    running = f"; a running exporter (pid {holder}) writes it" if holder else ""
    print(f"checkpoint: {settings.state_dir}{running}")
    reconcile = {RUNS: settings.reconcile_interval_seconds, JOBS: settings.jobs_reconcile_interval_seconds}
    for verdict in kept.inspect():
        if verdict.result == USED:
            age = verdict.age_s or 0.0
            then = (
                " then reconciled beside the loop,"
                if (verdict.since_full_s or 0) >= reconcile[verdict.part]
                else ""
            )
            print(
                f"checkpoint {verdict.part}: written {age:.0f} s ago; would be used:{then} the first sync brings "
                "it up to date"
            )
        elif verdict.result == MISSING:
            print(f"checkpoint {verdict.part}: none yet; the {verdict.part} would be read in full")
        else:
            print(
                f"checkpoint {verdict.part}: would not be used ({verdict.result}: {verdict.reason}); "
                f"the {verdict.part} would be read in full"
            )


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
        if not cannot_read_jobs(exc):
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
