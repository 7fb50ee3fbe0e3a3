"""Fixtures every test folder shares."""

from __future__ import annotations

import pytest

from tests.support.tools import require_tool


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (Debian's prometheus package)."""
    return require_tool("promtool")


_FOLDER_MARKS = {
    "unit": pytest.mark.unit,
    "integration": pytest.mark.integration,
    "deploy": pytest.mark.deploy,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder, so `./dev test -m unit` is the inner loop's fast path."""
    for item in items:
        folder = item.path.parent.name
        if folder in _FOLDER_MARKS:
            item.add_marker(_FOLDER_MARKS[folder])
