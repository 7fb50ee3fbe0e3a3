"""What an incremental sync holds between syncs, and what one sync learns before it is applied.

Memory grows with live runs only: finished runs are folded into add-only totals and forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporter.metrics.aggregate import GroupKey, RunningRun, Totals
from exporter.runloop.client import record_id
from exporter.runloop.models import Run


@dataclass
class Ledger:
    """Everything an incremental sync holds between syncs."""

    totals: Totals
    running: dict[str, RunningRun] = field(default_factory=dict)  # runs that can still change
    head: str | None = None  # id of the first run of the listing (with an id) at the last read
    head_extra: int = 0  # entries without an id above it
    tail: str | None = None  # id of the last run of the listing (with an id) at the last read
    tail_extra: int = 0  # entries without an id below it
    listed: int = 0  # entries of the listing accounted for: valid, invalid and filtered out alike
    counted: bool = False  # whether total_count matched what the last full read found
    backlog: int = 0  # held runs known to have left their state whose outcome is not learned yet

    def settle(self, run_id: str, run: Run | None) -> None:
        """Record, at once and for good, what became of a held run: a fact no later failure undoes.

        None means the run is gone from Runloop. A run in a state that can still change stays held.
        """
        held = self.running.pop(run_id)
        if run is None:
            self.listed -= 1
        elif run.is_terminal:
            self.totals.add(run, held.key)
        else:
            self.running[run_id] = RunningRun(run_id, held.key, held.start_ms, run.state)


@dataclass(frozen=True)
class HeldListing:
    """What a checkpoint keeps of one listing's sync: its ledger and what it learned of the listing."""

    ledger: Ledger
    since_full_s: float  # since the full read this ledger descends from started (for the reconcile)
    new_at_ends: bool | None  # learned: do new runs appear at either end of the listing?
    new_at_head: bool | None  # learned: do they appear at the top (newest first)?


@dataclass
class Delta:
    """What one incremental sync learned of the listing, applied only when its counts add up."""

    finished: list[tuple[Run, GroupKey]] = field(default_factory=list)  # runs new to the ledger
    running: dict[str, RunningRun] = field(default_factory=dict)
    head: str | None = None
    head_extra: int = 0
    tail: str | None = None
    tail_extra: int = 0
    listed: int = 0
    totals: list[int] = field(default_factory=list)  # total_count as each probe and scan saw it
    backlog: int = 0
    pending: frozenset[str] = frozenset()  # held runs no longer listed in their state

    @classmethod
    def of(cls, ledger: Ledger) -> Delta:
        """A delta that changes nothing yet."""
        return cls(
            running=dict(ledger.running),
            head=ledger.head,
            head_extra=ledger.head_extra,
            tail=ledger.tail,
            tail_extra=ledger.tail_extra,
            listed=ledger.listed,
        )

    def settle(self, ledger: Ledger, run_id: str, run: Run | None) -> None:
        """Settle a held run in the ledger now, and keep this delta in step with it."""
        ledger.settle(run_id, run)
        self.running.pop(run_id, None)
        if run_id in ledger.running:
            self.running[run_id] = ledger.running[run_id]
        if run is None:
            self.listed -= 1

    def count(self, total: int | None) -> None:
        """Note a `total_count` the API gave during this sync."""
        if total is not None:
            self.totals.append(total)

    @property
    def total_count(self) -> int | None:
        """The first total of this sync (None when the API gave none)."""
        return self.totals[0] if self.totals else None

    def adds_up(self) -> bool:
        """Whether the entries accounted for match `total_count` as one of the requests saw it.

        Runs start while a sync reads: the probe may count a run that a later scan then reads, so the
        count of each scan's own first page is as good a witness as the probe's. Runs in the backlog
        may have been deleted without our knowing yet, so the count may fall short of what we hold by
        at most the backlog's size.
        """
        return any(self.listed - self.backlog <= total <= self.listed for total in self.totals)

    def apply(self, ledger: Ledger) -> None:
        """Make what this sync learned part of the ledger."""
        for run, key in self.finished:
            ledger.totals.add(run, key)
        ledger.running = self.running
        ledger.head, ledger.head_extra = self.head, self.head_extra
        ledger.tail, ledger.tail_extra = self.tail, self.tail_extra
        ledger.listed = self.listed
        ledger.backlog = self.backlog


class Ends:
    """Tracks the first and last entries with an id, and the id-less entries around them."""

    def __init__(self) -> None:
        self.head: str | None = None
        self.head_extra = 0
        self.tail: str | None = None
        self.tail_extra = 0

    def see(self, record: Any) -> None:
        """Note the next entry of the listing."""
        rid = record_id(record)
        if rid is None:
            self.tail_extra += 1
            if self.head is None:
                self.head_extra += 1
        else:
            self.tail, self.tail_extra = rid, 0
            if self.head is None:
                self.head = rid
