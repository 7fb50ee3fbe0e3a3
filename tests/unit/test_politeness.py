"""RequestGate: requests in flight and per second, for the whole process."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import cast

import pytest

from exporter.runloop.politeness import GateTimeoutError, RequestGate


def hammer(gate: RequestGate, threads: int, each: int, hold_s: float = 0.0) -> tuple[list[float], int]:
    """Start times of every slot taken, and the most slots held at once."""
    starts: list[float] = []
    lock = threading.Lock()
    held = [0, 0]

    def work() -> None:
        for _ in range(each):
            with gate.slot(None):
                with lock:
                    starts.append(time.monotonic())
                    held[0] += 1
                    held[1] = max(held[1], held[0])
                time.sleep(hold_s)
                with lock:
                    held[0] -= 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(starts), held[1]


class FakeTime:
    """A clock that moves only when the gate waits: the schedule is checked exactly, whatever the load."""

    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        return False  # not stopped


def starts_of(rate: float, count: int) -> list[float]:
    fake = FakeTime()
    gate = RequestGate(8, rate, stop=cast(threading.Event, fake), clock=fake.clock)
    starts = []
    for _ in range(count):
        with gate.slot(None):
            starts.append(fake.now)
    return starts


def test_no_more_than_the_rate_in_any_second() -> None:
    starts = starts_of(10.0, 35)
    assert all(b - a >= 1.0 for a, b in zip(starts, starts[10:], strict=False))
    assert starts[9] - starts[0] < 1.0  # a burst of ten is allowed at once, then one per window


def test_a_rate_below_one_spaces_single_requests() -> None:
    starts = starts_of(4.0 / 3, 5)  # burst 1, one per 0.75 s
    assert all(b - a == pytest.approx(0.75) for a, b in itertools.pairwise(starts))


def test_threads_share_the_rate() -> None:
    starts, _ = hammer(RequestGate(8, 10.0), threads=6, each=3)
    assert len(starts) == 18
    assert starts[-1] - starts[0] >= 0.9  # 18 starts at 10 a second cannot all fit in one second


def test_no_more_than_max_concurrent_in_flight() -> None:
    _, most = hammer(RequestGate(3, 1000.0), threads=8, each=4, hold_s=0.02)
    assert most == 3


def test_no_room_before_the_deadline_raises() -> None:
    gate = RequestGate(1, 1.0)
    with gate.slot(None):
        pass
    with pytest.raises(GateTimeoutError, match="rate"), gate.slot(time.monotonic() + 0.3):
        pass
    with gate.slot(None), pytest.raises(GateTimeoutError, match="slot"), gate.slot(time.monotonic() + 0.05):
        pass


def test_stop_wakes_a_waiting_request() -> None:
    stop = threading.Event()
    gate = RequestGate(1, 0.1, stop=stop)  # one request per 10 s
    with gate.slot(None):
        pass
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    with pytest.raises(GateTimeoutError, match="shutting down"), gate.slot(None):
        pass
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("concurrent", "rate"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_limits_must_be_positive(concurrent: int, rate: float) -> None:
    with pytest.raises(ValueError, match="max_"):
        RequestGate(concurrent, rate)


# --- lanes: the reads beside the run sync -----------------------------------------------------------


def test_a_lane_holds_at_most_its_own_slots() -> None:
    gate = RequestGate(4, 1000.0)
    _, most = hammer(gate.lane(), threads=6, each=3, hold_s=0.02)  # type: ignore[arg-type]
    assert most == 1


def test_a_lane_never_takes_a_slot_while_a_run_request_waits() -> None:
    """Two slots, both held by run requests, a run request and a lane request waiting: the freed slot
    goes to the run request, whichever came first."""
    gate = RequestGate(2, 1000.0)
    lane = gate.lane(max_concurrent=2)
    order: list[str] = []
    release = threading.Event()
    holding = threading.Barrier(3)

    def hold() -> None:
        with gate.slot(None):
            holding.wait()
            release.wait(5)

    def ask(name: str, slot: object) -> None:
        with slot:  # type: ignore[attr-defined]
            order.append(name)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for thread in holders:
        thread.start()
    holding.wait()
    lane_request = threading.Thread(target=ask, args=("lane", lane.slot(None)))
    lane_request.start()
    time.sleep(0.05)  # the lane request waits first
    run_request = threading.Thread(target=ask, args=("run", gate.slot(None)))
    run_request.start()
    wait_for(lambda: gate._first_waiting == 1)
    release.set()
    for thread in (*holders, lane_request, run_request):
        thread.join(5)
    assert order == ["run", "lane"]


def test_a_lane_takes_its_share_of_the_rate_and_the_run_sync_the_rest() -> None:
    fake = FakeTime()
    gate = RequestGate(8, 10.0, stop=cast(threading.Event, fake), clock=fake.clock)
    lane = gate.lane(share=0.5)
    starts = []
    for _ in range(10):
        with lane.slot(None):
            starts.append(fake.now)
    # 5 a second for the lane: its tenth start is a second after its fifth.
    assert starts[9] - starts[0] >= 1.0
    assert lane.max_per_second == 5.0
    # The run sync is not held back by the lane's reservations: its request starts at once.
    before = fake.now
    with gate.slot(None):
        assert fake.now - before <= 0.1


def test_a_429_pause_holds_every_lane() -> None:
    gate = RequestGate(4, 1000.0)
    lane = gate.lane()
    lane.pause_until(time.monotonic() + 30)
    assert gate.not_before == lane.not_before > time.monotonic()


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)
