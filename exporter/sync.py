"""What to ask Runloop's API each cycle, and how its answers become a snapshot.

The first sync reads every run (the backfill). After that a sync asks only what can have changed:

1. the runs listed as `running` (usually one request), and likewise for each state new to us that
   some held run is in (a new state may not be final);
2. the first run of the listing, with `total_count` (one request: a cheap "did anything change" probe);
3. the runs after the last one we read (one request; where new runs land if the list is oldest first);
4. when the first run is not the one we saw first last time, the runs before it (new runs, if the list
   is newest first);
5. `GET /v1/benchmark_runs/{id}` for each held run that left its state, to learn how it ended.

Finished runs (completed, failed, canceled) never change, so they are folded into add-only totals and
forgotten; only runs that can still change are kept, one small record each. The listing's order is
not documented, so correctness never depends on it: after a sync the number of entries we account for
must equal `total_count`, or the probes are repeated once and, if they still disagree, the sync falls
back to a full read. Whatever order the API uses, the figures are the same; the order only changes how
often that fallback is needed. Without a trustworthy `total_count` (null, or not matching what a full
read found) nothing can be checked, so every sync is a full read. A full read also runs every
`reconcile_interval_s` to heal drift no probe can see (a run deleted while another appeared), and
reports when it found any.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from exporter.aggregate import GroupKey, RunningRun, Snapshot, Totals, build_snapshot
from exporter.api import ApiError, CancelledError, Page, RunloopClient, RunloopError, record_id
from exporter.idset import IdSet
from exporter.models import RUNNING, Invalid, Run, parse_run
from exporter.telemetry import Telemetry

log = structlog.get_logger(__name__)

Grouping = Callable[[Run], GroupKey | None]
"""Maps a run to its group, or None for a run that is filtered out (still counted as listed)."""

PROGRESS_EVERY_S = 5.0


def by_benchmark(run: Run) -> GroupKey:
    """The default grouping: one group per benchmark."""
    return GroupKey(run.benchmark_id)


class Sync(Protocol):
    """One sync with the API, producing the next snapshot (raises RunloopError when it cannot)."""

    def run(self) -> Snapshot:
        """Talk to the API and return the figures as they are now."""
        ...


class InvalidRecords:
    """Counts and logs each invalid record once, however many syncs see it again."""

    def __init__(self, count: Callable[[str], None], max_remembered: int = 100_000) -> None:
        self._count = count
        self._seen: set[tuple[str, str]] = set()
        self._max = max_remembered

    def report(self, invalid: Invalid) -> None:
        """Note one skipped record; logs only our description of the problem, never the record."""
        key = (invalid.reason, invalid.run_id or invalid.detail)
        if key in self._seen:
            return
        if len(self._seen) >= self._max:
            self._seen.clear()
        self._seen.add(key)
        self._count(invalid.reason)
        log.warning(
            "skipped an invalid run record",
            reason=invalid.reason,
            run_id=invalid.run_id,
            detail=invalid.detail,
        )


class BenchmarkNames:
    """Benchmark names by id, looked up once and cached; a failed lookup never fails a sync."""

    def __init__(
        self, client: RunloopClient, max_lookups_per_sync: int = 100, list_threshold: int = 10
    ) -> None:
        self._client = client
        self._names: dict[str, str] = {}
        self._failed: set[str] = set()
        self._max = max_lookups_per_sync
        self._list_threshold = list_threshold
        self._listed = False

    @property
    def names(self) -> dict[str, str]:
        """Names known so far (a copy)."""
        return dict(self._names)

    def resolve(self, benchmark_ids: Iterable[str]) -> None:
        """Look up the names of benchmarks not seen before, at most a bounded number one by one per sync.

        When many are missing (the first sync of a large account), one listing of the active benchmarks
        names most of them in a request or two; archived ones are then looked up by id.
        """
        missing = sorted(
            bid for bid in set(benchmark_ids) if bid not in self._names and bid not in self._failed
        )
        if len(missing) > self._list_threshold and not self._listed:
            self._listed = True
            self._list_all()
            missing = [bid for bid in missing if bid not in self._names]
        for bid in missing[: self._max]:
            try:
                self._fetch(bid)
            except CancelledError:
                return
            except RunloopError as exc:
                log.warning("benchmark name lookup failed", benchmark_id=bid, error=str(exc))
                return  # leave the rest for the next sync rather than press a struggling API

    def name_of(self, benchmark_id: str) -> str | None:
        """The name of one benchmark now, for name filters: cached, else looked up.

        None means Runloop has no usable name for it (404, or no name in the body), cached like a known
        name. A failed request raises RunloopError instead of returning None, so that the sync fails
        and is retried rather than filing a run by a name we could not learn (finished runs are
        counted once, so a wrong decision would stick until the next full read).
        """
        if benchmark_id in self._names:
            return self._names[benchmark_id]
        if benchmark_id in self._failed:
            return None
        if not self._listed:  # the first unknown id of a full-read cycle: one listing names most of them
            self._listed = True
            self._list_all()
            if benchmark_id in self._names:
                return self._names[benchmark_id]
        return self._fetch(benchmark_id)

    def _fetch(self, benchmark_id: str) -> str | None:
        """`GET /v1/benchmarks/{id}` and cache the answer: the name, or that there is none to have."""
        body = self._client.get_benchmark(benchmark_id)
        name = body.get("name") if isinstance(body, dict) else None
        if isinstance(name, str):
            self._names[benchmark_id] = name
            return name
        self._failed.add(benchmark_id)
        log.warning("benchmark has no usable name", benchmark_id=benchmark_id, found=body is not None)
        return None

    def _list_all(self) -> None:
        try:
            for page in self._client.iter_benchmark_pages(page_size=5000):
                for record in page.records:
                    if (
                        isinstance(record, dict)
                        and isinstance(record.get("id"), str)
                        and isinstance(record.get("name"), str)
                    ):
                        self._names[record["id"]] = record["name"]
        except RunloopError as exc:
            log.warning("listing benchmarks failed; looking names up one by one", error=str(exc))

    def retry_failed(self) -> None:
        """Forget failed lookups so that a reconcile tries them again (and may list all again)."""
        self._failed.clear()
        self._listed = False


@dataclass
class Ledger:
    """Everything an incremental sync holds between syncs; memory grows with live runs only."""

    totals: Totals
    running: dict[str, RunningRun] = field(default_factory=dict)  # runs that can still change
    head: str | None = None  # id of the first run of the listing (with an id) at the last read
    head_extra: int = 0  # entries without an id above it
    tail: str | None = None  # id of the last run of the listing (with an id) at the last read
    tail_extra: int = 0  # entries without an id below it
    listed: int = 0  # entries of the listing accounted for: valid, invalid and filtered out alike
    counted: bool = False  # whether total_count matched what the last full read found


@dataclass
class _Delta:
    """What one incremental sync learned, applied to the ledger only when every request succeeded."""

    finished: list[tuple[Run, GroupKey]] = field(default_factory=list)
    running: dict[str, RunningRun] = field(default_factory=dict)
    head: str | None = None
    head_extra: int = 0
    tail: str | None = None
    tail_extra: int = 0
    listed: int = 0
    total_count: int | None = None


class _Ends:
    """Tracks the first and last entries with an id, and the id-less entries around them."""

    def __init__(self) -> None:
        self.head: str | None = None
        self.head_extra = 0
        self.tail: str | None = None
        self.tail_extra = 0

    def see(self, record: Any) -> None:
        rid = record_id(record)
        if rid is None:
            self.tail_extra += 1
            if self.head is None:
                self.head_extra += 1
        else:
            self.tail, self.tail_extra = rid, 0
            if self.head is None:
                self.head = rid


class IncrementalSync:
    """The sync described in the module docstring; `full_every_sync=True` makes it a plain full rescan."""

    def __init__(
        self,
        client: RunloopClient,
        *,
        page_size: int,
        score_buckets: tuple[float, ...],
        duration_buckets: tuple[float, ...],
        names: BenchmarkNames,
        invalid: InvalidRecords,
        telemetry: Telemetry,
        reconcile_interval_s: float = 3600.0,
        full_read_timeout_s: float = 1800.0,
        full_every_sync: bool = False,
        grouping: Grouping = by_benchmark,
        benchmark_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._page_size = page_size
        self._buckets = (score_buckets, duration_buckets)
        self._names = names
        self._invalid = invalid
        self._telemetry = telemetry
        self._reconcile_interval_s = reconcile_interval_s
        self._full_read_timeout_s = full_read_timeout_s
        self._full_every_sync = full_every_sync
        self._user_grouping = grouping
        self._benchmark_id = benchmark_id  # list only this benchmark's runs (API-side filter)
        self._clock = clock
        self._ledger: Ledger | None = None
        self._last_full = 0.0
        self._warned_uncounted = False

    @property
    def ledger(self) -> Ledger | None:
        """The state held between syncs (for tests and benchmarks)."""
        return self._ledger

    def _grouping(self, run: Run) -> GroupKey | None:
        # A server that ignores the benchmark_id filter must not make one benchmark's runs count twice.
        if self._benchmark_id is not None and run.benchmark_id != self._benchmark_id:
            return None
        return self._user_grouping(run)

    def run(self) -> Snapshot:
        """One sync, then the snapshot of what we hold."""
        return snapshot_of([self.advance()], self._names)

    def advance(self) -> Ledger:
        """Bring the ledger up to date: a full read when due, else the probes (a full read as fallback)."""
        ledger = self._ledger
        if ledger is None:
            return self._full_read("backfill")
        if self._full_every_sync:
            return self._full_read("full_mode")
        if not ledger.counted:
            if not self._warned_uncounted:
                self._warned_uncounted = True
                log.warning("total_count is missing or does not match the listing; every sync is a full read")
            return self._full_read("probe_mismatch")
        due = self._clock() - self._last_full >= self._reconcile_interval_s
        for _attempt in range(2):
            delta = self._changes(ledger)
            if delta is None:
                break
            if delta.total_count == delta.listed:
                self._apply(ledger, delta)
                if due:  # bring what we hold up to date first, so that any difference is real drift
                    return self._full_read("scheduled", compare_with=ledger)
                return ledger
            log.info(
                "probes disagree with what we hold", total_count=delta.total_count, accounted=delta.listed
            )
        return self._full_read("probe_mismatch")

    # --- full read -------------------------------------------------------------------------------

    def _full_read(self, reason: str, compare_with: Ledger | None = None) -> Ledger:
        """Read the whole listing into a fresh ledger, then swap it in.

        A full read may take longer than a sync's deadline, but it must keep moving: each page gets a
        fresh sync deadline (so a stalled API stops it as early as it would stop a sync), within
        `full_read_timeout_s` overall.
        """
        started = self._clock()
        previous_deadline = self._client.deadline
        per_page = None if previous_deadline is None else max(previous_deadline - time.monotonic(), 1.0)
        overall = time.monotonic() + self._full_read_timeout_s
        try:
            ledger, total = self._read_all(reason, started, per_page, overall)
        finally:
            self._client.deadline = previous_deadline
        ledger.counted = total == ledger.listed
        self._names.retry_failed()
        self._ledger = ledger
        self._last_full = started
        self._telemetry.full_syncs.labels(reason).inc()
        if compare_with is not None:
            self._report_drift(compare_with, ledger)
        return ledger

    def _read_all(
        self, reason: str, started: float, per_page: float | None, overall: float
    ) -> tuple[Ledger, int | None]:
        ledger = Ledger(Totals(*self._buckets))
        ends = _Ends()
        seen = IdSet()
        progress = _Progress(reason, started, self._clock)
        total: int | None = None
        self._client.deadline = overall if per_page is None else min(overall, time.monotonic() + per_page)
        pages = self._client.iter_runs_pages(
            page_size=self._page_size, include_total_count=True, benchmark_id=self._benchmark_id
        )
        for number, page in enumerate(pages):
            if number == 0:
                total = page.total_count
            for record in page.records:
                ends.see(record)
                ledger.listed += 1  # total_count counts every entry of the listing, duplicates too
                run = parse_run(record)
                if isinstance(run, Run) and not seen.add(run.id):
                    self._invalid.report(
                        Invalid("duplicate_id", run.id, "the same run id came twice in one listing")
                    )
                    continue
                if isinstance(run, Invalid):
                    self._invalid.report(run)
                    continue
                key = self._grouping(run)
                if key is None:
                    continue
                if run.is_terminal:
                    ledger.totals.add(run, key)
                else:
                    ledger.running[run.id] = RunningRun(run.id, key, run.start_ms, run.state)
            progress.page(page, ledger.listed)
            if per_page is not None:
                self._client.deadline = min(overall, time.monotonic() + per_page)
        ledger.head, ledger.head_extra = ends.head, ends.head_extra
        ledger.tail, ledger.tail_extra = ends.tail, ends.tail_extra
        progress.done(ledger.listed)
        return ledger, total

    def _report_drift(self, before: Ledger, after: Ledger) -> None:
        """Compare what the incremental syncs held with what a full read found."""
        held = {g.key: g for g in build_snapshot(before.totals, before.running.values(), {}).groups}
        found = {g.key: g for g in build_snapshot(after.totals, after.running.values(), {}).groups}
        changed = [key for key in held.keys() | found.keys() if held.get(key) != found.get(key)]
        if changed or before.listed != after.listed:
            self._telemetry.reconcile_drift.inc()
            log.warning(
                "reconcile found drift and healed it",
                groups_changed=len(changed),
                runs_held=before.listed,
                runs_found=after.listed,
            )

    # --- incremental -----------------------------------------------------------------------------

    def _changes(self, ledger: Ledger) -> _Delta | None:
        """Ask what changed since the ledger was last updated; None when a full read is needed."""
        delta = _Delta(
            running=dict(ledger.running),
            head=ledger.head,
            head_extra=ledger.head_extra,
            tail=ledger.tail,
            tail_extra=ledger.tail_extra,
            listed=ledger.listed,
        )
        seen: set[str] = set()
        live_now = self._live_now(ledger)

        probe = self._client.list_runs(
            limit=min(ledger.head_extra + 1, self._page_size),
            include_total_count=True,
            benchmark_id=self._benchmark_id,
        )
        delta.total_count = probe.total_count
        probe_head = next((rid for rid in map(record_id, probe.records) if rid is not None), None)
        if probe_head != ledger.head and not self._scan_head(ledger, delta, seen):
            return None
        if ledger.tail is not None and not self._scan_tail(ledger, delta, seen):
            return None

        for run_id, (run, key) in live_now.items():
            if run_id in seen:
                continue
            held = delta.running.get(run_id)
            if held is not None:
                delta.running[run_id] = RunningRun(run_id, held.key, held.start_ms, run.state)
            elif key is not None:
                delta.running[run_id] = RunningRun(run_id, key, run.start_ms, run.state)
                delta.listed += 1  # live, listed somewhere we did not scan (not at either end)
        for run_id in [rid for rid in delta.running if rid not in live_now and rid not in seen]:
            self._resolve(run_id, delta)
        return delta

    def _live_now(self, ledger: Ledger) -> dict[str, tuple[Run, GroupKey | None]]:
        """The runs listed now in each state that can still change (running, and new states we hold)."""
        states = sorted({RUNNING} | {held.state for held in ledger.running.values()})
        live: dict[str, tuple[Run, GroupKey | None]] = {}
        for state in states:
            pages = self._client.iter_runs_pages(
                page_size=self._page_size, state=state, benchmark_id=self._benchmark_id
            )
            try:
                for page in pages:
                    for record in page.records:
                        run = parse_run(record)
                        if isinstance(run, Invalid):
                            self._invalid.report(run)
                        elif run.state == state:
                            live[run.id] = (run, self._grouping(run))
            except ApiError as exc:
                if state == RUNNING:
                    raise
                # The API may not filter by a state it does not document: look those runs up one by one.
                log.info("cannot list runs by a new state", state=state, error=str(exc))
        return live

    def _scan_head(self, ledger: Ledger, delta: _Delta, seen: set[str]) -> bool:
        """Read from the top of the listing down to the run that was first last time."""
        if ledger.head is None and ledger.listed:
            return False  # nothing to recognise the old top by
        new_at_most = None if delta.total_count is None else max(delta.total_count - ledger.listed, 0)
        budget = None if new_at_most is None else (new_at_most + ledger.head_extra) // self._page_size + 2
        ends = _Ends()
        pages = self._client.iter_runs_pages(page_size=self._page_size, benchmark_id=self._benchmark_id)
        for number, page in enumerate(pages, start=1):
            records = page.records
            cut = next(
                (i for i, r in enumerate(records) if ledger.head and record_id(r) == ledger.head), None
            )
            above = records if cut is None else records[:cut]
            for record in above:
                ends.see(record)
            if cut is not None:
                # The id-less entries just above the old first run were counted at the last read.
                new = len(above) - ledger.head_extra
                if new < 0:
                    return False
                self._take_new(above[:new], delta, seen, ledger.running)
                # With no new run above it, the old first run stays first, under every id-less entry.
                delta.head, delta.head_extra = ends.head or ledger.head, ends.head_extra
                return True
            self._take_new(above, delta, seen, ledger.running)
            if budget is not None and number >= budget:
                log.info("the first run we read was not found near the top of the listing", pages=number)
                return False
        if ledger.head is not None:
            return False  # the listing ended without it: the old first run is gone
        # The listing was empty at the last read: all of it is new, and it has a new tail too.
        delta.head, delta.head_extra = ends.head, ends.head_extra
        delta.tail, delta.tail_extra = ends.tail, ends.tail_extra
        return True

    def _scan_tail(self, ledger: Ledger, delta: _Delta, seen: set[str]) -> bool:
        """Read the entries after the last run we read; the id-less ones right after it were counted."""
        skip = ledger.tail_extra
        try:
            pages = self._client.iter_runs_pages(
                page_size=self._page_size, starting_after=ledger.tail, benchmark_id=self._benchmark_id
            )
            for page in pages:
                records = page.records[skip:]
                skip = max(skip - len(page.records), 0)
                for record in records:
                    rid = record_id(record)
                    if rid is None:
                        delta.tail_extra += 1
                    else:
                        delta.tail, delta.tail_extra = rid, 0
                self._take_new(records, delta, seen, ledger.running)
        except ApiError as exc:  # the cursor run is gone: only a full read can tell what changed
            log.info("the last run we read is gone from the listing", error=str(exc))
            return False
        return skip == 0

    def _take_new(
        self, records: list[Any], delta: _Delta, seen: set[str], held_running: dict[str, RunningRun]
    ) -> None:
        """Account for entries that were not in the listing at the last read (or moved in it)."""
        for record in records:
            run = parse_run(record)
            if not (isinstance(run, Run) and run.id in held_running):
                delta.listed += 1  # a held run was accounted for already; it only moved
            if isinstance(run, Run):
                if run.id in seen:
                    self._invalid.report(
                        Invalid("duplicate_id", run.id, "the same run id came twice in one listing")
                    )
                    continue
                seen.add(run.id)
            if isinstance(run, Invalid):
                self._invalid.report(run)
                continue
            key = self._grouping(run)
            if key is None:
                delta.running.pop(run.id, None)
                continue
            self._place(run, key, delta)

    def _place(self, run: Run, key: GroupKey, delta: _Delta) -> None:
        """File a run whose current state we know: held while it can change, totalled once finished."""
        if run.is_terminal:
            delta.running.pop(run.id, None)
            delta.finished.append((run, key))
        else:
            held = delta.running.get(run.id)
            delta.running[run.id] = RunningRun(
                run.id, held.key if held else key, held.start_ms if held else run.start_ms, run.state
            )

    def _resolve(self, run_id: str, delta: _Delta) -> None:
        """A held run is no longer listed in its state: learn what became of it."""
        record = self._client.get_run(run_id)
        if record is None:
            del delta.running[run_id]
            delta.listed -= 1
            return
        run = parse_run(record)
        if isinstance(run, Invalid):
            self._invalid.report(run)
            del delta.running[run_id]
            return
        self._place(run, delta.running[run_id].key, delta)

    def _apply(self, ledger: Ledger, delta: _Delta) -> None:
        for run, key in delta.finished:
            ledger.totals.add(run, key)
        ledger.running = delta.running
        ledger.head, ledger.head_extra = delta.head, delta.head_extra
        ledger.tail, ledger.tail_extra = delta.tail, delta.tail_extra
        ledger.listed = delta.listed


class CombinedSync:
    """Several listings synced side by side (one per included benchmark), shown as one snapshot."""

    def __init__(self, syncs: list[IncrementalSync], names: BenchmarkNames) -> None:
        self._syncs = syncs
        self._names = names

    def run(self) -> Snapshot:
        """Advance every listing; fail as a whole if one fails (each ledger stays consistent)."""
        return snapshot_of([sync.advance() for sync in self._syncs], self._names)


def snapshot_of(ledgers: list[Ledger], names: BenchmarkNames) -> Snapshot:
    """Freeze ledgers into one snapshot, looking up the names of benchmarks new to us."""
    if len(ledgers) == 1:
        totals = ledgers[0].totals
    else:
        totals = Totals(ledgers[0].totals.score_buckets, ledgers[0].totals.duration_buckets)
        for ledger in ledgers:
            totals.groups.update(ledger.totals.groups)  # listings are disjoint: one benchmark each
            totals.finished_runs += ledger.totals.finished_runs
    running = [run for ledger in ledgers for run in ledger.running.values()]
    keys = [*totals.groups, *(run.key for run in running)]
    names.resolve({key.benchmark_id for key in keys if key.benchmark_id is not None})
    return build_snapshot(totals, running, names.names)


class _Progress:
    """Logs a long full read every few seconds: pages, runs, rate and, when the total is known, an ETA."""

    def __init__(self, reason: str, started: float, clock: Callable[[], float]) -> None:
        self._reason = reason
        self._started = started
        self._clock = clock
        self._last = started
        self._pages = 0
        self._total: int | None = None

    def page(self, page: Page, runs: int) -> None:
        self._pages += 1
        if self._pages == 1:
            self._total = page.total_count
        now = self._clock()
        if now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        rate = runs / max(now - self._started, 1e-9)
        eta = None if self._total is None else round(max(self._total - runs, 0) / max(rate, 1e-9), 1)
        log.info(
            "full read in progress",
            reason=self._reason,
            pages=self._pages,
            runs=runs,
            total_count=self._total,
            runs_per_s=round(rate),
            eta_s=eta,
        )

    def done(self, runs: int) -> None:
        log.info(
            "full read finished",
            reason=self._reason,
            pages=self._pages,
            runs=runs,
            duration_s=round(self._clock() - self._started, 3),
        )
