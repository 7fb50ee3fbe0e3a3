"""When a live job is read again: next sync after a change, doubling while quiet, within the cap,
spread on phases, and a budget a sync that covers every quiet job within the cap."""

from __future__ import annotations

import math

from exporter.sync.recheck import Recheck, Rechecks


def test_a_new_or_changed_job_is_read_at_the_next_sync() -> None:
    rechecks = Rechecks(5.0, 600.0)
    first = rechecks.first(100.0)
    assert first == Recheck(5.0, 100.0)
    assert rechecks.active(first)
    assert rechecks.active(None)
    changed = rechecks.after_read("bmj_1", Recheck(320.0, 50.0), changed=True, now=200.0)
    assert changed == Recheck(5.0, 200.0)


def test_a_quiet_job_doubles_its_period_up_to_the_cap_and_is_due_within_one_period() -> None:
    rechecks = Rechecks(5.0, 600.0)
    held: Recheck | None = rechecks.first(0.0)
    periods = []
    now = 0.0
    for _ in range(10):
        assert held is not None
        held = rechecks.after_read("bmj_7", held, changed=False, now=now)
        periods.append(held.period_s)
        assert now < held.due <= now + held.period_s
        assert not rechecks.active(held)
        now = held.due
    assert periods[:7] == [10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0]
    assert set(periods[6:]) == {600.0}


def test_quiet_jobs_are_spread_over_the_period_not_due_together() -> None:
    rechecks = Rechecks(3.0, 600.0)
    dues = [
        rechecks.after_read(f"bmj_{i}", Recheck(600.0, 0.0), changed=False, now=0.0).due for i in range(400)
    ]
    per_minute = [sum(1 for due in dues if m * 60 < due <= (m + 1) * 60) for m in range(10)]
    assert min(per_minute) >= 20  # about 40 a minute each minute, never all at once
    assert max(per_minute) <= 60


def test_the_budget_reads_every_quiet_job_once_within_the_cap() -> None:
    rechecks = Rechecks(3.0, 600.0)
    assert rechecks.budget(390) == math.ceil(390 * 3 / 600) == 2
    assert rechecks.budget(1) == 1
    assert rechecks.budget(0) == 1
    assert Rechecks(0.0, 600.0).budget(50) == 1
