"""A full read in a thread beside its loop, so that no read, however long, holds a publish back.

A part (runs, jobs) starts at most one read at a time, keeps publishing what it holds while it reads,
and takes the result (or the error) at a later cycle, when it brings it up to date and swaps it in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Finished(Generic[T]):
    """A read that ended: its result, or the error that stopped it."""

    reason: str
    result: T | None
    error: BaseException | None
    started: float  # by the owner's clock
    cycle: int  # the cycle of the loop that started it


class Background(Generic[T]):
    """At most one read at a time, in a daemon thread; `on_done` is called when one ends."""

    def __init__(
        self,
        name: str,
        on_done: Callable[[], None] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._clock = clock
        self._on_done = on_done or (lambda: None)
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._reason: str | None = None
        self._finished: Finished[T] | None = None
        self._waited = False  # a cycle waits for the read now: it takes it, no bell needed

    @property
    def reading(self) -> str | None:
        """The reason of the read in progress, or None."""
        return self._reason

    def start(self, reason: str, read: Callable[[], T], *, cycle: int) -> bool:
        """Start `read` unless a read is in progress or a finished one waits to be taken."""
        with self._lock:
            if self._reason is not None or self._finished is not None:
                return False
            self._reason = reason
            self._ended.clear()
        started = self._clock()

        def work() -> None:
            result: T | None = None
            error: BaseException | None = None
            try:
                result = read()
            except BaseException as exc:  # handed to the loop, which decides what it means
                error = exc
            with self._lock:
                self._finished = Finished(reason, result, error, started, cycle)
                self._reason = None
                self._ended.set()
                ring = not self._waited
            if ring:
                self._on_done()

        threading.Thread(target=work, name=f"{self._name}-{reason}", daemon=True).start()
        return True

    def wait(self, until: float | None) -> None:
        """Wait for the read in progress to end, until `until` (monotonic; None: until it ends)."""
        with self._lock:
            if self._reason is None:
                return
            self._waited = True
        try:
            self._ended.wait(None if until is None else max(until - time.monotonic(), 0.0))
        finally:
            with self._lock:
                self._waited = False

    def put_back(self, finished: Finished[T]) -> None:
        """Keep a read taken too early (its catch-up ran out of time) for the next cycle to take."""
        with self._lock:
            if self._finished is None:
                self._finished = finished

    def take(self) -> Finished[T] | None:
        """The read that ended since the last call, once."""
        with self._lock:
            finished, self._finished = self._finished, None
            return finished


PAGE_FLOOR_S = 10.0
"""The least time one page of a read beside the loop gets, however short the sync: a page of heavy jobs
over a slow link may take longer than a short interval, and a read whose pages always time out never
ends. A stalled API still stops a read within a page's time, not the full-read timeout."""


def page_time(deadline: float | None, floor_s: float = PAGE_FLOOR_S) -> float | None:
    """How long each page of a read started by a sync with this deadline may take (None: no limit)."""
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), floor_s)


def patience(deadline: float | None) -> float | None:
    """How long a cycle waits for a read it needs: half of what is left before its deadline, so that it
    still has time to catch the read up and publish (None: no deadline, wait until the read ends).
    A read that ends later rings its loop's bell, and the next cycle takes it at once."""
    if deadline is None:
        return None
    now = time.monotonic()
    return now + max(deadline - now, 0.0) / 2


class Bell:
    """Rung when a background read ends, so that its loop runs at once instead of at its next tick.

    Built before the loop that answers it (the syncs are built first), then `connect`ed to it.
    """

    def __init__(self) -> None:
        self._answer: Callable[[], None] = lambda: None

    def connect(self, answer: Callable[[], None]) -> None:
        """Call `answer` from now on when rung."""
        self._answer = answer

    def __call__(self) -> None:
        self._answer()
