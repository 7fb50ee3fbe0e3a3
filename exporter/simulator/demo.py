"""Demo mode: a DemoDriver makes a World change as time passes, like a busy Runloop account.

Four active benchmarks (and an archived one with history only), a few hundred finished runs over three
days, runs starting and ending as the wall clock moves, and benchmark jobs of several agent configs, one
of which got worse in the last hours (so the status page has a regression to flag). Deterministic for a
seed.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from dataclasses import dataclass
from typing import Final, NotRequired, TypedDict

from exporter.simulator.world import World


@dataclass(frozen=True)
class _DemoBenchmark:
    id: str
    name: str
    mean_score: float
    status: str = "active"


_DEMO_BENCHMARKS: Final = (
    _DemoBenchmark("bmd_2xKf8Qm1SweVer", "swe-bench-verified", 0.58),
    _DemoBenchmark("bmd_2xKf9Tb4TermBn", "terminal-bench-core", 0.41),
    _DemoBenchmark("bmd_2xKfAh7nHumEvl", "humaneval-plus", 0.86),
    _DemoBenchmark("bmd_2xKfBc2rWebArn", "webarena-lite", 0.33),
    _DemoBenchmark("bmd_1pQz7Lk3SweLte", "swe-bench-lite-2024", 0.47, "archived"),  # history only
)
_DEMO_AGENTS: Final = ("baseline", "planner-v2", "reflexion")
# Agent configs of the demo's benchmark jobs, with how far each scores from its benchmark's mean.
_DEMO_AGENT_CONFIGS: Final = (
    (("claude-code", "claude-opus-4"), 0.18),
    (("claude-code", "claude-sonnet-4"), 0.10),
    (("openhands", "gpt-5"), 0.04),
    (("swe-agent", "gpt-4.1"), -0.08),
    (("aider", None), -0.16),
)
_DEMO_REGRESSED: Final = ("swe-agent", "gpt-4.1")  # scores lower in the jobs of the last hours
_DEMO_REGRESSION: Final = 0.6  # by this factor
_DEMO_JOB_SCENARIOS: Final = 20
_DEMO_TRIGGERS: Final = ("nightly", "ci", "manual")
_MINUTE_MS: Final = 60_000
_HOUR_MS: Final = 60 * _MINUTE_MS
_DAY_MS: Final = 24 * _HOUR_MS


class _RunDescription(TypedDict):
    """The user fields of a demo run, passed to World.add_run."""

    benchmark_id: str | None
    name: str
    metadata: dict[str, str]
    purpose: str | None
    environment_variables: NotRequired[dict[str, str]]
    secrets_provided: NotRequired[dict[str, str]]


@dataclass(frozen=True)
class _LiveRun:
    start_ms: int
    end_ms: int
    benchmark: _DemoBenchmark | None


class DemoDriver:
    """Makes a World change as time passes (demo mode).

    Four active benchmarks (plus an archived one with old runs only) and a few benchmark-job runs with no
    benchmark. Runs start at random (about one every 12 s), last 20 s to 8 min, then end mostly completed
    with a score around their benchmark's mean, some failed or canceled. Deterministic for a seed.
    """

    mean_gap_ms: Final = 12_000

    def __init__(self, world: World, *, seed: int = 0, tick_seconds: float = 2.0) -> None:
        if tick_seconds <= 0:
            raise ValueError("tick_seconds must be > 0")
        self.world = world
        self.tick_seconds = tick_seconds
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self._lock = threading.Lock()
        self._live: dict[str, _LiveRun] = {}
        self._last_tick_ms: int | None = None
        self._counter = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs_rng = random.Random(seed + 7)  # noqa: S311 - its own stream: runs stay as they were
        self._live_jobs: dict[str, int] = {}  # job id -> when it ends (ms)
        self._regressed_since: int | None = None  # jobs created since then score lower for one config
        for bench in _DEMO_BENCHMARKS:
            world.add_benchmark(bench.id, bench.name, bench.status)

    def seed_history(self, now_ms: int) -> None:
        """A few hundred finished runs over the last three days, and a few runs still going."""
        rng = self._rng
        with self._lock:
            finished: list[tuple[int, _DemoBenchmark | None, int]] = []
            for _ in range(360):
                bench = self._pick_benchmark(allow_archived=True)
                oldest = now_ms - 3 * _DAY_MS
                newest = now_ms - (
                    2 * _DAY_MS if bench is not None and bench.status == "archived" else 2 * _HOUR_MS
                )
                duration = int(math.exp(rng.uniform(math.log(_MINUTE_MS), math.log(2 * _HOUR_MS))))
                finished.append((rng.randint(oldest, newest), bench, duration))
            for start, bench, duration in sorted(finished, key=lambda item: item[0]):
                state, duration_ms, score = self._outcome(bench, duration)
                self.world.add_run(
                    state=state, start_ms=start, duration_ms=duration_ms, score=score, **self._describe(bench)
                )
            for _ in range(5):
                start = now_ms - rng.randint(0, 20 * _MINUTE_MS)
                self._start_run(start, max(now_ms + 30_000, start + rng.randint(5, 60) * _MINUTE_MS))
            jobs_rng = self._jobs_rng
            self._regressed_since = now_ms - 10 * _HOUR_MS
            for created in sorted(
                jobs_rng.randint(now_ms - 3 * _DAY_MS, now_ms - _HOUR_MS) for _ in range(48)
            ):
                draw = jobs_rng.random()
                state = "failed" if draw < 0.06 else "timeout" if draw < 0.1 else "completed"
                self._add_job(created, state)
            self._add_job(now_ms - 5 * _MINUTE_MS, "running", ends_ms=now_ms + 2 * _MINUTE_MS)
            self._last_tick_ms = now_ms

    def _add_job(self, created_ms: int, state: str, ends_ms: int | None = None) -> None:
        """A benchmark job of two to four agent configs on an active benchmark."""
        rng = self._jobs_rng
        bench = rng.choice([b for b in _DEMO_BENCHMARKS if b.status == "active"])
        configs = rng.sample(_DEMO_AGENT_CONFIGS, rng.randint(2, 4))
        job_id = self.world.jobs.add(
            benchmark_id=bench.id,
            agents=[agent for agent, _ in configs],
            levels=[self._level(bench, agent, offset, created_ms) for agent, offset in configs],
            create_ms=created_ms,
            state=state,
            n_scenarios=_DEMO_JOB_SCENARIOS,
            name=f"{bench.name}-agents-{created_ms}",
            seed=rng.getrandbits(31),
        )
        if ends_ms is not None:
            self._live_jobs[job_id] = ends_ms

    def _level(
        self, bench: _DemoBenchmark, agent: tuple[str, str | None], offset: float, created_ms: int
    ) -> float:
        """The mean score of an agent config in a job: the regressed one scores lower in recent jobs."""
        level = min(0.97, max(0.03, bench.mean_score + offset))
        since = self._regressed_since
        if agent == _DEMO_REGRESSED and since is not None and created_ms >= since:
            level *= _DEMO_REGRESSION
        return level

    def tick(self, now_ms: int) -> None:
        """One step: runs whose time is up end; new runs start at random times since the last tick."""
        rng = self._rng
        with self._lock:
            for run_id, live in sorted(self._live.items(), key=lambda item: item[1].end_ms):
                if live.end_ms > now_ms:
                    continue
                del self._live[run_id]
                state, duration_ms, score = self._outcome(live.benchmark, live.end_ms - live.start_ms)
                with contextlib.suppress(KeyError):  # deleted behind our back (tests do): nothing to do
                    self.world.finish_run(run_id, state, duration_ms, score)
            last = (
                self._last_tick_ms
                if self._last_tick_ms is not None
                else now_ms - int(self.tick_seconds * 1000)
            )
            clock = float(last)
            for _ in range(50):
                clock += rng.expovariate(1.0 / self.mean_gap_ms)
                if clock > now_ms:
                    break
                start = int(clock)
                duration = int(math.exp(rng.uniform(math.log(20_000), math.log(8 * _MINUTE_MS))))
                self._start_run(start, start + duration)
            for job_id, ends_ms in sorted(self._live_jobs.items(), key=lambda item: item[1]):
                if ends_ms <= now_ms:
                    del self._live_jobs[job_id]
                    with contextlib.suppress(KeyError):
                        self.world.jobs.finish(
                            job_id, "timeout" if self._jobs_rng.random() < 0.1 else "completed"
                        )
            if not self._live_jobs and self._jobs_rng.random() < 0.05 * (now_ms - last) / 2_000:
                self._add_job(now_ms, "running", ends_ms=now_ms + self._jobs_rng.randint(1, 5) * _MINUTE_MS)
            self._last_tick_ms = max(now_ms, last)

    def running(self) -> list[str]:
        """Ids of the runs this driver has started and not yet finished."""
        with self._lock:
            return list(self._live)

    def start(self) -> None:
        """Tick every tick_seconds on the wall clock in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("demo driver already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="runloop-demo-driver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and join the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick(int(time.time() * 1000))
            self._stop.wait(self.tick_seconds)

    def _pick_benchmark(self, *, allow_archived: bool) -> _DemoBenchmark | None:
        if self._rng.random() < 0.04:
            return None  # a run created by a benchmark job: no benchmark_id
        choices = [b for b in _DEMO_BENCHMARKS if allow_archived or b.status == "active"]
        return self._rng.choice(choices)

    def _describe(self, bench: _DemoBenchmark | None) -> _RunDescription:
        """Name, benchmark, metadata and the other user fields of a new run."""
        rng = self._rng
        self._counter += 1
        trigger = rng.choice(_DEMO_TRIGGERS)
        label = bench.name if bench is not None else "adhoc-job"
        fields: _RunDescription = {
            "benchmark_id": None if bench is None else bench.id,
            "name": f"{label}-{trigger}-{self._counter:04d}",
            "metadata": {"agent": rng.choice(_DEMO_AGENTS), "trigger": trigger},
            "purpose": rng.choice((None, "regression", "experiment")),
        }
        if rng.random() < 0.3:
            fields["environment_variables"] = {"LOG_LEVEL": "info", "MAX_STEPS": "50"}
            fields["secrets_provided"] = {"LLM_API_KEY": "DEMO_LLM_KEY"}
        return fields

    def _start_run(self, start_ms: int, end_ms: int) -> None:
        bench = self._pick_benchmark(allow_archived=False)
        run_id = self.world.add_run(state="running", start_ms=start_ms, **self._describe(bench))
        self._live[run_id] = _LiveRun(start_ms, end_ms, bench)

    def _outcome(self, bench: _DemoBenchmark | None, duration_ms: int) -> tuple[str, int, float | None]:
        """Terminal state, duration and score: mostly completed and scored, some failed or canceled."""
        rng = self._rng
        draw = rng.random()
        if draw < 0.11:
            return "failed", duration_ms, None
        if draw < 0.18:
            return "canceled", max(1_000, int(duration_ms * rng.uniform(0.1, 0.9))), None
        mean = bench.mean_score if bench is not None else 0.5
        return "completed", duration_ms, round(min(1.0, max(0.0, rng.gauss(mean, 0.08))), 4)
