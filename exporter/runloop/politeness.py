"""How hard the whole process may press Runloop's API: requests in flight, and requests per second.

One `RequestGate` is shared by every request the exporter sends (every listing, every concurrent
lookup), so the limits hold for the process, not per caller. Runloop publishes no rate limits: these
are ours, to stay polite by design.

The run sync asks through the gate itself and comes first. Reads beside it (the benchmark jobs, a
full read in the background) ask through a `Lane`: at most `max_concurrent` of the lane's requests in
flight (1 by default) and a share of the rate, and a lane request never takes a slot while a run
request waits for one. So a run request waits for at most one lane request to end.
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


class _Window:
    """A sliding window of request starts: at most `burst` in any `burst / per_second` seconds."""

    def __init__(self, per_second: float) -> None:
        self.burst = max(1, math.floor(per_second))
        self.span = self.burst / per_second
        self.starts: deque[float] = deque()

    def earliest(self, now: float) -> float:
        """The earliest start this window allows from `now`."""
        while self.starts and self.starts[0] <= now - self.span:
            self.starts.popleft()
        start = now if not self.starts else max(now, self.starts[-1])
        if len(self.starts) >= self.burst:
            start = max(start, self.starts[-self.burst] + self.span)
        return start


class RequestGate:
    """At most `max_concurrent` requests at once and at most `max_per_second` starts in any second.

    The rate is a sliding window: at most `burst` starts in any window of `burst / max_per_second`
    seconds, where `burst` is the rate rounded down (at least 1). For 20/s that is 20 in any second;
    for 0.5/s, one in any two seconds. A 429's Retry-After (`pause_until`) holds every caller.
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
        self.not_before = 0.0  # monotonic; set by a 429's Retry-After, honoured by every caller
        self._window = _Window(max_per_second)
        self._changed = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._first_waiting = 0  # requests of the run sync waiting for a slot: lanes yield to them
        self._stop = stop or threading.Event()
        self._clock = clock

    def pause_until(self, when: float) -> None:
        """Hold every request until `when` (monotonic): Runloop asked us to wait."""
        self.not_before = max(self.not_before, when)

    def lane(self, *, share: float = 1.0, max_concurrent: int = 1) -> Lane:
        """A lane of this gate for reads beside the run sync (see the module docstring)."""
        return Lane(self, share=share, max_concurrent=max_concurrent)

    @contextmanager
    def slot(self, deadline: float | None) -> Iterator[None]:
        """Hold one of the concurrent slots, started no sooner than the rate allows."""
        with self._taken(deadline, None):
            yield

    @contextmanager
    def _taken(self, deadline: float | None, lane: Lane | None) -> Iterator[None]:
        self._acquire(deadline, lane)
        try:
            self._pace(deadline, lane)
            yield
        finally:
            with self._changed:
                self._in_flight -= 1
                if lane is not None:
                    lane.in_flight -= 1
                self._changed.notify_all()

    def _acquire(self, deadline: float | None, lane: Lane | None) -> None:
        def free() -> bool:
            if self._in_flight >= self.max_concurrent:
                return False
            return lane is None or (self._first_waiting == 0 and lane.in_flight < lane.max_concurrent)

        with self._changed:
            if lane is None:
                self._first_waiting += 1
            try:
                if not self._changed.wait_for(free, timeout=self._until(deadline)):
                    raise GateTimeoutError("no request slot before the deadline")
            finally:
                if lane is None:
                    self._first_waiting -= 1
                    self._changed.notify_all()  # lanes waiting behind this request may go now
            self._in_flight += 1
            if lane is not None:
                lane.in_flight += 1

    def _until(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(deadline - self._clock(), 0.0)

    def _pace(self, deadline: float | None, lane: Lane | None) -> None:
        """Reserve the earliest start the windows allow, then wait for it.

        A lane first waits for its own window outside the lock, so that it never reserves a start far
        ahead in the shared window, where run requests would queue behind it.
        """
        while True:
            with self._changed:
                now = self._clock()
                own = now if lane is None else lane.window.earliest(now)
                if own <= now:
                    start = self._window.earliest(now)
                    if deadline is not None and start >= deadline:
                        raise GateTimeoutError("the request rate limit leaves no room before the deadline")
                    self._window.starts.append(start)
                    if lane is not None:
                        lane.window.starts.append(start)
                    break
            # The lane's share of the rate is spent: wait for it outside the lock, then try again.
            if deadline is not None and own >= deadline:
                raise GateTimeoutError(
                    "the lane's share of the request rate leaves no room before the deadline"
                )
            if self._stop.wait(own - now):
                raise GateTimeoutError("the exporter is shutting down")
        wait = start - self._clock()
        if wait > 0 and self._stop.wait(wait):
            raise GateTimeoutError("the exporter is shutting down")


class Lane:
    """Requests beside the run sync: few at once, a share of the rate, and only when no run request waits.

    It has the gate's interface (`slot`, `max_concurrent`, `max_per_second`, `pause_until`), so a client
    can be given a lane where it would be given the gate.
    """

    def __init__(self, gate: RequestGate, *, share: float, max_concurrent: int) -> None:
        if not 0 < share <= 1 or max_concurrent < 1:
            raise ValueError("share must be in (0, 1] and max_concurrent >= 1")
        self.gate = gate
        self.max_concurrent = min(max_concurrent, gate.max_concurrent)
        self.max_per_second = gate.max_per_second * share
        self.window = _Window(self.max_per_second)
        self.in_flight = 0  # guarded by the gate's lock

    @property
    def not_before(self) -> float:
        """The gate's pause: a 429 holds every lane too."""
        return self.gate.not_before

    def pause_until(self, when: float) -> None:
        """Hold every request of the gate until `when`."""
        self.gate.pause_until(when)

    @contextmanager
    def slot(self, deadline: float | None) -> Iterator[None]:
        """Hold one slot of the gate, taken only while no run request waits, within the lane's limits."""
        with self.gate._taken(deadline, self):
            yield

    def lane(self, *, share: float = 1.0, max_concurrent: int = 1) -> Lane:
        """A lane of the same gate."""
        return self.gate.lane(share=share, max_concurrent=max_concurrent)
