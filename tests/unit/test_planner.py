"""The planner: lookups or a rescan, from measured costs."""

from __future__ import annotations

import pytest

from exporter.sync.planner import Costs, plan


def costs(small_s: float, page_s: float | None) -> Costs:
    measured = Costs()
    measured.small(small_s)
    if page_s is not None:
        measured.page(page_s, entries=1000, page_size=1000)
    return measured


def choose(pending: int, total: int | None = 100_000, scans: int = 1, **kw: float) -> str:
    measured = costs(kw.get("small_s", 0.1), kw.get("page_s", 0.3))
    return plan(
        pending=pending,
        total=total,
        page_size=1000,
        costs=measured,
        workers=int(kw.get("workers", 4)),
        max_per_second=kw.get("rate", 20.0),
        scan_requests=scans,
    ).choice


def test_few_pending_runs_are_looked_up() -> None:
    assert choose(10) == "lookups"


def test_more_lookups_than_pages_means_a_rescan() -> None:
    assert choose(99, scans=1) == "lookups"
    assert choose(100, scans=1) == "rescan"  # 100 + 1 scan > 100 pages


def test_lookups_slower_than_a_rescan_mean_a_rescan() -> None:
    # 50 lookups at 1 s each, one at a time, take 50 s; 100 pages at 0.1 s take 10 s.
    assert choose(50, small_s=1.0, page_s=0.1, workers=1) == "rescan"
    assert choose(50, small_s=1.0, page_s=0.1, workers=8) == "lookups"  # 7 rounds: 7 s


def test_the_rate_limit_counts_for_both() -> None:
    # 50 lookups at 2 a second take 25 s; 100 pages at 2 a second take 50 s.
    assert choose(50, small_s=0.01, page_s=0.01, rate=2.0) == "lookups"
    assert choose(50, total=20_000, small_s=0.01, page_s=0.01, rate=2.0) == "rescan"


def test_without_a_total_nothing_bounds_a_rescan() -> None:
    assert choose(5_000, total=None) == "lookups"


def test_only_full_pages_say_what_a_page_costs() -> None:
    measured = Costs()
    measured.page(0.01, entries=10, page_size=1000)
    assert measured.page_s is None
    measured.page(0.5, entries=1000, page_size=1000)
    measured.page(1.5, entries=1000, page_size=1000)
    assert measured.page_s == pytest.approx(0.5 + 0.3 * 1.0)
