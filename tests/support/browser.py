"""Debian's Chromium, headless, as the status page's tests drive it: dump the DOM, take a screenshot."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.tools import require_tool


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a profile of its own (root in a container needs no sandbox)."""
    binary = require_tool("chromium")
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def dump_dom(url: str, tmp: Path) -> str:
    """The DOM after the page loaded (and after any script would have run), serialized."""
    result = chromium("--dump-dom", url, tmp=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
