"""One sync from start to end: a full read when due, else the probes and the cheapest way to learn
how the runs that left their state ended (README, "How a sync works").

Facts are kept as soon as they are learned: a run whose end a lookup or a scan saw is settled in the
ledger at once, so a sync that runs out of time loses nothing it established, and the next one goes on
from there. Lookups that do not fit the deadline wait in the backlog; the sync still publishes.

Full reads run beside the loop (exporter/sync/background.py): a sync waits for one it needs at most half
of its time, then publishes what it holds. A read that ends in a later cycle is brought up to date by
the same probes (catch-up) before it is swapped in, so what is published never goes back in time.

Long because the probes, the planner's choice and the swap of full reads all read and write what the
sync has learned of the listing (its order, where new runs land): apart, each would reach into the others.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, overload

import structlog

from exporter.metrics.aggregate import GroupKey, RunningRun, Snapshot, Totals, build_snapshot
from exporter.metrics.telemetry import Telemetry
from exporter.runloop.client import RunloopClient
from exporter.runloop.errors import CancelledError, ShutdownError
from exporter.runloop.models import Invalid, Run, parse_run
from exporter.sync.background import Background, Bell, Finished, page_time, patience
from exporter.sync.config import MAX_LIMIT, SyncConfig
from exporter.sync.fullread import FullRead
from exporter.sync.ledger import Delta, HeldListing, Ledger
from exporter.sync.lookups import Lookups
from exporter.sync.names import BenchmarkNames
from exporter.sync.planner import Costs, Plan, plan
from exporter.sync.probes import Live, Probes
from exporter.sync.progress import ReadBoard
from exporter.sync.records import InvalidRecords

log = structlog.get_logger("exporter.sync")

DEEP_SKIPS = 10
"""Syncs that rescan instead after a deeper scan found fewer than half of the runs it looked for."""


class Sync(Protocol):
    """One sync with the API, producing the next snapshot (raises RunloopError when it cannot)."""

    @overload
    def run(self, deadline: None = None) -> Snapshot: ...
    @overload
    def run(self, deadline: float | None) -> Snapshot | None: ...
    def run(self, deadline: float | None = None) -> Snapshot | None:
        """Talk to the API, asking nothing after `deadline` (monotonic), and return the figures now
        (None while the first full read is still going on: nothing to publish yet; never without a
        deadline, when the sync waits for it)."""
        ...


ReadResult = tuple[Ledger, int | None, int | None]
"""A full read's ledger, the total_count its first page gave, and where the old head stood in it."""


@dataclass(frozen=True)
class Rescan:
    """Why this sync re-reads the whole listing instead of probing it."""

    why: str
    about: dict[str, object]


class IncrementalSync:
    """The sync of one listing; `config.full_every_sync` makes it a plain full rescan."""

    def __init__(
        self,
        client: RunloopClient,
        config: SyncConfig,
        *,
        names: BenchmarkNames,
        invalid: InvalidRecords,
        telemetry: Telemetry,
        benchmark_id: str | None = None,
        reader: RunloopClient | None = None,
        board: ReadBoard | None = None,
        bell: Bell | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._config = config
        self._names = names
        self._invalid = invalid
        self._telemetry = telemetry
        self._benchmark_id = benchmark_id  # list only this benchmark's runs (API-side filter)
        self._clock = clock
        self._costs = Costs()
        self._full = FullRead(  # full reads ask through `reader`: a lane that yields to the sync
            reader or client,
            config,
            grouping=self._grouping,
            invalid=invalid,
            costs=self._costs,
            benchmark_id=benchmark_id,
            board=board,
            clock=clock,
        )
        self._reads: Background[ReadResult] = Background("runs-read", bell, clock=clock)
        self._cycle = 0
        self._fresh_at: float | None = None  # when the held ledger was last known up to date
        self._probes = Probes(client, self._grouping, invalid, self._costs, benchmark_id)
        self._lookups = Lookups(client, config.max_concurrent, self._costs)
        self._ledger: Ledger | None = None
        self._last_full = 0.0
        self._warned_uncounted = False
        self._new_at_ends: bool | None = None  # learned: do new runs appear at either end of the listing?
        # Learned: do new runs appear at the top (newest first)? Until known, reading on below the head
        # is worth a try: it never costs more than the rescan it replaces, and gives up early.
        self._new_at_head: bool | None = None
        self._deep_skips = 0  # deeper scans to skip after one that found too little
        self._confirmed = -1  # the cycle that last found the held ledger up to date (-1: none yet)
        self._resumed = False  # the ledger came from a checkpoint that no sync has confirmed yet

    @property
    def ledger(self) -> Ledger | None:
        """The state held between syncs (for tests and benchmarks)."""
        return self._ledger

    def held(self) -> HeldListing | None:
        """What a checkpoint keeps: the ledger when the last sync found it up to date (None otherwise,
        in full mode, or when total_count cannot be trusted: then every sync reads in full anyway)."""
        ledger = self._ledger
        if ledger is None or self._confirmed != self._cycle or not ledger.counted:
            return None
        if self._config.full_every_sync:
            return None
        return HeldListing(ledger, self._clock() - self._last_full, self._new_at_ends, self._new_at_head)

    def resume(self, held: HeldListing) -> None:
        """Start from a checkpoint instead of a backfill. The next sync brings it up to date with the
        usual probes (the planner may still choose a full read); nothing is published before a sync has
        confirmed it, and a reconcile is due when the last full read is older than its interval."""
        self._ledger = held.ledger
        self._last_full = self._clock() - held.since_full_s
        self._new_at_ends, self._new_at_head = held.new_at_ends, held.new_at_head
        self._resumed = True

    def _confirm(self) -> None:
        """The held ledger is up to date as of this sync."""
        self._fresh_at = self._clock()
        self._confirmed = self._cycle
        self._resumed = False

    def _grouping(self, run: Run) -> GroupKey | None:
        # A server that ignores the benchmark_id filter must not make one benchmark's runs count twice.
        if self._benchmark_id is not None and run.benchmark_id != self._benchmark_id:
            return None
        return self._config.grouping(run)

    @property
    def reading(self) -> str | None:
        """The reason of the full read in progress beside the sync, or None."""
        return self._reads.reading

    @overload
    def run(self, deadline: None = None) -> Snapshot: ...
    @overload
    def run(self, deadline: float | None) -> Snapshot | None: ...

    def run(self, deadline: float | None = None) -> Snapshot | None:
        """One sync, then the snapshot of what we hold (None until the first full read ends)."""
        ledger = self.advance(deadline)
        if ledger is None:
            return None
        self._names.prepare(deadline)  # only when publishing: a sync that has nothing yet asks nothing more
        self._telemetry.backlog.set(ledger.backlog)
        return snapshot_of([ledger], self._names, deadline)

    def advance(self, deadline: float | None = None) -> Ledger | None:
        """Bring the ledger up to date: the probes (a full read beside them when due or needed), then
        swap in a full read that ended. None while the first full read is still going on."""
        self._cycle += 1
        if self._ledger is None:
            self._read("backfill", deadline)
        else:
            self._step(self._ledger, deadline)
        finished = self._reads.take()
        if finished is not None:
            self._swap(finished, deadline)
        return None if self._resumed else self._ledger

    def _step(self, ledger: Ledger, deadline: float | None) -> None:
        """The probes over what we hold; a full read started (or awaited) when they cannot do."""
        if self._config.full_every_sync:
            self._read("full_mode", deadline)
            return
        if not ledger.counted:
            if not self._warned_uncounted:
                self._warned_uncounted = True
                log.warning("total_count is missing or does not match the listing; every sync is a full read")
            self._read("probe_mismatch", deadline)
            return
        due = self._clock() - self._last_full >= self._config.reconcile_interval_s
        step = self._caught_up(ledger, deadline)
        if isinstance(step, Rescan):
            log.info(step.why, **step.about)
            self._read("rescan", deadline)
            return
        if step is None:
            self._read("probe_mismatch", deadline)
            return
        self._confirm()
        if due:  # what we hold is up to date first, so that any difference the read finds is real drift
            self._new_at_ends = None  # and let the listing show its order again
            self._read("scheduled", deadline, wait=deadline is None)

    def _caught_up(
        self, ledger: Ledger, deadline: float | None, *, catch_up: bool = False
    ) -> Rescan | Delta | None:
        """Apply the probes' delta to `ledger`; the Delta when it added up, else why not (None: a mismatch)."""
        listed_before = ledger.listed
        step = self._changes(ledger, deadline, catch_up=catch_up)
        if isinstance(step, Rescan):
            return step
        if step is None or not step.adds_up():
            if step is not None:
                log.info("probes disagree with what we hold", totals=step.totals, accounted=step.listed)
                if any(total > listed_before for total in step.totals):
                    self._new_at_ends = False  # new runs land where no cheap probe looks
            return None
        if step.listed > listed_before:
            self._new_at_ends = True
        step.apply(ledger)
        return step

    # --- full read -------------------------------------------------------------------------------

    def _read(self, reason: str, deadline: float | None, *, wait: bool = True) -> None:
        """Start a full read beside the sync (unless one is going on), and wait for it a while."""
        before = self._ledger
        per_page = page_time(deadline, self._config.page_floor_s)
        watch = None if before is None else before.head
        listed = 0 if before is None else before.listed

        def read() -> ReadResult:
            ledger, total, old_head_at = self._full.read(reason, per_page, watch=watch)
            if old_head_at is not None and ledger.listed > listed:
                self._new_at_head = old_head_at > 0  # the new runs stand above the old first one, or not
            return ledger, total, old_head_at

        self._reads.start(reason, read, cycle=self._cycle)
        if wait:
            self._reads.wait(patience(deadline))

    def _swap(self, finished: Finished[ReadResult], deadline: float | None) -> None:
        """Swap in a full read that ended: at once when it is as new as this sync, else once the probes
        have brought it up to date. A failed read is tried again by the next sync that needs it."""
        if finished.error is not None:
            if self._ledger is None or not isinstance(finished.error, Exception):
                raise finished.error  # the backfill's failure is the sync's
            self._telemetry.full_read_failures.labels("runs").inc()
            log.warning(
                "full read failed; publishing what we hold, and reading again at the next sync",
                reason=finished.reason,
                error=str(finished.error),
                error_type=type(finished.error).__name__,
            )
            return
        assert finished.result is not None
        ledger = finished.result[0]
        held = self._ledger
        if finished.cycle != self._cycle and ledger.counted and not self._config.full_every_sync:
            try:
                caught = self._caught_up(ledger, deadline, catch_up=True)
            except CancelledError as exc:  # what it learned stays in the read's ledger: go on next sync
                if isinstance(exc, ShutdownError):
                    raise
                log.info("bringing a full read up to date ran out of time; going on at the next sync")
                self._reads.put_back(finished)
                return
            newer = held is not None and self._fresh_at is not None and self._fresh_at > finished.started
            if (
                not isinstance(caught, Delta) and newer
            ):  # what we hold is newer: keep it (a reconcile reads again)
                log.info(
                    "a full read could not be brought up to date; keeping what we hold",
                    reason=finished.reason,
                )
                return
        if finished.reason == "scheduled" and held is not None:
            self._report_drift(held, ledger)
        self._ledger = ledger
        self._last_full = finished.started
        self._confirm()
        self._telemetry.full_reads.labels(finished.reason).inc()

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

    def _changes(
        self, ledger: Ledger, deadline: float | None, *, catch_up: bool = False
    ) -> Delta | Rescan | None:
        """Ask what changed since the ledger was last updated; None when a full read is needed.

        `catch_up`: bringing a full read up to date, where another read would only start the race
        again: runs that ended are looked up (the rest wait in the backlog), never a rescan.
        """
        held = frozenset(ledger.running)
        seen: set[str] = set()
        live = self._probes.live(ledger, deadline)
        top = self._probes.top(ledger, deadline)
        delta = Delta.of(ledger)
        delta.count(top.total_count)
        if self._new_at_ends is False and (top.total_count or 0) > ledger.listed:
            return Rescan("new runs land mid-listing here, where no cheap probe finds them", {})
        pending = sorted(rid for rid in held if rid not in live)
        delta.pending = frozenset(pending)
        head_moved = top.head != ledger.head
        chosen = None if catch_up else self._plan(len(pending), ledger, top.total_count, head_moved)
        deeper = chosen is not None and chosen.choice == "rescan" and self._deeper_may_pay(head_moved)
        if chosen is not None and chosen.choice == "rescan" and not deeper:
            return Rescan(
                "re-reading the listing is cheaper than looking runs up",
                {
                    "pending": chosen.pending,
                    "lookup_s": round(chosen.lookup_s, 3),
                    "rescan_requests": chosen.rescan_requests,
                    "rescan_s": None if chosen.rescan_s is None else round(chosen.rescan_s, 3),
                },
            )

        self._probes.requests = 0
        self._probes.last_read = None
        listed = delta.listed
        if head_moved and not self._probes.scan_head(ledger, delta, seen, held, deadline):
            return None
        if delta.listed > listed:
            self._new_at_head = True
        listed = delta.listed
        if ledger.tail is not None and not self._probes.scan_tail(ledger, delta, seen, held, deadline):
            return None
        if delta.listed > listed:
            self._new_at_head = False  # they land at the end: oldest first
        if deeper and self._new_at_head is not True:  # the scans did not show new runs at the top
            return Rescan("new runs are not listed first here: re-reading the listing", {})
        self._follow_live(live, delta, seen)
        pending = [rid for rid in pending if rid in ledger.running and rid not in seen]
        if deeper and pending and chosen is not None and chosen.rescan_requests is not None:
            after = self._probes.last_read if head_moved else None
            pending = self._read_deeper(
                pending,
                ledger,
                delta,
                seen,
                rescan_requests=chosen.rescan_requests,
                after=after,
                running=len(live),
                deadline=deadline,
            )
        if chosen is not None and chosen.rescan_requests is not None:
            # Never more requests than the rescan that was turned down would have cost.
            room = max(chosen.rescan_requests - self._probes.requests, 0)
            pending, delta.backlog = pending[:room], max(len(pending) - room, 0)
        delta.backlog += self._look_up(pending, ledger, delta, deadline)
        return delta

    def _read_deeper(
        self,
        pending: list[str],
        ledger: Ledger,
        delta: Delta,
        seen: set[str],
        *,
        rescan_requests: int,
        after: str | None,
        running: int,
        deadline: float | None,
    ) -> list[str]:
        """Read on below the head instead of a rescan; returns the runs still to learn."""
        room = rescan_requests - self._probes.requests
        # Pages of 5,000 where the rescan reads pages of page_size: no more entries than it would read.
        pages = max(1, room * self._config.page_size // MAX_LIMIT)
        found = self._probes.scan_deeper(
            ledger, delta, seen, after=after, running=running, max_pages=pages, deadline=deadline
        )
        self._deep_skips = 0 if 2 * found >= len(pending) else DEEP_SKIPS
        return [rid for rid in pending if rid in ledger.running and rid not in seen]

    def _deeper_may_pay(self, head_moved: bool) -> bool:
        """Whether reading on below the head may beat a rescan: only where new runs are listed first,
        known already or shown by this sync's head scan (so the head must have moved while the order
        is unknown), and unless a recent deeper scan found too little (then a few rescans go first)."""
        if self._new_at_head is False or (self._new_at_head is None and not head_moved):
            return False
        if self._deep_skips:
            self._deep_skips -= 1
            return False
        return True

    def _plan(self, pending: int, ledger: Ledger, total: int | None, head_moved: bool) -> Plan | None:
        if not pending:
            return None
        new = 0 if total is None else max(total - ledger.listed, 0)
        scans = 1 + (math.ceil((new + 1) / MAX_LIMIT) if head_moved else 0)
        return plan(
            pending=pending,
            total=total,
            page_size=self._config.page_size,
            costs=self._costs,
            workers=self._config.max_concurrent,
            max_per_second=self._client.gate.max_per_second,
            scan_requests=scans,
        )

    def _follow_live(self, live: Live, delta: Delta, seen: set[str]) -> None:
        """Runs listed in a live state now: update the state of held ones, hold new ones."""
        for run_id, (run, key) in live.items():
            if run_id in seen:
                continue
            held = delta.running.get(run_id)
            if held is not None:
                delta.running[run_id] = RunningRun(run_id, held.key, held.start_ms, run.state)
                continue
            delta.listed += 1  # live, listed somewhere we did not scan (not at either end)
            if key is not None:
                delta.running[run_id] = RunningRun(run_id, key, run.start_ms, run.state)

    def _look_up(self, run_ids: list[str], ledger: Ledger, delta: Delta, deadline: float | None) -> int:
        """Learn what became of held runs no longer listed in their state; returns how many are left.

        Each answer is settled in the ledger as it arrives. When the deadline comes first, the rest
        wait for the next sync (the backlog) and this sync still publishes.
        """
        left = set(run_ids)
        for run_id, record in self._lookups.fetch(run_ids, deadline):
            left.discard(run_id)
            if record is None:
                delta.settle(ledger, run_id, None)
                continue
            run = parse_run(record)
            if isinstance(run, Invalid):
                self._invalid.report(run)
                continue  # held as it was; the next full read decides
            delta.settle(ledger, run_id, run)
        if left:
            log.info("lookups ran out of time; the rest wait for the next sync", left=len(left))
        return len(left)


class CombinedSync:
    """Several listings synced side by side (one per included benchmark), shown as one snapshot."""

    def __init__(self, syncs: list[IncrementalSync], names: BenchmarkNames, telemetry: Telemetry) -> None:
        self._syncs = syncs
        self._names = names
        self._telemetry = telemetry

    @overload
    def run(self, deadline: None = None) -> Snapshot: ...
    @overload
    def run(self, deadline: float | None) -> Snapshot | None: ...

    def run(self, deadline: float | None = None) -> Snapshot | None:
        """Advance every listing; fail as a whole if one fails (facts each learned are kept). None
        until every listing has been read once."""
        advanced = [sync.advance(deadline) for sync in self._syncs]
        ledgers = [ledger for ledger in advanced if ledger is not None]
        if len(ledgers) < len(advanced):
            return None
        self._names.prepare(deadline)
        self._telemetry.backlog.set(sum(ledger.backlog for ledger in ledgers))
        return snapshot_of(ledgers, self._names, deadline)


def snapshot_of(ledgers: list[Ledger], names: BenchmarkNames, deadline: float | None) -> Snapshot:
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
    names.resolve({key.benchmark_id for key in keys if key.benchmark_id is not None}, deadline)
    return build_snapshot(totals, running, names.names)
