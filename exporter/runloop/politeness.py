"""How hard the whole process may press Runloop's API: requests in flight, and requests per second.

One `RequestGate` is shared by every request the exporter sends (every listing, every concurrent
lookup), so the limits hold for the process, not per caller. Runloop publishes no rate limits: these
are ours, to stay polite by design.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class GateTimeoutError(Exception):
    """No slot could be had before the deadline (or the exporter is stopping)."""


class RequestGate:
    """At most `max_concurrent` requests at once and at most `max_per_second` starts in any second.

    The rate is a sliding window: at most `burst` starts in any window of `burst / max_per_second`
    seconds, where `burst` is the rate rounded down (at least 1). For 20/s that is 20 in any second;
    for 0.5/s, one in any two seconds.
    """

    def __init__(
        self,
        max_concurrent: int,
        max_per_second: float,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_concurrent < 1 or not max_per_second > 0:
            raise ValueError("max_concurrent must be >= 1 and max_per_second > 0")
        self.max_concurrent = max_concurrent
        self.max_per_second = max_per_second
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._burst = max(1, math.floor(max_per_second))
        self._window = self._burst / max_per_second
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()
        self._stop = stop or threading.Event()
        self._clock = clock

    @contextmanager
    def slot(self, deadline: float | None) -> Iterator[None]:
        """Hold one of the concurrent slots, started no sooner than the rate allows."""
        if not self._slots.acquire(timeout=self._until(deadline)):
            raise GateTimeoutError("no request slot before the deadline")
        try:
            self._pace(deadline)
            yield
        finally:
            self._slots.release()

    def _until(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(deadline - self._clock(), 0.0)

    def _pace(self, deadline: float | None) -> None:
        """Reserve the earliest start the window allows, then wait for it."""
        with self._lock:
            now = self._clock()
            while self._starts and self._starts[0] <= now - self._window:
                self._starts.popleft()
            start = now if not self._starts else max(now, self._starts[-1])
            if len(self._starts) >= self._burst:
                start = max(start, self._starts[-self._burst] + self._window)
            if deadline is not None and start >= deadline:
                raise GateTimeoutError("the request rate limit leaves no room before the deadline")
            self._starts.append(start)
        wait = start - self._clock()
        if wait > 0 and self._stop.wait(wait):
            raise GateTimeoutError("the exporter is shutting down")
