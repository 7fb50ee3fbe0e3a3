"""External tools the tests drive (promtool, prometheus, helm, chromium, uv, actionlint).

A missing tool skips the test on a laptop but fails it under CI=true, where everything must run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Where scripts/install-test-tools.sh caches tools (helm) and ./dev keeps uv and the venv's binaries.
_CACHES = (REPO / ".tools" / "bin", REPO / ".tools" / "uv" / "bin", REPO / ".venv" / "bin")


def find_tool(name: str) -> str | None:
    """The pinned copy ./dev or scripts/install-test-tools.sh keeps in the repository, else one on PATH."""
    for folder in _CACHES:
        cached = folder / name
        if os.access(cached, os.X_OK):
            return str(cached)
    return shutil.which(name)


def require_tool(name: str, how: str = "bash scripts/install-test-tools.sh installs it") -> str:
    """The tool's path; skip the test when it is missing, except under CI=true, where that is a failure."""
    path = find_tool(name)
    if path is None:
        reason = f"{name} is not installed ({how})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return path
