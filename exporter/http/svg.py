"""The status page's pictures: bars, histograms and sparklines as inline SVG or CSS, never a script.

Each picture is a few hundred bytes of markup with its figures in a `<title>` (a tooltip, and what a
screen reader or a test reads), so a page of a thousand of them stays small and needs nothing fetched.
Colours come from the page's stylesheet (classes), never from data.
"""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Sequence

HIST_STEP = 6  # pixels per bucket: a 5-pixel bar and a gap
HIST_HEIGHT = 18
SPARK_WIDTH = 90
SPARK_HEIGHT = 20


def _num(value: float) -> str:
    """A coordinate, short: one decimal at most."""
    return f"{value:.1f}".removesuffix(".0")


def share_bar(share: float, level: str) -> str:
    """A horizontal bar filled to `share` (0..1), coloured by `level` (good, warn, bad)."""
    width = min(max(share, 0.0), 1.0) * 100
    return f'<span class="bar" aria-hidden="true"><i class="{level}" style="width:{_num(width)}%"></i></span>'


def stacked_bar(parts: Sequence[tuple[str, int]]) -> str:
    """One bar split in proportion to each (class, count); empty when every count is 0."""
    total = sum(count for _, count in parts)
    if total <= 0:
        return ""
    fills = "".join(
        f'<i class="{level}" style="width:{_num(count / total * 100)}%"></i>'
        for level, count in parts
        if count
    )
    return f'<span class="bar stack" aria-hidden="true">{fills}</span>'


@functools.cache
def bucket_names(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The name of each bucket of a histogram over `bounds`, the last one past the last bound."""
    names = []
    low = "0"
    for bound in bounds:
        high = f"{bound:g}"
        names.append(f"{low}\u2013{high}")
        low = high
    names.append(f"over {low}")
    return tuple(names)


def histogram(bounds: tuple[float, ...], counts: Sequence[int], what: str = "scores") -> str:
    """A small bar chart of per-bucket counts (one more count than bounds: the last is past them).

    The bucket past the last bound is drawn only when it holds something (scores never pass 1); no
    count at all draws nothing.
    """
    shown = list(counts) if counts and counts[-1] else list(counts[:-1])
    if not any(shown):
        return ""
    names = bucket_names(bounds)
    title = f"{sum(shown)} {what}: " + ", ".join(f"{names[i]}: {n}" for i, n in enumerate(shown))
    peak = max(shown)
    width = HIST_STEP * len(shown)
    bars = "".join(
        f'<rect x="{i * HIST_STEP}" y="{HIST_HEIGHT - h}" width="{HIST_STEP - 1}" height="{h}"/>'
        for i, n in enumerate(shown)
        if n and (h := max(round(n / peak * HIST_HEIGHT), 1))
    )
    return (
        f'<svg class="hist" width="{width}" height="{HIST_HEIGHT}" viewBox="0 0 {width} {HIST_HEIGHT}" '
        f'role="img"><title>{html.escape(title)}</title>{bars}</svg>'
    )


def sparkline(values: Sequence[float], *, mean: float | None = None, floor: float | None = None) -> str:
    """Scores (0..1) oldest first as a line, its last point a dot; `mean` and `floor` (the alert's
    threshold) as faint lines across, so a drop below the threshold shows at a glance."""
    if not values:
        return ""

    def y(score: float) -> float:
        return (1 - min(max(score, 0.0), 1.0)) * (SPARK_HEIGHT - 4) + 2

    step = (SPARK_WIDTH - 4) / max(len(values) - 1, 1)
    points = [(2 + i * step, y(v)) for i, v in enumerate(values)]
    guides = "".join(
        f'<line class="{cls}" x1="0" y1="{_num(y(level))}" x2="{SPARK_WIDTH}" y2="{_num(y(level))}"/>'
        for cls, level in (("mean", mean), ("floor", floor))
        if level is not None and math.isfinite(level)
    )
    line = " ".join(f"{_num(x)},{_num(yy)}" for x, yy in points)
    last_x, last_y = points[-1]
    title = f"last {len(values)} scores, oldest first: " + " ".join(f"{v:.3f}" for v in values)
    return (
        f'<svg class="spark" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}" '
        f'viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" role="img"><title>{html.escape(title)}</title>{guides}'
        f'<polyline points="{line}"/><circle cx="{_num(last_x)}" cy="{_num(last_y)}" r="2"/></svg>'
    )
