"""The newest scores of an agent and model: bounded, independent of read order, and the alert's window."""

from __future__ import annotations

import random
import re

import pytest

from exporter.metrics.recent import (
    HISTORY,
    REGRESSION_MARGIN,
    REGRESSION_MIN_OUTCOMES,
    REGRESSION_WINDOW_S,
    RecentScores,
    Window,
)
from tests.support.deploy import RULES_FILE, load_yaml

DAY_MS = 86_400_000


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keeps_the_newest_in_any_order(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = [(rng.randrange(0, 30) * DAY_MS // 3, round(rng.random(), 3)) for _ in range(3 * HISTORY)]
    recent = RecentScores()
    for time_ms, score in rng.sample(outcomes, len(outcomes)):
        recent.add(time_ms, score)
    newest = sorted(outcomes)[-HISTORY:]  # by time, ties by score
    assert len(recent) == HISTORY
    assert list(zip(recent.times, recent.scores, strict=True)) == newest
    assert recent.last(5) == tuple(score for _, score in newest[-5:])


def test_the_window_is_the_mean_of_the_outcomes_created_in_it() -> None:
    recent = RecentScores()
    for day, score in [(1, 0.9), (5, 0.5), (8, 0.7), (9, 0.3), (10, 0.2)]:
        recent.add(day * DAY_MS, score)
    window = recent.window(4 * DAY_MS)
    assert (window.count, window.complete) == (4, True)
    assert window.mean == pytest.approx((0.5 + 0.7 + 0.3 + 0.2) / 4)
    assert recent.window(11 * DAY_MS) == Window(0, None)
    copy = recent.copy()
    copy.add(12 * DAY_MS, 1.0)
    assert len(recent) == 5, "a copy is independent"


def test_a_window_fuller_than_the_history_says_so() -> None:
    recent = RecentScores()
    for i in range(HISTORY + 10):
        recent.add(DAY_MS + i, 0.5)
    assert recent.window(0).complete is False
    assert recent.window(0).count == HISTORY
    assert recent.window(DAY_MS + 20).complete is True  # an outcome held is older than the window


def test_below_is_the_alerts_test() -> None:
    enough = Window(REGRESSION_MIN_OUTCOMES, 0.5)
    assert enough.below(0.39)
    assert not enough.below(0.4), "at 80% exactly it does not fire"
    assert not enough.below(None)
    assert not Window(REGRESSION_MIN_OUTCOMES - 1, 0.5).below(0.1), "too few outcomes"
    assert not Window(0, None).below(0.1)


def test_the_constants_are_those_of_the_alert() -> None:
    rules = [rule for group in load_yaml(RULES_FILE)["groups"] for rule in group["rules"]]
    (rule,) = [rule for rule in rules if rule.get("alert") == "RunloopAgentScoreRegression"]
    expr = rule["expr"]
    assert re.search(r"<\s*\n?\s*" + re.escape(f"{REGRESSION_MARGIN:g}") + r" \*", expr), expr
    # The window is read by the recording rules the alert reads (the 7-day baselines).
    records = [r["expr"] for r in rules if "record" in r and r["record"] in expr]
    assert records
    windows = set(re.findall(r"\[(\d+)d\]", " ".join([expr, *records])))
    assert windows == {str(REGRESSION_WINDOW_S // 86400)}
    assert re.search(r">= " + str(REGRESSION_MIN_OUTCOMES) + r"\b", expr)
