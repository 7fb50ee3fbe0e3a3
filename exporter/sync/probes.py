"""The cheap requests that tell an incremental sync what changed in the listing.

1. the runs listed as `running`, and likewise for each state new to us that some held run is in;
2. the first entry of the listing, with `total_count` (did anything change?);
3. when the first entry is not the one we saw first last time, the entries above the old one;
4. the entries after the last one we read.

Each probe uses the API's largest page (a listing of up to 5,000 running runs is one request), except
the head scan, which asks for about as many entries as are new: its page is read whole.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import structlog

from exporter.metrics.aggregate import GroupKey, RunningRun
from exporter.runloop.client import RunloopClient, record_id
from exporter.runloop.errors import ApiError, CancelledError, ShutdownError
from exporter.runloop.models import RUNNING, Invalid, Run, parse_run
from exporter.sync.config import MAX_LIMIT, Grouping
from exporter.sync.ledger import Delta, Ends, Ledger
from exporter.sync.planner import Costs
from exporter.sync.records import InvalidRecords

log = structlog.get_logger("exporter.sync")

Live = dict[str, tuple[Run, GroupKey | None]]


@dataclass(frozen=True)
class Top:
    """What the first probe saw: the first id of the listing and the count of every entry."""

    head: str | None
    total_count: int | None


class Probes:
    """The probes of one listing (all runs, or one benchmark's with the API's filter)."""

    def __init__(
        self,
        client: RunloopClient,
        grouping: Grouping,
        invalid: InvalidRecords,
        costs: Costs,
        benchmark_id: str | None,
    ) -> None:
        self._client = client
        self._grouping = grouping
        self._invalid = invalid
        self._costs = costs
        self._benchmark_id = benchmark_id
        self.requests = 0  # head and tail scan pages of the current sync, for the planner's bound
        self.last_read: str | None = None  # the last id the head scan read: where a deeper scan goes on

    def live(self, ledger: Ledger, deadline: float | None) -> Live:
        """The runs listed now in each state that can still change (running, and new states we hold)."""
        states = sorted({RUNNING} | {held.state for held in ledger.running.values()})
        live: Live = {}
        for state in states:
            pages = self._client.iter_runs_pages(
                page_size=MAX_LIMIT, state=state, benchmark_id=self._benchmark_id, deadline=deadline
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

    def top(self, ledger: Ledger, deadline: float | None) -> Top:
        """The first run of the listing (below any id-less entries we know of) and `total_count`."""
        asked = time.monotonic()
        page = self._client.list_runs(
            limit=min(ledger.head_extra + 1, MAX_LIMIT),
            include_total_count=True,
            benchmark_id=self._benchmark_id,
            deadline=deadline,
        )
        self._costs.small(time.monotonic() - asked)
        head = next((rid for rid in map(record_id, page.records) if rid is not None), None)
        return Top(head, page.total_count)

    def scan_head(
        self, ledger: Ledger, delta: Delta, seen: set[str], held: frozenset[str], deadline: float | None
    ) -> bool:
        """Read from the top of the listing down to the run that was first last time."""
        if ledger.head is None and ledger.listed:
            return False  # nothing to recognise the old top by
        total = delta.total_count
        new_at_most = None if total is None else max(total - ledger.listed, 0)
        expected = (new_at_most or 0) + ledger.head_extra + 1
        limit = min(MAX_LIMIT, expected + max(10, expected // 10))  # room for a few unseen deletions
        budget = None if new_at_most is None else expected // limit + 2
        ends = Ends()
        pages = self._client.iter_runs_pages(
            page_size=limit, benchmark_id=self._benchmark_id, include_total_count=True, deadline=deadline
        )
        for number, page in enumerate(pages, start=1):
            self.requests += 1
            if number == 1:
                delta.count(page.total_count)
            records = page.records
            self.last_read = next((rid for rid in map(record_id, reversed(records)) if rid), self.last_read)
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
                self._take_new(above[:new], ledger, delta, seen, held)
                self._settle_found(records[cut:], ledger, delta, seen)
                # With no new run above it, the old first run stays first, under every id-less entry.
                delta.head, delta.head_extra = ends.head or ledger.head, ends.head_extra
                return True
            self._take_new(above, ledger, delta, seen, held)
            if budget is not None and number >= budget:
                log.info("the first run we read was not found near the top of the listing", pages=number)
                return False
        if ledger.head is not None:
            return False  # the listing ended without it: the old first run is gone
        # The listing was empty at the last read: all of it is new, and it has a new tail too.
        delta.head, delta.head_extra = ends.head, ends.head_extra
        delta.tail, delta.tail_extra = ends.tail, ends.tail_extra
        return True

    def scan_tail(
        self, ledger: Ledger, delta: Delta, seen: set[str], held: frozenset[str], deadline: float | None
    ) -> bool:
        """Read the entries after the last run we read; the id-less ones right after it were counted."""
        skip = ledger.tail_extra
        try:
            pages = self._client.iter_runs_pages(
                page_size=MAX_LIMIT,
                starting_after=ledger.tail,
                benchmark_id=self._benchmark_id,
                include_total_count=True,
                deadline=deadline,
            )
            for number, page in enumerate(pages):
                self.requests += 1
                if number == 0:
                    delta.count(page.total_count)
                records = page.records[skip:]
                skip = max(skip - len(page.records), 0)
                for record in records:
                    rid = record_id(record)
                    if rid is None:
                        delta.tail_extra += 1
                    else:
                        delta.tail, delta.tail_extra = rid, 0
                self._take_new(records, ledger, delta, seen, held)
        except ApiError as exc:  # the cursor run is gone: only a full read can tell what changed
            log.info("the last run we read is gone from the listing", error=str(exc))
            return False
        return skip == 0

    def scan_deeper(
        self,
        ledger: Ledger,
        delta: Delta,
        seen: set[str],
        *,
        after: str | None,
        running: int,
        max_pages: int,
        deadline: float | None,
    ) -> int:
        """Read on below the head (from the top, or after `after`) to find runs that ended; returns how
        many it found.

        Where new runs are listed first, runs that ended lately started lately too: they are near the
        top, under the `running` runs that started after them, and one page of 5,000 entries finds many
        of them for the price of one lookup. Stops when none is left to find, after two pages that found
        none once past as many pages as the running runs fill, at `max_pages`, or at the deadline (what
        was found stays settled).
        """
        grace = math.ceil(running / MAX_LIMIT)
        found = empty = pages_read = 0
        pages = self._client.iter_runs_pages(
            page_size=MAX_LIMIT, starting_after=after, benchmark_id=self._benchmark_id, deadline=deadline
        )
        try:
            for page in pages:
                self.requests += 1
                pages_read += 1
                here = self._settle_found(page.records, ledger, delta, seen)
                found += here
                empty = 0 if here else empty + 1
                pending = any(rid in ledger.running and rid not in seen for rid in delta.pending)
                if not pending or (empty >= 2 and pages_read > grace) or pages_read >= max_pages:
                    break
        except (ApiError, CancelledError) as exc:  # the cursor run is gone, or time is up: keep what we found
            if isinstance(exc, ShutdownError):
                raise
            log.info("a deeper scan stopped early", error=str(exc), found=found)
        return found

    def _settle_found(self, records: list[Any], ledger: Ledger, delta: Delta, seen: set[str]) -> int:
        """Settle the runs waiting to be learned that these entries show; returns how many."""
        found = 0
        for record in records:
            rid = record_id(record)
            if rid is None or rid not in delta.pending or rid in seen or rid not in ledger.running:
                continue
            run = parse_run(record)
            if isinstance(run, Invalid):
                continue  # a lookup will report it
            seen.add(rid)
            delta.settle(ledger, rid, run)
            found += 1
        return found

    def _take_new(
        self, records: list[Any], ledger: Ledger, delta: Delta, seen: set[str], held: frozenset[str]
    ) -> None:
        """Account for entries that were not in the listing at the last read (or moved in it)."""
        for record in records:
            run = parse_run(record)
            if not (isinstance(run, Run) and run.id in held):
                delta.listed += 1  # a held run was accounted for already; it only moved
            if isinstance(run, Invalid):
                self._invalid.report(run)
                continue
            if run.id in seen:
                self._invalid.duplicate(run.id)
                continue
            seen.add(run.id)
            if run.id in ledger.running:  # a held run, and now we know its state: a fact to keep
                delta.settle(ledger, run.id, run)
                continue
            key = self._grouping(run)
            if key is None:
                delta.running.pop(run.id, None)
            elif run.is_terminal:
                delta.running.pop(run.id, None)
                delta.finished.append((run, key))
            else:
                delta.running[run.id] = RunningRun(run.id, key, run.start_ms, run.state)
