"""Restarts resume from the checkpoint (issue 19): the real exporter as a child process, the simulator on
127.0.0.1 at 40 ms a request, requests counted at the simulator, figures against the oracles.

Exact after a restart whatever moved before and while it was down, in a few requests; a checkpoint that
cannot be trusted (corrupt, truncated, another account, other settings) gives a full read and one log
line; a write killed half-way leaves the last good checkpoint or none; an unwritable directory is one
warning; nothing in the files that /metrics does not show.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from exporter.simulator import DEFAULT_API_KEY, Latency, Simulator, World
from tests.integration.test_jobs import AGENTS, T0
from tests.support.exporter_process import Exporter, run_cli
from tests.support.jobs_oracle import expected_job_samples
from tests.support.samples import Samples, assert_samples, benchmark_part, job_part, sample
from tests.support.syncing import truth

LATENCY = Latency(base_s=0.04)
BENCHMARKS = [f"bmd_{i}" for i in range(8)]
NOT_USED = "checkpoint not used; reading in full"
LAST_SYNC = "runloop_exporter_last_successful_sync_timestamp_seconds"
CANNOT_WRITE = "the checkpoint cannot be written; the exporter runs on, and a restart will read in full"


def make_world(
    runs: int, jobs: int, *, live_jobs: int = 10, running: int = 50, scenarios: int = 5, top: bool = False
) -> World:
    """`runs` runs (`running` of them live, at the top) over named benchmarks (one archived), and `jobs`
    jobs of which `live_jobs` are live, spread through the history (or the newest, with `top`)."""
    world = World(order="newest_first", seed=runs + jobs)
    for i, bid in enumerate(BENCHMARKS):
        world.add_benchmark(bid, f"Benchmark {i}", status="archived" if i == 0 else "active")
    world.add_many_finished(runs - running, BENCHMARKS, start_ms=T0)
    for i in range(running):
        world.add_run(benchmark_id=BENCHMARKS[i % 8], state="running", start_ms=T0 + 10**10 + i)
    every = max(jobs // max(live_jobs, 1), 1)
    for i in range(jobs):
        live = (
            i >= jobs - live_jobs
            if top
            else live_jobs > 0 and i % every == every // 2 and i // every < live_jobs
        )
        world.jobs.add(
            benchmark_id=BENCHMARKS[i % 8],
            agents=AGENTS,
            create_ms=T0 + i * 1000,
            state="running" if live else "completed",
            n_scenarios=scenarios,
        )
    return world


def running_runs(world: World) -> list[str]:
    """Running runs of benchmarks (not of jobs, whose runs end with their job: never twice)."""
    return [str(run["id"]) for run in world.runs() if run["state"] == "running" and run.get("benchmark_id")]


def live_jobs(world: World) -> list[str]:
    return [str(view["id"]) for view in world.jobs.views() if view["state"] == "running"]


def move(
    world: World, *, ended: int, started: int, finished: int, jobs_ended: int, jobs_new: int, at: int
) -> None:
    """Change the world: runs end, start and appear already finished; jobs end and appear."""
    for rid in running_runs(world)[:ended]:
        world.finish_run(rid, "completed", 120_000, 0.625)
    for i in range(started):
        world.add_run(benchmark_id=BENCHMARKS[i % 8], state="running", start_ms=T0 + 2 * 10**10 + at + i)
    for i in range(finished):
        world.add_run(
            benchmark_id=BENCHMARKS[(i + 3) % 8],
            state="failed",
            start_ms=T0 + 2 * 10**10 + at + started + i,
            duration_ms=30_000,
        )
    for jid in live_jobs(world)[:jobs_ended]:
        world.jobs.finish(jid)
    for i in range(jobs_new):
        world.jobs.add(
            benchmark_id=BENCHMARKS[i % 8],
            agents=AGENTS,
            create_ms=T0 + 10**9 + at + i,
            state="running" if i % 2 else "completed",
            n_scenarios=5,
        )


def env_of(sim: Simulator, state: Path, **extra: str) -> dict[str, str]:
    """The exporter's settings. Live jobs are read at every sync (the recheck cap at its least), so a live
    job that moved while the exporter was down is read by the first sync. At the default cap a quiet live
    job keeps its place in the backoff across a restart and is read within 10 minutes, as it would have
    been without the restart (tests/unit/test_checkpoint.py)."""
    return {
        "RUNLOOP_EXPORTER_JOBS_RECHECK_MAX_SECONDS": "1",
        "RUNLOOP_BASE_URL": sim.url,
        "RUNLOOP_API_KEY": DEFAULT_API_KEY,
        "RUNLOOP_EXPORTER_STATE_DIR": str(state),
        "RUNLOOP_EXPORTER_JOBS_PAGE_SIZE": "5",
        "RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": "60",
        **extra,
    }


def both_shown(exporter: Exporter) -> Samples:
    """The first scrape with run and job metrics (waits for it)."""
    found: list[Samples] = []

    def shown() -> bool:
        scraped = exporter.scrape()
        ok = bool(benchmark_part(scraped)) and bool(job_part(scraped))
        if ok:
            found.append(scraped)
        return ok

    exporter.wait_until(shown, 120, "run and job metrics")
    return found[0]


def assert_exact(scraped: Samples, world: World) -> None:
    assert_samples(benchmark_part(scraped), truth(world))
    assert_samples(job_part(scraped), expected_job_samples(world.jobs.views()))


def loads(scraped: Samples, part: str, result: str) -> float | None:
    return sample(scraped, "runloop_exporter_checkpoint_loads_total", part=part, result=result)


def full_reads(scraped: Samples) -> tuple[float | None, float | None]:
    """The backfills of the runs and of the jobs so far."""
    return (
        sample(scraped, "runloop_exporter_full_reads_total", reason="backfill"),
        sample(scraped, "runloop_exporter_job_full_reads_total", reason="backfill"),
    )


def events(exporter: Exporter, event: str) -> list[dict[str, Any]]:
    out = []
    for line in exporter.logs().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == event:
                out.append(entry)
    return out


def wrote(exporter: Exporter, part: str) -> float:
    return (
        sample(exporter.scrape(), "runloop_exporter_checkpoint_writes_total", part=part, result="success")
        or 0
    )


def written_at(path: Path) -> float:
    return float(json.loads(gzip.decompress(path.read_bytes()))["written_at"])


def test_a_restart_resumes_exact_in_a_few_requests_whatever_moved_before_and_while_it_was_down(
    tmp_path: Path, promtool: str
) -> None:
    world = make_world(20_000, 300)
    state = tmp_path / "state"
    with Simulator(world, latency=LATENCY) as sim:
        # Written once early on, then not for an hour: what moved after is kept by the clean stop only. Quiet
        # live jobs are left to their backoff here (cycles of a request or two, so a stop seldom finds one
        # in flight); the restart below reads every live job.
        env = env_of(
            sim,
            state,
            RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS="1",
            RUNLOOP_EXPORTER_CHECKPOINT_INTERVAL_SECONDS="3600",
            RUNLOOP_EXPORTER_JOBS_RECHECK_MAX_SECONDS="600",
        )
        first = Exporter([], env).start(tmp_path)
        try:
            both_shown(first)
            first.wait_until(
                lambda: wrote(first, "runs") >= 1 and wrote(first, "jobs") >= 1, 30, "first writes"
            )
            early = {part: written_at(state / f"{part}.json.gz") for part in ("runs", "jobs")}
            move(world, ended=10, started=5, finished=5, jobs_ended=2, jobs_new=3, at=0)  # while it runs
            jobs_syncs = sample(first.scrape(), "runloop_exporter_jobs_syncs_total", result="success") or 0
            first.wait_for_sync()
            first.wait_until(
                lambda: (
                    (sample(first.scrape(), "runloop_exporter_jobs_syncs_total", result="success") or 0)
                    >= jobs_syncs + 2
                ),
                30,
                "jobs syncs after the changes",
            )
            assert (wrote(first, "runs"), wrote(first, "jobs")) == (1, 1)
        finally:
            assert first.stop() == 0
        for part, before in early.items():  # the clean stop wrote what the last cycles confirmed
            assert written_at(state / f"{part}.json.gz") > before, part
        full = len([r for r in sim.requests if r.path == "/v1/benchmark_runs"])
        move(world, ended=20, started=10, finished=10, jobs_ended=3, jobs_new=4, at=1000)  # while it is down
        sim.reset_requests()
        started = time.time()
        second = Exporter([], env_of(sim, state)).start(tmp_path)
        try:
            scraped = both_shown(second)
            sent = [r.path for r in sim.requests]
            assert_exact(scraped, world)
            assert loads(scraped, "runs", "used") == 1
            assert loads(scraped, "jobs", "used") == 1
            assert full_reads(scraped) == (0, 0)
            assert sample(scraped, "runloop_exporter_checkpoint_age_seconds", part="runs") is not None
            # Honest: no sync time from before the start; the first one is this process's own.
            assert not 0 < (sample(scraped, LAST_SYNC) or 0) <= started
            second.wait_until(lambda: sample(second.scrape(), "runloop_up") == 1, 30, "runloop_up 1")
            assert (sample(second.scrape(), LAST_SYNC) or 0) > started
            # The probes, a scan from the top and a few lookups; a full read is 20 pages of runs and 60 of jobs.
            assert len(sent) <= 25, sent
            assert full > 20
            second.wait_until(
                lambda: wrote(second, "runs") >= 1, 30, "a write"
            )  # every checkpoint series shown
            text = second.get("/metrics").text
            assert "runloop_exporter_checkpoint_last_write_timestamp_seconds{" in text
            checked = subprocess.run(
                [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
            )
            assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
        finally:
            second.stop()


@pytest.mark.slow
def test_the_issue_target_100000_runs_and_2000_jobs_at_40_ms_resume_in_at_most_40_requests(
    tmp_path: Path,
) -> None:
    """Issue 19's target: 100,000 runs and 2,000 jobs 5 to a page at 40 ms, about 100 runs and 10 jobs
    changed across the restart: run and job metrics after at most 40 requests (a full read: 20 pages of
    5,000 runs and 400 of jobs). The time it takes is the bench's (`./dev bench restart`).

    The first exporter only makes the checkpoint: it reads the jobs 100 to a page (page sizes are not
    among the settings a checkpoint is written for), 20 requests instead of 400 at 40 ms and as much
    rendering here; the restart, the part under test, reads them 5 to a page.

    Every live job is read at each sync (env_of): with the default recheck cap, a quiet live job pushed
    below the probe's page by new ones is counted when its recheck is due (within 10 minutes), restart or
    not, which no restart test can wait for."""
    world = make_world(100_000, 2_000, running=100, scenarios=20, top=True)
    state = tmp_path / "state"
    with Simulator(world, latency=LATENCY) as sim:
        env = env_of(sim, state, RUNLOOP_EXPORTER_PAGE_SIZE="5000")
        first = Exporter([], {**env, "RUNLOOP_EXPORTER_JOBS_PAGE_SIZE": "100"}).start(tmp_path)
        try:
            both_shown(first)
            first.wait_until(
                lambda: wrote(first, "jobs") >= 1 and wrote(first, "runs") >= 1, 60, "the checkpoint"
            )
        finally:
            first.stop()
        move(world, ended=50, started=25, finished=25, jobs_ended=5, jobs_new=5, at=0)
        sim.reset_requests()
        second = Exporter([], env).start(tmp_path)
        try:
            scraped = both_shown(second)
            sent = [r.path for r in sim.requests]
            assert len(sent) <= 40, sent
            assert_exact(scraped, world)
            assert full_reads(scraped) == (0, 0)
        finally:
            second.stop()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Simulator, Path]]:
    """A simulator and a state directory holding a good checkpoint of it (copied by each test)."""
    tmp = tmp_path_factory.mktemp("good")
    world = make_world(3_000, 40, live_jobs=4, running=10)
    with Simulator(world, latency=LATENCY) as sim:
        exporter = Exporter([], env_of(sim, tmp / "state")).start(tmp)
        try:
            both_shown(exporter)
            exporter.wait_until(
                lambda: wrote(exporter, "jobs") >= 1 and wrote(exporter, "runs") >= 1, 30, "writes"
            )
        finally:
            exporter.stop()
        yield world, sim, tmp / "state"


def rewrite(path: Path, change: Any) -> None:
    """Change a checkpoint's document and write it back, well-formed."""
    doc = json.loads(gzip.decompress(path.read_bytes()))
    change(doc)
    path.write_bytes(gzip.compress(json.dumps(doc).encode()))


def other_account(doc: dict[str, Any]) -> None:
    """As a process with another key would have written it (its own salt, its own HMAC)."""
    salt = os.urandom(16)
    doc["account"] = {
        "salt": salt.hex(),
        "hmac_sha256": hmac.new(salt, b"ak_other", hashlib.sha256).hexdigest(),
    }


def forge_account(state: Path) -> None:
    for name in ("runs.json.gz", "jobs.json.gz"):
        rewrite(state / name, other_account)


DAMAGES: Mapping[str, tuple[tuple[str, ...], str, Any, dict[str, str]]] = {
    # case: (parts damaged, result counted, damage, settings)
    "corrupt": (
        ("runs",),
        "corrupt",
        lambda d: (d / "runs.json.gz").write_bytes(b"\x1f\x8b" + os.urandom(300)),
        {},
    ),
    "truncated": (
        ("jobs",),
        "corrupt",
        lambda d: (d / "jobs.json.gz").write_bytes((d / "jobs.json.gz").read_bytes()[:-40]),
        {},
    ),
    "another account": (
        ("runs", "jobs"),
        "rejected",
        forge_account,
        {},
    ),
    "other settings": (
        ("runs",),
        "rejected",
        lambda d: None,
        {"RUNLOOP_EXPORTER_DURATION_BUCKETS": "60,3600"},
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_a_checkpoint_that_cannot_be_trusted_gives_a_full_read_and_one_line(
    case: str, good: tuple[World, Simulator, Path], tmp_path: Path
) -> None:
    world, sim, source = good
    parts, result, damage, settings = DAMAGES[case]
    state = tmp_path / "state"
    shutil.copytree(source, state)
    damage(state)
    exporter = Exporter([], env_of(sim, state, **settings)).start(tmp_path)
    try:
        scraped = both_shown(exporter)
        if settings:
            buckets = [float(b) for b in settings["RUNLOOP_EXPORTER_DURATION_BUCKETS"].split(",")]
            assert_samples(benchmark_part(scraped), truth(world, duration_buckets=tuple(buckets)))
            assert_samples(job_part(scraped), expected_job_samples(world.jobs.views()))
        else:
            assert_exact(scraped, world)
        lines = events(exporter, NOT_USED)
        assert sorted(line["part"] for line in lines) == sorted(parts), lines
        for part in ("runs", "jobs"):
            assert loads(scraped, part, result if part in parts else "used") == 1
        runs_read, jobs_read = full_reads(scraped)
        assert (runs_read, jobs_read) == (int("runs" in parts), int("jobs" in parts))
        if case == "other settings":
            assert "RUNLOOP_EXPORTER_DURATION_BUCKETS" in lines[0]["reason"]
        if case == "another account":
            assert "another account" in lines[0]["reason"]
    finally:
        exporter.stop()


def test_a_checkpoint_older_than_the_reconcile_interval_is_caught_up_then_reconciled_beside(
    good: tuple[World, Simulator, Path], tmp_path: Path
) -> None:
    world, sim, source = good
    state = tmp_path / "state"
    shutil.copytree(source, state)
    for name in ("runs.json.gz", "jobs.json.gz"):
        rewrite(state / name, lambda d: d.update(written_at=d["written_at"] - 7200))  # two hours old
    exporter = Exporter(
        [],
        env_of(
            sim,
            state,
            RUNLOOP_EXPORTER_RECONCILE_INTERVAL_SECONDS="3600",
            RUNLOOP_EXPORTER_JOBS_RECONCILE_INTERVAL_SECONDS="3600",
        ),
    ).start(tmp_path)
    try:
        scraped = both_shown(exporter)
        assert_exact(scraped, world)
        assert full_reads(scraped) == (0, 0)  # caught up with the probes first, published
        assert (sample(scraped, "runloop_exporter_checkpoint_age_seconds", part="runs") or 0) >= 7200

        def reconciled() -> bool:
            scraped = exporter.scrape()
            return (
                sample(scraped, "runloop_exporter_full_reads_total", reason="scheduled") == 1
                and sample(scraped, "runloop_exporter_job_full_reads_total", reason="scheduled") == 1
            )

        exporter.wait_until(reconciled, 60, "the reconciles beside the loops")
        assert_exact(exporter.scrape(), world)
    finally:
        exporter.stop()


def test_a_write_killed_half_way_leaves_the_last_good_checkpoint_or_none(tmp_path: Path) -> None:
    """Writes after every 1 s sync of an account with many groups; the exporter is stopped while a
    temporary file is there, then killed: the next start uses what is there or reads in full, exact."""
    world = make_world(3_000, 40, live_jobs=4, running=10)
    # 1,000 more benchmarks, a group each: a checkpoint that takes a while to write. Named in the listing,
    # or the exporter would look each up by id (1,000 requests) before the first figures.
    many = [f"bmd_many_{i}" for i in range(1000)]
    for i, bid in enumerate(many):
        world.add_benchmark(bid, f"Many {i}")
    world.add_many_finished(10_000, many, start_ms=T0 + 5 * 10**10)
    state = tmp_path / "state"
    with Simulator(world, latency=Latency(base_s=0.005)) as sim:
        env = env_of(
            sim,
            state,
            RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS="1",
            RUNLOOP_EXPORTER_CHECKPOINT_INTERVAL_SECONDS="0",
        )
        exporter = Exporter([], env).start(tmp_path)
        caught = False
        try:
            both_shown(exporter)
            assert exporter.proc is not None
            pid = exporter.proc.pid
            deadline = time.monotonic() + 90
            while not caught and time.monotonic() < deadline:
                if any(p.name.endswith(".tmp") for p in state.iterdir()):
                    os.kill(pid, signal.SIGSTOP)
                    if any(p.name.endswith(".tmp") for p in state.iterdir()):
                        os.kill(pid, signal.SIGKILL)
                        caught = True
                    else:
                        os.kill(pid, signal.SIGCONT)
        finally:
            exporter.stop(signal.SIGKILL)
        assert caught, "no write was caught half-way in 90 s"
        assert [p.name for p in state.iterdir() if p.name.endswith(".tmp")]  # killed mid-write, left behind
        move(world, ended=3, started=2, finished=2, jobs_ended=1, jobs_new=1, at=7)
        again = Exporter([], env_of(sim, state)).start(tmp_path)
        try:
            scraped = both_shown(again)
            assert_exact(scraped, world)
            for part in ("runs", "jobs"):  # the last good file, or (had none been whole) a full read
                assert (loads(scraped, part, "used") or 0) + (loads(scraped, part, "missing") or 0) == 1
            assert not [
                p.name for p in state.iterdir() if p.name.endswith(".tmp")
            ]  # the lock holder cleaned up
        finally:
            again.stop()


def freeze(directory: Path) -> bool:
    """Make a directory unwritable, even for root (chattr +i where chmod is not enough)."""
    directory.chmod(0o555)
    probe = directory / ".probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return True
    probe.unlink()
    made = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, check=False)
    return made.returncode == 0


def thaw(directory: Path) -> None:
    subprocess.run(["chattr", "-i", str(directory)], capture_output=True, check=False)
    directory.chmod(0o755)


def test_an_unwritable_directory_gives_one_warning_and_the_exporter_runs(tmp_path: Path) -> None:
    world = make_world(2_000, 20, live_jobs=2, running=5)
    state = tmp_path / "state"
    state.mkdir()
    if not freeze(state):
        if os.environ.get("CI") == "true":
            pytest.fail("cannot make a directory unwritable here (neither chmod nor chattr +i works)")
        pytest.skip("cannot make a directory unwritable here (neither chmod nor chattr +i works)")
    try:
        with Simulator(world, latency=LATENCY) as sim:
            env = env_of(
                sim,
                state,
                RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS="1",
                RUNLOOP_EXPORTER_CHECKPOINT_INTERVAL_SECONDS="0",
            )
            exporter = Exporter([], env).start(tmp_path)
            try:
                both_shown(exporter)
                exporter.wait_until(
                    lambda: (
                        (
                            sample(
                                exporter.scrape(),
                                "runloop_exporter_checkpoint_writes_total",
                                part="runs",
                                result="failure",
                            )
                            or 0
                        )
                        >= 3
                    ),
                    30,
                    "failed writes",
                )
                scraped = exporter.wait_for_sync()
                assert_exact(scraped, world)
                assert sample(scraped, "runloop_up") == 1
                assert len(events(exporter, CANNOT_WRITE)) == 1  # one warning, not one per sync
            finally:
                exporter.stop()
    finally:
        thaw(state)


MARKERS = {
    "run name": "MARK-RUN-NAME",
    "metadata value": "MARK-METADATA",
    "environment variable": "MARK-ENV",
    "secret": "MARK-SECRET",
    "job name": "MARK-JOB-NAME",
    "job secrets": "MARK-JOB",
    "scenario name": "MARK-SCENARIO",
}


def test_planted_markers_never_reach_the_files(tmp_path: Path) -> None:
    world = make_world(1_000, 20, live_jobs=2, running=5)
    for i, state_name in enumerate(("running", "completed", "failed")):
        world.add_run(
            benchmark_id="bmd_2",
            state=state_name,
            start_ms=T0 + 9 * 10**10 + i,
            duration_ms=None if state_name == "running" else 1000,
            score=0.5 if state_name == "completed" else None,
            name=MARKERS["run name"],
            metadata={"team": "a", "note": MARKERS["metadata value"]},
            purpose=MARKERS["metadata value"],
            environment_variables={"X": MARKERS["environment variable"]},
            secrets_provided={"Y": MARKERS["secret"]},
        )
    for state_name, benchmark in (("running", "bmd_2"), ("failed", "bmd_2"), ("running", None)):
        world.jobs.add(  # without a benchmark, its source is inline YAML (planted too)
            benchmark_id=benchmark,
            agents=AGENTS,
            create_ms=T0 + 9 * 10**9,
            state=state_name,
            name=MARKERS["job name"],
            secrets={
                k: f"{MARKERS['job secrets']}-{k}" for k in ("message", "env", "secret", "kwarg", "yaml")
            },
        )
    oldest = world.jobs.views()[-1]  # a completed job, with outcomes and their scenarios
    assert isinstance(oldest, dict)
    raw = json.loads(json.dumps(oldest))
    raw["id"] = "bmj_marked"
    raw["state"] = "running"
    for outcome in raw.get("benchmark_outcomes", []):
        for scenario in outcome.get("scenario_outcomes", []):
            scenario["scenario_name"] = MARKERS["scenario name"]
    world.jobs.add_raw(raw)
    served = json.dumps(world.runs()) + json.dumps(world.jobs.views())
    for what, marker in MARKERS.items():  # each one is in what the API answers
        assert marker in served, what
    assert f"token: {MARKERS['job secrets']}-yaml" in served  # the inline YAML of the job without a benchmark
    state = tmp_path / "state"
    with Simulator(world, latency=LATENCY) as sim:
        exporter = Exporter([], env_of(sim, state, RUNLOOP_EXPORTER_METADATA_LABELS="team")).start(tmp_path)
        try:
            both_shown(exporter)
            exporter.wait_until(
                lambda: wrote(exporter, "jobs") >= 1 and wrote(exporter, "runs") >= 1, 30, "writes"
            )
        finally:
            exporter.stop()
    text = "".join(
        gzip.decompress(path.read_bytes()).decode() for path in sorted(state.glob("*.json.gz"))
    ) + "".join(path.read_text(errors="replace") for path in state.iterdir() if not path.name.endswith(".gz"))
    assert '"bmj_marked"' in text  # the marked job is held (live), ids and all
    for what, marker in MARKERS.items():
        assert marker not in text, f"the {what} reached the checkpoint"
    assert DEFAULT_API_KEY not in text


def test_check_says_whether_a_checkpoint_is_there_and_would_be_used(
    good: tuple[World, Simulator, Path], tmp_path: Path
) -> None:
    _, sim, source = good
    env = env_of(sim, source)
    said = run_cli(["check"], env)
    assert said.returncode == 0, said.stderr
    lines = said.stdout.splitlines()
    assert f"checkpoint: {source}" in lines
    for part in ("runs", "jobs"):
        assert any(
            line.startswith(f"checkpoint {part}: written ") and "would be used" in line for line in lines
        )
    foreign = tmp_path / "foreign"
    shutil.copytree(source, foreign)
    forge_account(foreign)
    said = run_cli(["check"], {**env, "RUNLOOP_EXPORTER_STATE_DIR": str(foreign)})
    assert "checkpoint runs: would not be used (rejected: written for another account" in said.stdout
    missing = tmp_path / "nothing-here"
    said = run_cli(["check"], {**env, "RUNLOOP_EXPORTER_STATE_DIR": str(missing)})
    assert "checkpoint runs: none yet; the runs would be read in full" in said.stdout
    assert not missing.exists()  # check changes nothing on disk
    said = run_cli(["check"], {k: v for k, v in env.items() if k != "RUNLOOP_EXPORTER_STATE_DIR"})
    assert "checkpoint: none (RUNLOOP_EXPORTER_STATE_DIR is not set): a start reads in full" in said.stdout
    assert DEFAULT_API_KEY not in said.stdout + said.stderr


def test_a_second_exporter_on_the_same_directory_writes_nothing_until_the_first_is_gone(
    good: tuple[World, Simulator, Path], tmp_path: Path
) -> None:
    world, sim, source = good
    state = tmp_path / "state"
    shutil.copytree(source, state)
    env = env_of(
        sim,
        state,
        RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS="1",
        RUNLOOP_EXPORTER_CHECKPOINT_INTERVAL_SECONDS="0",
    )
    first = Exporter([], env).start(tmp_path)
    second: Exporter | None = None
    try:
        both_shown(first)
        assert first.proc is not None
        assert f"a running exporter (pid {first.proc.pid}) writes it" in run_cli(["check"], env).stdout
        second = Exporter([], env).start(tmp_path)
        scraped = both_shown(second)
        assert loads(scraped, "runs", "used") == 1  # it reads the checkpoint as any start does
        assert (
            len(
                events(
                    second,
                    "another exporter holds the checkpoint directory's lock; this one reads "
                    "the checkpoint but writes none while it holds it",
                )
            )
            == 1
        )
        base = wrote(first, "runs")
        first.wait_until(lambda: wrote(first, "runs") >= base + 3, 30, "the first exporter's writes")
        assert wrote(second, "runs") == 0
        assert_exact(second.scrape(), world)
        assert first.stop() == 0
        second.wait_until(lambda: wrote(second, "runs") >= 1, 30, "the second to take the writes over")
    finally:
        first.stop()
        if second is not None:
            second.stop()
    again = run_cli(["check"], env)
    assert "checkpoint runs: written" in again.stdout


def account_of(path: Path, key: str) -> bool:
    """Whether a checkpoint was written under this key."""
    account = json.loads(gzip.decompress(path.read_bytes()))["account"]
    salt = bytes.fromhex(account["salt"])
    return hmac.compare_digest(
        account["hmac_sha256"], hmac.new(salt, key.encode(), hashlib.sha256).hexdigest()
    )


def test_after_the_key_file_changes_the_checkpoint_is_written_under_the_new_key(tmp_path: Path) -> None:
    """A rotation at runtime: what the cycles under the new key confirm is written under its fingerprint, and
    a restart with it resumes; a restart with the old key reads in full."""
    world = make_world(2_000, 20, live_jobs=2, running=5)
    state, key_file = tmp_path / "state", tmp_path / "api-key"
    old, new = "ak_old_" + "1" * 20, "ak_new_" + "2" * 20
    key_file.write_text(old)
    with Simulator(world, api_key=old, latency=LATENCY) as sim:
        env = env_of(
            sim,
            state,
            RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS="1",
            RUNLOOP_EXPORTER_CHECKPOINT_INTERVAL_SECONDS="0",
        )
        del env["RUNLOOP_API_KEY"]
        env["RUNLOOP_API_KEY_FILE"] = str(key_file)
        exporter = Exporter([], env).start(tmp_path)
        try:
            both_shown(exporter)
            exporter.wait_until(
                lambda: wrote(exporter, "runs") >= 1 and wrote(exporter, "jobs") >= 1, 30, "writes"
            )
            assert account_of(state / "runs.json.gz", old)
            sim.api_key = new
            key_file.write_text(new)
            exporter.wait_until(
                lambda: account_of(state / "runs.json.gz", new) and account_of(state / "jobs.json.gz", new),
                60,
                "writes under the new key",
            )
        finally:
            exporter.stop()
        again = Exporter([], env).start(tmp_path)
        try:
            scraped = both_shown(again)
            assert loads(scraped, "runs", "used") == 1
            assert loads(scraped, "jobs", "used") == 1
            assert_exact(scraped, world)
        finally:
            again.stop()
        sim.api_key = old
        key_file.write_text(old)
        back = Exporter([], env).start(tmp_path)
        try:
            scraped = both_shown(back)
            assert loads(scraped, "runs", "rejected") == 1
            assert [line["reason"] for line in events(back, NOT_USED)] == [
                "written for another account (the API key differs)"
            ] * 2
            assert_exact(scraped, world)
        finally:
            back.stop()


def test_a_directory_that_cannot_be_made_gives_one_line_and_a_full_read(
    good: tuple[World, Simulator, Path], tmp_path: Path
) -> None:
    """The state directory's parent is a file: nothing can be read or written there; the exporter says so
    once, reads in full and runs on."""
    world, sim, _ = good
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    exporter = Exporter([], env_of(sim, blocker / "state")).start(tmp_path)
    try:
        scraped = both_shown(exporter)
        assert_exact(scraped, world)
        assert full_reads(scraped) == (1, 1)
        for part in ("runs", "jobs"):
            assert loads(scraped, part, "unreadable") == 1
        lines = events(
            exporter,
            "the checkpoint directory cannot be used; reading in full, and running without a checkpoint",
        )
        assert len(lines) == 1
        assert not events(exporter, NOT_USED)
        exporter.wait_until(lambda: sample(exporter.scrape(), "runloop_up") == 1, 30, "runloop_up 1")
    finally:
        exporter.stop()
