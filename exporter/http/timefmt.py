"""How the status page writes points in time and ages: shared by its sections."""

from __future__ import annotations

from datetime import UTC, datetime

NONE = "&ndash;"  # an empty cell


def age(seconds: float) -> str:
    """A duration in words, coarse: minutes, then hours, then days."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return "under 1 min"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
    return f"{seconds // 86400:.0f} d {seconds % 86400 // 3600:.0f} h"


def when(at: float | None, now: float) -> str:
    """How long before `now` a point in time was, with the time itself as a tooltip."""
    if at is None:
        return NONE
    return f'<span title="{utc(at)}">{age(now - at)} ago</span>'


def utc(at: float) -> str:
    """A point in time (seconds since the epoch) in UTC, to the second."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """How long something took: seconds under a minute, else as `age` writes it."""
    return f"{max(seconds, 0.0):.0f} s" if seconds < 60 else age(seconds)
