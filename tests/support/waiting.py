"""Polling: tests wait for what they need to see, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    check: Callable[[], bool],
    timeout: float = 20.0,
    what: str = "condition",
    *,
    interval: float = 0.05,
    on_timeout: Callable[[], str] | None = None,
) -> None:
    """Poll until `check()` holds. The timeout only bounds a broken run; it is no speed assertion.

    `on_timeout` adds context (logs, what is missing) to the failure message.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    extra = f". {on_timeout()}" if on_timeout is not None else ""
    raise AssertionError(f"timed out waiting for {what}{extra}")
