"""When to read a live benchmark job again: at the next sync after it changed, less and less often while
it does not (doubling up to a cap), so that jobs left live for weeks cost almost nothing.

Each job's reads are set on its own phase within the period (from a hash of its id), so that many jobs
that went quiet together are not all due in the same sync, and a sync reads at most `budget` of the
quiet jobs that are due (the most overdue first): N quiet jobs cost about N x interval / cap reads a
sync, never a burst, and a quiet job that finally ends is counted within about the cap.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Recheck:
    """When a live job is read again, and the period that got it there."""

    period_s: float
    due: float  # on the jobs sync's clock


class Rechecks:
    """Chooses each live job's next read from whether it changed at its last one."""

    def __init__(self, min_s: float, max_s: float) -> None:
        self.min_s = min_s
        self.max_s = max(max_s, min_s)

    def active(self, recheck: Recheck | None) -> bool:
        """Whether a job is read at every sync: new to us, or seen changing at its last read."""
        return recheck is None or recheck.period_s <= self.min_s

    def budget(self, quiet: int) -> int:
        """How many of `quiet` due jobs one sync reads: enough to read each once within the cap."""
        if self.max_s <= 0:
            return quiet
        return max(1, math.ceil(quiet * self.min_s / self.max_s))

    def first(self, now: float) -> Recheck:
        """A job new to us, or seen changing: read it at the next sync."""
        return Recheck(self.min_s, now)

    def after_read(self, job_id: str, held: Recheck | None, *, changed: bool, now: float) -> Recheck:
        """The next read of a job just read: the next sync when it changed, else twice the period."""
        if changed or held is None:
            return self.first(now)
        period = min(held.period_s * 2, self.max_s)
        return Recheck(period, _next(now, period, _phase(job_id)))


def _phase(job_id: str) -> float:
    """A stable fraction in [0, 1) for this id."""
    digest = hashlib.blake2b(job_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _next(now: float, period: float, phase: float) -> float:
    """The first time after `now` that falls on this phase of the period: within one period."""
    if period <= 0:
        return now
    offset = phase * period
    return (math.floor((now - offset) / period) + 1) * period + offset
