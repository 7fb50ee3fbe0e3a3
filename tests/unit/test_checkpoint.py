"""The checkpoint in process: a part saved and restored resumes exactly where it was, with the usual probes;
nothing is published before a sync confirmed it; files are written whole, checked whole, and refused with
the reason; one writer at a time.

Syncs against the simulator on 127.0.0.1 (as in tests/integration), files under tmp_path.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest

from exporter.checkpoint import Identity, JobsCheckpoint, RunsCheckpoint, Store
from exporter.checkpoint.header import CORRUPT, MISSING, REJECTED, UnusableError, envelope, open_envelope
from exporter.checkpoint.shape import CorruptError
from exporter.metrics.agents import AgentCaps
from exporter.metrics.aggregate import DEFAULT_DURATION_BUCKETS, DEFAULT_SCORE_BUCKETS
from exporter.metrics.labels import RunLabels
from exporter.resume import fingerprints
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.politeness import RequestGate
from exporter.settings import Settings
from exporter.simulator import DEFAULT_API_KEY, Latency, Simulator, World
from exporter.sync import IncrementalSync
from exporter.sync.jobs import JobsSync
from exporter.sync.records import InvalidRecords
from tests.integration.test_incremental import big_world
from tests.integration.test_jobs import AGENTS, T0, Clock
from tests.integration.test_loops import jobs_sync as stuck_jobs_sync
from tests.integration.test_loops import stuck_world
from tests.support.syncing import assert_exact, new_sync

SETTINGS = {"runs": {"RUNLOOP_EXPORTER_SCORE_BUCKETS": "a"}, "jobs": {"RUNLOOP_EXPORTER_SCORE_BUCKETS": "a"}}


def runs_part(sync: IncrementalSync) -> RunsCheckpoint:
    kept = RunsCheckpoint(
        sync._names,
        RunLabels((), purpose=False, max_values=20),
        DEFAULT_SCORE_BUCKETS,
        DEFAULT_DURATION_BUCKETS,
    )
    kept.listings[None] = sync
    return kept


def jobs_sync(url: str) -> JobsSync:
    client = RunloopClient(
        url, lambda: DEFAULT_API_KEY, retry=RetryPolicy(max_retries=0), gate=RequestGate(4, 1000.0)
    )
    return JobsSync(
        client,
        score_buckets=DEFAULT_SCORE_BUCKETS,
        caps=AgentCaps(max_pairs=2, max_types=3),
        admits=lambda bid: True,
        invalid=InvalidRecords(lambda reason: None, kind="benchmark job"),
        page_size=5,
    )


def through_json(body: Any) -> Any:
    """What a file gives back: JSON values only."""
    return json.loads(json.dumps(body, allow_nan=False))


def test_a_restored_run_ledger_resumes_with_the_probes_and_exact_figures() -> None:
    world, running = big_world("newest_first", 20_000, running=30)
    with Simulator(world) as sim:
        before, _ = new_sync(sim.url, page_size=1000)
        assert_exact(before.run(), world)
        body = through_json(runs_part(before).save())
        for rid in running[:5]:
            world.finish_run(rid, "completed", 60_000, 0.75)
        world.add_run(benchmark_id="bmd_1", state="running", start_ms=T0 + 10**9)
        after, telemetry = new_sync(sim.url, page_size=1000)
        runs_part(after).restore(body, 30.0)
        sim.reset_requests()
        assert_exact(after.run(), world)
        paths = [r.path for r in sim.requests]
        assert len(paths) <= 12, paths  # the probes and a few lookups: never the 20 pages of a full read
        assert (
            telemetry.registry.get_sample_value("runloop_exporter_full_reads_total", {"reason": "backfill"})
            == 0
        )


def test_a_restored_ledger_is_not_published_before_a_sync_confirmed_it() -> None:
    """The probes disagree with the checkpoint (a finished run deleted): the sync reads in full, and until
    that read is in, it publishes nothing rather than the checkpoint's figures."""
    world, _ = big_world("newest_first", 6_000, running=5)
    with Simulator(world, latency=Latency(base_s=0.05)) as sim:
        before, _ = new_sync(sim.url, page_size=500)
        before.run()
        body = through_json(runs_part(before).save())
        world.delete_run(str(world.runs()[3000]["id"]))  # no probe can tell which
        after, _ = new_sync(sim.url, page_size=500)
        runs_part(after).restore(body, 1.0)
        # The probes take some 0.2 s; the full read of 12 pages at 50 ms does not fit half of what is left.
        assert after.run(time.monotonic() + 0.6) is None
        snapshot = None
        for _ in range(100):
            snapshot = after.run(time.monotonic() + 2.0)
            if snapshot is not None:
                break
        assert_exact(snapshot, world)


def test_only_a_sync_that_found_its_ledger_up_to_date_is_saved() -> None:
    world, _ = big_world("newest_first", 2_000, running=3)
    with Simulator(world) as sim:
        sync, _ = new_sync(sim.url, page_size=1000)
        assert runs_part(sync).save() is None  # nothing read yet
        sync.run()
        assert runs_part(sync).save() is not None
        sim.faults.fail_next(5, 500, path_prefix="/v1/benchmark_runs")
        with pytest.raises(Exception):  # noqa: B017, PT011 - any failure of the sync
            sync.run()
        assert runs_part(sync).save() is None  # the last sync failed: nothing sure to keep


def test_a_restored_jobs_ledger_resumes_exact_and_keeps_labels_as_shown() -> None:
    world = World(order="newest_first", seed=4)
    agents = [*AGENTS, ("extra-agent", "extra-model")]  # past the cap of 2 pairs: folded
    live = []
    for i in range(40):
        state = "running" if i % 10 == 3 else "completed"
        jid = world.jobs.add(benchmark_id="bmd_0", agents=agents, create_ms=T0 + i, state=state, started=2)
        if state == "running":
            live.append(jid)
    with Simulator(world) as sim:
        before = jobs_sync(sim.url)
        before.run()
        body = through_json(JobsCheckpoint(before, DEFAULT_SCORE_BUCKETS).save())
        text = json.dumps(body)
        assert "extra-agent" not in text  # not admitted by the cap: kept as __other__, as it is shown
        world.jobs.finish(live[0])
        world.jobs.add(benchmark_id="bmd_0", agents=agents, create_ms=T0 + 100)
        after = jobs_sync(sim.url)
        JobsCheckpoint(after, DEFAULT_SCORE_BUCKETS).restore(body, 5.0)
        sim.reset_requests()
        resumed = after.run()
        assert len(sim.requests) <= 12, [r.path for r in sim.requests]
        assert resumed is not None
        assert resumed == before.run()  # what the process that never stopped shows, caps and all
        assert resumed.jobs == world.jobs.count()


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b["listings"][0].update(finished_runs=1),
        lambda b: b["listings"][0]["groups"][0]["scores"][0].append(1),
        lambda b: b["listings"][0].update(counted=False),
        lambda b: b["listings"][0]["running"].append(["bmr_x", [None, []], 1, "completed"]),
        lambda b: b.update(listings=[]),
        lambda b: b["listings"][0].update(listed="many"),
    ],
)
def test_a_damaged_body_is_refused_whole(damage: Any) -> None:
    world, _ = big_world("newest_first", 500, running=3)
    with Simulator(world) as sim:
        sync, _ = new_sync(sim.url)
        sync.run()
        body = through_json(runs_part(sync).save())
        damage(body)
        fresh, _ = new_sync(sim.url)
        with pytest.raises((CorruptError, ValueError)):
            runs_part(fresh).restore(body, 0.0)
        assert fresh.ledger is None  # nothing applied: it backfills as if there were no checkpoint


def identity(key: str = "key-1", settings: dict[str, dict[str, str]] | None = None) -> Identity:
    return Identity("http://127.0.0.1:1", lambda: key, settings or SETTINGS)


def test_the_header_refuses_another_account_api_settings_or_format_and_says_which() -> None:
    ours = identity()
    doc = through_json(envelope("runs", ours, ours.account(), {"x": 1}, 100.0))
    assert open_envelope(doc, "runs", identity()) == ({"x": 1}, 100.0)  # another process, same key
    cases = {
        "another account": identity("key-2"),
        "another API": Identity("http://127.0.0.1:2", lambda: "key-1", SETTINGS),
        "RUNLOOP_EXPORTER_SCORE_BUCKETS": identity(
            settings={"runs": {"RUNLOOP_EXPORTER_SCORE_BUCKETS": "b"}}
        ),
    }
    for words, other in cases.items():
        with pytest.raises(UnusableError) as refused:
            open_envelope(doc, "runs", other)
        assert refused.value.result == REJECTED
        assert words in refused.value.reason
    with pytest.raises(UnusableError) as refused:
        open_envelope({**doc, "version": 2}, "runs", ours)
    assert refused.value.result == REJECTED
    with pytest.raises(UnusableError) as refused:
        open_envelope(doc, "jobs", ours)
    assert refused.value.result == CORRUPT
    assert "key-1" not in json.dumps(doc)


def test_the_account_fingerprint_does_not_hold_the_key() -> None:
    key = "ak_" + "s3cr3t" * 8
    doc = envelope("runs", identity(key), identity(key).account(), {}, 1.0)
    text = json.dumps(doc)
    assert key not in text
    assert key.encode().hex() not in text


def test_store_writes_whole_files_and_refuses_truncated_and_damaged_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    with pytest.raises(UnusableError) as refused:
        store.read("runs")
    assert refused.value.result == MISSING
    store.make()
    assert store.take_lock()
    document = {"a": list(range(1000))}
    size = store.write("runs", document)
    path = store.path("runs")
    assert path.stat().st_size == size
    assert path.stat().st_mode & 0o777 == 0o600
    assert store.read("runs") == document
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    raw = path.read_bytes()
    for damaged, why in ((raw[: len(raw) // 2], "truncated"), (raw[:20] + b"x" * (len(raw) - 20), "damaged")):
        path.write_bytes(damaged)
        with pytest.raises(UnusableError) as refused:
            store.read("runs")
        assert refused.value.result == CORRUPT
        assert why in refused.value.reason
    path.write_bytes(gzip.compress(b"{not json"))
    with pytest.raises(UnusableError) as refused:
        store.read("runs")
    assert "not JSON" in refused.value.reason


def test_one_process_at_a_time_writes_and_a_second_takes_over_when_the_first_is_gone(tmp_path: Path) -> None:
    first, second = Store(tmp_path), Store(tmp_path)
    leftover = tmp_path / ".runs.json.gz.abc.tmp"
    leftover.write_bytes(b"half a write")
    assert first.take_lock()
    assert not leftover.exists()  # the holder removes what killed writes left
    assert not second.take_lock()
    first.close()
    assert second.take_lock()
    second.close()


def test_quiet_live_jobs_keep_their_place_in_the_backoff_so_a_restart_reads_no_stuck_job_again() -> None:
    """375 stuck live jobs spread through 3,000, quiet for a while: a restart costs what a sync at rest does
    (the probe and a job or two due), not a read of every stuck job."""
    world, stuck = stuck_world(3000, 8)
    clock = Clock()
    with Simulator(world) as sim:
        before = stuck_jobs_sync(sim.url, clock, interval_s=3.0, cap_s=600.0, page_size=5)
        before.run()
        for _ in range(200):
            clock.now += 3.0
            before.run()
        body = through_json(JobsCheckpoint(before, DEFAULT_SCORE_BUCKETS).save())
        clock.now += 3.0  # down for a sync's time
        after = stuck_jobs_sync(sim.url, clock, interval_s=3.0, cap_s=600.0, page_size=5)
        JobsCheckpoint(after, DEFAULT_SCORE_BUCKETS).restore(body, 3.0)
        sim.reset_requests()
        resumed = after.run()
        assert len(sim.requests) <= 3, [r.path for r in sim.requests]
        assert resumed == before.run()
        world.jobs.finish(stuck[200])  # one that ends is still counted within the cap, as before
        for _ in range(210):
            clock.now += 3.0
            resumed = after.run()
        assert resumed is not None
        assert (
            sum(states.get("completed", 0) for states in resumed.by_benchmark.values())
            == 3000 - len(stuck) + 1
        )


def test_settings_that_shape_the_figures_are_fingerprinted_and_the_rest_are_not() -> None:
    def prints(**given: Any) -> dict[str, dict[str, str]]:
        return fingerprints(Settings(demo=True, **given))

    base = prints()
    assert prints(include_benchmark_ids="b,a", exclude_benchmark_ids="c") == prints(
        include_benchmark_ids="a,b", exclude_benchmark_ids="c"
    )  # a set of ids, in any order
    for given, part, setting in (
        ({"score_buckets": "0.5,1"}, "jobs", "RUNLOOP_EXPORTER_SCORE_BUCKETS"),
        ({"duration_buckets": "60"}, "runs", "RUNLOOP_EXPORTER_DURATION_BUCKETS"),
        ({"metadata_labels": "team"}, "runs", "RUNLOOP_EXPORTER_METADATA_LABELS"),
        ({"exclude_benchmark_names": "x.*"}, "jobs", "RUNLOOP_EXPORTER_EXCLUDE_BENCHMARK_NAMES"),
        ({"agent_model_max_values": 7}, "jobs", "RUNLOOP_EXPORTER_AGENT_MODEL_MAX_VALUES"),
    ):
        assert prints(**given)[part][setting] != base[part][setting], given
    for given in ({"page_size": 5000}, {"jobs_page_size": 5}, {"reconcile_interval_seconds": 600}):
        assert prints(**given) == base, given  # what a sync costs, not what it finds
    assert prints(metadata_labels="a,b") != prints(metadata_labels="b,a")  # the labels' order is the key's


def test_without_locks_on_the_file_system_both_write_and_each_file_stays_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some network file systems refuse flock: each process then writes, and the renames keep every file
    whole (a reader finds one writer's document or the other's)."""

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    first, second = Store(tmp_path), Store(tmp_path)
    assert first.take_lock()
    assert second.take_lock()
    assert not first.lock_supported
    documents = [{"writer": name, "data": list(range(5000))} for name in ("first", "second")]
    for _ in range(20):
        first.write("jobs", documents[0])
        assert second.read("jobs") == documents[0]
        second.write("jobs", documents[1])
        assert first.read("jobs") == documents[1]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
