"""Fixtures every test folder shares."""

from __future__ import annotations

import pytest

from tests.support.tools import require_tool


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (Debian's prometheus package)."""
    return require_tool("promtool")
