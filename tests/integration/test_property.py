"""Property: for any sequence of world changes interleaved with syncs, incremental figures equal a full read.

The one change no cheap probe can see (a finished run deleted while another appears somewhere in the
middle of a shuffled listing, between the same two syncs) is left to the scheduled reconcile, which
has its own test; in the shuffled case deletions are therefore followed by a sync here.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.simulator import Order, Simulator, World
from tests.support.syncing import assert_exact, backlog_ids, new_sync

T0 = 1_750_000_000_000
BENCHMARKS = ["bmd_a", "bmd_b", None]
TERMINAL = ["completed", "failed", "canceled"]

benchmark = st.sampled_from(BENCHMARKS)
score = st.one_of(st.none(), st.floats(0, 1))
duration = st.one_of(st.none(), st.integers(0, 10**8))
op = st.one_of(
    st.tuples(st.just("start"), benchmark, st.integers(0, 10**9)),
    st.tuples(
        st.just("finish"), st.integers(0, 10**6), st.sampled_from(TERMINAL), st.integers(0, 10**8), score
    ),
    st.tuples(st.just("appear_finished"), benchmark, st.sampled_from([*TERMINAL, "paused"]), duration, score),
    st.tuples(st.just("delete"), st.integers(0, 10**6)),
    st.tuples(st.just("requeue"), st.integers(0, 10**6), st.sampled_from(["queued", "running"])),
    st.tuples(
        st.just("sync"),
    ),
)


def apply(world: World, step: tuple[Any, ...]) -> None:
    kind = step[0]
    runs = world.runs()
    running = [r for r in runs if r["state"] not in TERMINAL]  # running, or a state new to us
    if kind == "start":
        world.add_run(benchmark_id=step[1], state="running", start_ms=T0 + step[2])
    elif kind == "finish" and running:
        target = running[step[1] % len(running)]
        world.finish_run(
            str(target["id"]), step[2], duration_ms=step[3], score=step[4] if step[2] == "completed" else None
        )
    elif kind == "appear_finished":
        world.add_run(
            benchmark_id=step[1],
            state=step[2],
            start_ms=T0,
            duration_ms=step[3],
            score=step[4] if step[2] == "completed" else None,
        )
    elif kind == "requeue" and running:  # a run moves between running and a state new to us
        world.update_run(str(running[step[1] % len(running)]["id"]), state=step[2])
    elif kind == "delete" and runs:
        world.delete_run(str(runs[step[1] % len(runs)]["id"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.sampled_from(["newest_first", "oldest_first", "shuffled"]),
    page_size=st.sampled_from([1, 2, 7]),
    initial=st.integers(0, 15),
    steps=st.lists(op, max_size=40),
)
def test_incremental_equals_full_read(
    order: Order, page_size: int, initial: int, steps: list[tuple[Any, ...]]
) -> None:
    world = World(order=order, seed=initial)
    world.add_benchmark("bmd_a", "A")
    world.add_benchmark("bmd_b", "B")
    world.add_many_finished(initial, ["bmd_a", "bmd_b"], start_ms=T0)
    with Simulator(world) as sim:
        sync, _ = new_sync(sim.url, page_size=page_size)
        sync.run()
        for step in [*steps, ("sync",)]:
            if step[0] == "delete" and order == "shuffled":
                snapshot = sync.run()
                assert_exact(snapshot, world, still_running=backlog_ids(sync, world))
            if step[0] == "sync" or (step[0] == "delete" and order == "shuffled"):
                apply(world, step)
                snapshot = sync.run()
                # Exact for every run it accounts for; runs still to be learned keep their last state.
                assert_exact(snapshot, world, still_running=backlog_ids(sync, world))
            else:
                apply(world, step)
        for _ in range(3):  # with nothing changing, what is left to learn is learned within a few syncs
            if not backlog_ids(sync, world):
                break
            sync.run()
        assert_exact(sync.run(), world)
