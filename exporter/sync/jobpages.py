"""Where the jobs sync reads: what it holds between syncs, pages sized by bytes, and the walk down from
the top of the listing that says which entries are new and where the live jobs sit.

Job views are heavy (hundreds of kilobytes with their scenario outcomes), so a page's limit is chosen
from the bytes per job of the last one to stay near `TARGET_PAGE_BYTES`; `cut_depth` weighs reading
pages down to live jobs against looking each up by id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporter.metrics.agents import JobsTotals
from exporter.runloop.client import Page, record_id
from exporter.runloop.jobs import Job
from exporter.sync.recheck import Recheck

TARGET_PAGE_BYTES = 6 * 1024 * 1024
"""Bytes a page of jobs should weigh: 6 MB decode into a few MB of typed records, briefly (some 25 MB of
dicts with json.loads), and keep a backfill of heavy jobs near 73 MB peak RSS (`./dev bench jobs`)."""
FIRST_LIMIT = 10
"""Jobs asked in the first page of a read, before their weight is known."""


@dataclass
class JobsLedger:
    """Everything the jobs sync holds between syncs: totals of ended jobs, and the live jobs."""

    totals: JobsTotals
    live: dict[str, Job] = field(default_factory=dict)
    head: str | None = None
    tail: str | None = None
    listed: int = 0  # entries of the listing accounted for: valid, invalid and filtered out alike
    counted: bool = False  # whether total_count matched what the last full read found
    depth: dict[str, int] = field(default_factory=dict)  # live job -> where it was last listed (0: top)
    top_bytes: float = 0.0  # bytes per job at the top of the listing, as last read
    rechecks: dict[str, Recheck] = field(default_factory=dict)  # live job -> when it is read again


@dataclass(frozen=True)
class HeldJobs:
    """What a checkpoint keeps of the jobs sync: its ledger, when its full read was, and its clock now
    (live jobs' rechecks are due on that clock)."""

    ledger: JobsLedger
    since_full_s: float
    now: float


class PageSizer:
    """Chooses page limits from the bytes per job seen so far."""

    def __init__(self, max_limit: int) -> None:
        self.max_limit = max_limit
        self.limit = min(max_limit, FIRST_LIMIT)

    def seen(self, page: Page) -> None:
        if page.records and page.body_bytes:
            per_job = max(page.body_bytes // len(page.records), 1)
            self.limit = max(1, min(self.max_limit, TARGET_PAGE_BYTES // per_job))

    def halve(self) -> bool:
        if self.limit <= 1:
            return False
        self.limit = max(1, self.limit // 2)
        return True


class LiveWalk:
    """What one sync's reads from the top of the listing found: new jobs above the old head, live jobs
    seen (with their records), and where each entry was (its position from the top)."""

    def __init__(self, ledger: JobsLedger, *, room: int) -> None:
        self.ledger = ledger
        self.room = room  # new jobs the count allows
        self.seen: dict[str, Any] = {}  # id -> raw record of live (or new) jobs read in this sync
        self.new: list[Any] = []  # records of jobs not held before (above the head, then the tail)
        self.new_top: list[Any] = []  # those found above the old head
        self.positions: dict[str, int] = {}
        self.reached = 0  # entries read from the top
        self.above = ledger.head is not None  # still above the old head (until a page shows it)
        self._first = True

    def note(self, records: list[Any]) -> bool:
        """Note one page; False when more new jobs showed than the count allows."""
        ledger = self.ledger
        for record in records:
            rid = record_id(record)
            if self._first:
                self._first = False
                self.above = rid is not None and ledger.head is not None and rid != ledger.head
            index = self.reached
            self.reached += 1
            if rid is not None:
                self.positions[rid] = index
            if self.above and rid is not None and rid == ledger.head:
                self.above = False
            elif self.above and (rid is None or rid not in ledger.live):
                self.new.append(record)
                self.new_top.append(record)
                if len(self.new) > self.room:
                    return False
            if rid is not None and (rid in ledger.live or (self.above and rid not in self.seen)):
                self.seen[rid] = record
        return True


def cut_depth(depths: list[int], reached: int, per_page: int, *, first_page_free: bool = False) -> int:
    """How far down to read pages for live jobs at `depths` (sorted), `reached` entries being read
    already, so that pages plus lookups (one per live job deeper than the cut) are fewest; 0 to read
    no page. Ties go to reading less. `first_page_free`: the first page is the probe, sent anyway."""
    best, best_cost = 0, sum(d >= reached for d in depths)
    for i, depth in enumerate(depths):
        if depth < reached:
            continue
        pages = -(-(depth + 1 - reached) // per_page)
        cost = pages - (1 if first_page_free else 0) + (len(depths) - i - 1)
        if cost < best_cost:
            best, best_cost = depth + 1, cost
    return best


def last_id(records: list[Any]) -> str | None:
    ids = [rid for rid in map(record_id, records) if rid is not None]
    return ids[-1] if ids else None
