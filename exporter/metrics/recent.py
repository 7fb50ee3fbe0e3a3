"""The last scores of one agent and model, bounded: the status page's sparkline and its 7-day mean.

`RunloopAgentScoreRegression` compares an agent and model's latest score with the mean of its outcomes
scored in the last 7 days, which Prometheus computes from the series' history. The exporter keeps no
history of series, so it holds the newest HISTORY scored outcomes of each agent and model (by their job's
creation time) and computes the same window from them; more outcomes than that in 7 days make the mean
one of the last HISTORY, and the window says so.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

HISTORY = 100
"""Scored outcomes kept per agent and model: some 1.8 kB at most (two arrays of 8-byte numbers)."""
SPARK_POINTS = 20
"""Scores the sparkline draws, newest last."""
REGRESSION_WINDOW_S = 7 * 86400
REGRESSION_MARGIN = 0.8
REGRESSION_MIN_OUTCOMES = 3
"""The window, margin and minimum count of RunloopAgentScoreRegression (tests hold them to alerts.yaml)."""


@dataclass(frozen=True, slots=True)
class Window:
    """The scored outcomes of a time window: how many, their mean, and whether all of them were held."""

    count: int
    mean: float | None
    complete: bool = True  # False: the window holds more than HISTORY outcomes; the mean is of the newest

    def below(self, score: float | None) -> bool:
        """Whether `score` is below the mean by the alert's margin, with enough outcomes, as the alert says."""
        return (
            score is not None
            and self.mean is not None
            and self.count >= REGRESSION_MIN_OUTCOMES
            and score < REGRESSION_MARGIN * self.mean
        )


EMPTY = Window(0, None)


class RecentScores:
    """The newest HISTORY scores of one agent and model, oldest first, by their job's creation time.

    Ties on the time are ordered by score, so what is kept does not depend on the order jobs are read in.
    """

    __slots__ = ("scores", "times")

    def __init__(self, times: array[int] | None = None, scores: array[float] | None = None) -> None:
        self.times: array[int] = array("q") if times is None else times
        self.scores: array[float] = array("d") if scores is None else scores

    def add(self, time_ms: int, score: float) -> None:
        """Keep one scored outcome, dropping the oldest beyond HISTORY."""
        times, scores = self.times, self.scores
        lo = bisect_left(times, time_ms)
        at = bisect_right(times, time_ms)
        while at > lo and scores[at - 1] > score:  # among equal times, by score
            at -= 1
        if len(times) >= HISTORY:
            if at == 0:
                return  # older than all we keep: it would be dropped at once
            del times[0], scores[0]
            at -= 1
        times.insert(at, time_ms)
        scores.insert(at, score)

    def copy(self) -> RecentScores:
        """An independent copy (snapshots add live jobs to copies)."""
        return RecentScores(array("q", self.times), array("d", self.scores))

    def last(self, n: int = SPARK_POINTS) -> tuple[float, ...]:
        """The newest `n` scores, oldest first."""
        return tuple(self.scores[-n:]) if n > 0 else ()

    def window(self, since_ms: int) -> Window:
        """The outcomes whose job was created at or after `since_ms`."""
        start = bisect_left(self.times, since_ms)
        inside = self.scores[start:]
        if not inside:
            return EMPTY
        return Window(
            len(inside), math.fsum(inside) / len(inside), complete=start > 0 or len(self.times) < HISTORY
        )

    def __len__(self) -> int:
        return len(self.times)
