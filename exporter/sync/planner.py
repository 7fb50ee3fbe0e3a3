"""The cheapest way to learn how the runs that left their state ended: lookups or a rescan.

(Where new runs are listed first, the engine may read on below the head instead of the rescan: a
cheaper way that costs no more than the rescan it replaces.)

Costs are measured, not assumed: every request the sync makes feeds `Costs`, so the choice follows the
latency and page times of the API as this exporter sees it (50 to 150 ms across the internet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

_WEIGHT = 0.3  # of a new measurement in the moving average


class Costs:
    """Moving averages of how long a small request and a full page take."""

    def __init__(self) -> None:
        self.small_s: float | None = None  # one run, or a probe of a few entries
        self.page_s: float | None = None  # a page of `page_size` entries

    def small(self, seconds: float) -> None:
        """A request that carried little: a lookup, a probe."""
        self.small_s = _average(self.small_s, seconds)

    def page(self, seconds: float, entries: int, page_size: int) -> None:
        """A listing page; only full ones say what a page costs."""
        if entries >= page_size:
            self.page_s = _average(self.page_s, seconds)


def _average(old: float | None, new: float) -> float:
    return new if old is None else old + _WEIGHT * (new - old)


Choice = Literal["lookups", "rescan"]


@dataclass(frozen=True)
class Plan:
    """What a sync does about `pending` runs, with the estimates that decided it (for the log)."""

    choice: Choice
    pending: int
    lookup_s: float
    rescan_requests: int | None
    rescan_s: float | None


def plan(
    *,
    pending: int,
    total: int | None,
    page_size: int,
    costs: Costs,
    workers: int,
    max_per_second: float,
    scan_requests: int,
) -> Plan:
    """Lookups or a rescan, whichever costs fewer requests and less time.

    A rescan replaces the scans and the lookups of this sync, so lookups must beat it on both counts:
    at most as many requests as its pages (after the scans this sync still needs), and no longer than
    its pages take one after another. Without a total nothing bounds a rescan: lookups it is.
    """
    small_s = costs.small_s or 0.1
    rounds = math.ceil(pending / max(workers, 1))
    lookup_s = max(rounds * small_s, pending / max_per_second)
    if total is None:
        return Plan("lookups", pending, lookup_s, None, None)
    pages = max(1, math.ceil(total / page_size))
    page_s = costs.page_s if costs.page_s is not None else 2 * small_s
    rescan_s = pages * max(page_s, 1 / max_per_second)
    cheaper = pending + scan_requests <= pages and lookup_s <= rescan_s
    return Plan("lookups" if cheaper else "rescan", pending, lookup_s, pages, rescan_s)
