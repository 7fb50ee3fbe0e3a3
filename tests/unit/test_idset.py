"""IdSet: a compact set used to spot duplicate run ids in large listings."""

from __future__ import annotations

from exporter.sync.idset import IdSet


def test_add_reports_duplicates_across_growth() -> None:
    ids = IdSet(capacity_bits=2)
    keys = [f"bmr_{i}" for i in range(5000)]
    assert all(ids.add(key) for key in keys)
    assert len(ids) == 5000
    assert not any(ids.add(key) for key in keys[::7])
    assert len(ids) == 5000
    assert ids.add("bmr_new")


def test_empty_string_and_unicode() -> None:
    ids = IdSet()
    assert ids.add("")
    assert not ids.add("")
    assert ids.add("bmr_ünïcode")
    assert not ids.add("bmr_ünïcode")
