"""The status page's "Freshness" section: per part (runs, jobs), when it last published and how old that
is, how its last cycle went, and any full read in progress with a bar and the time left.

Plain HTML (a `<progress>` element, no script), every string escaped; rendered with the page after each
cycle of either part.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from exporter.sync.progress import ReadStatus

PART_TITLES = {"runs": "Benchmark runs", "jobs": "Benchmark jobs (agents and models)"}


@dataclass(frozen=True, slots=True)
class PartView:
    """What the page shows of one part."""

    name: str  # "runs" or "jobs"
    published_at: float | None  # wall clock of the last figures it published
    ok: bool | None  # how its last cycle went (None: no cycle has ended yet)
    error: str | None  # the last cycle's error, scrubbed
    reads: tuple[ReadStatus, ...]  # full reads in progress beside its loop


def render_parts(parts: Sequence[PartView], now: float) -> str:
    """The section, or nothing when there is no part to show."""
    if not parts:
        return ""
    items = "".join(_item(part, now) for part in parts)
    return f'<section class="parts"><h2>Freshness</h2><ul>{items}</ul></section>'


def _item(part: PartView, now: float) -> str:
    e = html.escape
    title = PART_TITLES.get(part.name, part.name)
    if part.published_at is None:
        published, age = "nothing yet", "&ndash;"
    else:
        published = datetime.fromtimestamp(part.published_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        age = f"{max(now - part.published_at, 0.0):.0f} s"
        published = f"at {published}"
    if part.ok is None:
        cycle = '<span class="muted">none yet</span>'
    elif part.ok:
        cycle = '<span class="pill good">ok</span>'
    else:
        cycle = '<span class="pill bad">failed</span>'
        if part.error:
            cycle += f' <span class="error">{e(part.error)}</span>'
    reads = "".join(_read(read) for read in part.reads) or '<span class="muted">none</span>'
    return (
        f'<li data-part="{e(part.name)}"><b>{e(title)}</b>: published {published}, '
        f'<span class="age">{age}</span> old; last cycle {cycle}; read in progress: {reads}</li>'
    )


def _read(read: ReadStatus) -> str:
    e = html.escape
    ratio = read.ratio
    bar = "" if ratio is None else f'<progress max="1" value="{ratio:.3f}">{ratio:.0%}</progress> '
    of = "" if read.total is None else f" of {read.total:,}"
    eta = read.eta_s
    left = "" if eta is None else f", about {eta:.0f} s left"
    return (
        f'<span class="read" data-reason="{e(read.reason)}">{bar}<b>{e(read.reason)}</b>: '
        f"{read.records:,}{of} read in {read.pages:,} pages, {read.rate:,.0f}/s{left}</span>"
    )
