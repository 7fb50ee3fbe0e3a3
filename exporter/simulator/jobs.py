"""Benchmark jobs in the simulator: `GET /v1/benchmark_jobs` and `/v1/benchmark_jobs/{id}`.

A job is kept as a compact description (agents, number of scenarios, a seed, the ids of its runs) and
its view, with every scenario outcome, is rendered when it is served: a hundred thousand jobs of 500
scenarios and 4 agents would be tens of gigabytes rendered. The benchmark runs a job creates are real
runs of the World's run listing, ended with the score their scenario outcomes give, so both views agree.
Every body validates against the official SDK's `BenchmarkJobView` (tests/unit/test_jobs.py).

Long because the rendering and the store share the cached templates a served job is made from: split
apart, each would need the other's knowledge of which fields of a job vary.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from exporter.simulator.wire import MAX_LIMIT, SimulatedApiError

if TYPE_CHECKING:
    from exporter.simulator.world import World

JOB_STATES = ("initializing", "queued", "running", "completed", "failed", "cancelled", "timeout")
TERMINAL = frozenset({"completed", "failed", "cancelled", "timeout"})
EXCEPTION_TYPES = ("AssertionError", "ModuleNotFoundError", "SyntaxError", "RuntimeError", "KeyError")
# Placeholders of a body template (see JobStore._body): strings no rendered view contains otherwise.
_ID, _NAME, _RUN, _SLOT = "@@ID@@", "@@NAME@@", "@@RUN", "@@SLOT@@"
_CREATE_MS = -987_654_321_987
_MAX_TEMPLATES = 64
_HOLES = re.compile(
    f"({re.escape(_ID)}|{re.escape(_NAME)}|{re.escape(_RUN)}\\d+@|{re.escape(_SLOT)}|{_CREATE_MS})"
)

Agent = tuple[str, str | None]


def _json_str(text: str) -> str:
    """A string as it appears inside JSON quotes."""
    return json.dumps(text)[1:-1]


@dataclass
class SimJob:
    """One job as the simulator holds it: enough to render its view on demand."""

    id: str
    slot: int
    name: str
    create_ms: int
    state: str
    benchmark_id: str | None
    agents: tuple[Agent, ...]
    n_scenarios: int
    seed: int
    levels: tuple[float, ...]  # mean score of each agent config
    run_ids: list[str | None]  # the benchmark run of each agent config, once started
    finished: list[bool]  # whether each agent config's run ended (it then has an outcome)
    secrets: dict[str, str] = field(default_factory=dict)  # planted in agent environments and kwargs
    shuffle_key: int = 0


def scenario_outcomes(job: SimJob, agent: int, tag: str | None = None) -> list[dict[str, Any]]:
    """The scenario outcomes of one agent config of a job: deterministic for its seed (`tag` stands in
    for the job's slot in scenario run ids: templates put a placeholder there)."""
    tag = f"{job.slot:06d}" if tag is None else tag
    rng = random.Random(job.seed * 1009 + agent)  # noqa: S311 - simulation
    level = job.levels[agent]
    secret = job.secrets.get("message", "")
    out: list[dict[str, Any]] = []
    for number in range(job.n_scenarios):
        draw = rng.random()
        scenario: dict[str, Any] = {
            "scenario_definition_id": f"scd_{job.seed % 997:03d}{number:05d}",
            "scenario_name": f"scenario-{number}",
            "duration_ms": rng.randint(1_000, 600_000),
            "scenario_run_id": f"scr_{tag}{agent}{number:05d}",
        }
        if draw < 0.12:
            scenario["state"] = "FAILED"
            scenario["failure_reason"] = {
                "exception_type": EXCEPTION_TYPES[rng.randrange(len(EXCEPTION_TYPES))],
                "exception_message": f"scenario {number} failed {secret}".strip(),
            }
        elif draw < 0.17:
            scenario["state"] = "TIMEOUT"
            scenario["failure_reason"] = {"exception_type": "TimeoutError", "exception_message": "timed out"}
        elif draw < 0.18:
            scenario["state"] = "CANCELED"
        else:
            scenario["state"] = "COMPLETED"
            scenario["score"] = round(min(1.0, max(0.0, rng.gauss(level, 0.15))), 3)
        out.append(scenario)
    return out


def outcome(job: SimJob, agent: int, tag: str | None = None) -> dict[str, Any]:
    """One `benchmark_outcomes` entry."""
    scenarios = scenario_outcomes(job, agent, tag)
    scores = [s["score"] for s in scenarios if s["state"] == "COMPLETED"]
    name, model = job.agents[agent]
    entry: dict[str, Any] = {
        "agent_name": name,
        "benchmark_run_id": job.run_ids[agent],
        "n_completed": len(scores),
        "n_failed": sum(s["state"] == "FAILED" for s in scenarios),
        "n_timeout": sum(s["state"] == "TIMEOUT" for s in scenarios),
        "scenario_outcomes": scenarios,
        "duration_ms": sum(s["duration_ms"] for s in scenarios) // max(len(scenarios), 1),
    }
    if scores:
        entry["average_score"] = sum(scores) / len(scores)
    if model is not None:
        entry["model_name"] = model
    return entry


def run_score(job: SimJob, agent: int) -> float | None:
    """The run's own score: the sum of scenario scores over the scenario runs, as runs report it."""
    return _summary(job, agent)[1]


def _summary(job: SimJob, agent: int) -> tuple[int, float | None]:
    """(duration_ms, run score) of one agent config's run: cached per variant, since adding a hundred
    thousand jobs of 500 scenarios would otherwise draw a billion scenario outcomes."""
    key = (job.seed, agent, job.levels[agent], job.n_scenarios, job.secrets.get("message", ""))
    found = _SUMMARIES.get(key)
    if found is None:
        scenarios = scenario_outcomes(job, agent)
        duration = sum(s["duration_ms"] for s in scenarios) // max(len(scenarios), 1)
        score = sum(s.get("score") or 0.0 for s in scenarios) / len(scenarios) if scenarios else None
        found = (duration, score)
        if len(_SUMMARIES) >= _MAX_SUMMARIES:
            _SUMMARIES.clear()
        _SUMMARIES[key] = found
    return found


_SUMMARIES: dict[tuple[Any, ...], tuple[int, float | None]] = {}
_MAX_SUMMARIES = 100_000


def _agent_config(job: SimJob, agent: int) -> dict[str, Any]:
    name, model = job.agents[agent]
    config: dict[str, Any] = {"name": name, "type": "job_agent", "timeout_seconds": 3600.0}
    if model is not None:
        config["model_name"] = model
    if job.secrets:
        config["kwargs"] = {"temperature": "0.2", "token": job.secrets.get("kwarg", "")}
        config["agent_environment"] = {
            "environment_variables": {"LLM_ENDPOINT": job.secrets.get("env", "")},
            "secrets": {"LLM_API_KEY": job.secrets.get("secret", "")},
        }
    return config


def render(job: SimJob, tag: str | None = None) -> dict[str, Any]:
    """The BenchmarkJobView of a job, as Runloop serves it."""
    view: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "create_time_ms": job.create_ms,
        "state": job.state,
        "job_spec": {
            "agent_configs": [_agent_config(job, i) for i in range(len(job.agents))],
            "scenario_ids": [],
            "orchestrator_config": {"n_attempts": 1, "n_concurrent_trials": 8},
        },
    }
    if job.benchmark_id is not None:
        view["job_source"] = {"type": "benchmark", "benchmark_id": job.benchmark_id}
    elif job.secrets:
        view["job_source"] = {"type": "harbor", "inline_yaml": f"token: {job.secrets.get('yaml', '')}"}
    else:
        view["job_source"] = {"type": "scenarios", "scenario_ids": ["scd_adhoc"]}
    if job.state in ("failed", "timeout"):
        view["failure_reason"] = f"job ended {job.state} {job.secrets.get('message', '')}".strip()
    view["benchmark_outcomes"] = [outcome(job, i, tag) for i, done in enumerate(job.finished) if done]
    view["in_progress_runs"] = [
        {
            "benchmark_run_id": job.run_ids[i],
            "start_time_ms": job.create_ms,
            "state": "running",
            "agent_config": _agent_config(job, i),
        }
        for i, done in enumerate(job.finished)
        if not done and job.run_ids[i] is not None and job.state not in TERMINAL
    ]
    return view


class JobStore:
    """The jobs of a World, in the World's list order; thread-safe."""

    def __init__(self, world: World, order_of: Any, seed: int = 0) -> None:
        self._world = world
        self._order_of = order_of  # () -> the World's current order
        self._lock = threading.RLock()
        self._rng = random.Random(seed ^ 0x10B5)  # noqa: S311 - simulation
        self._jobs: dict[str, SimJob] = {}
        self._slots: list[int] = []  # slots of live (not deleted) jobs, ascending
        self._by_slot: dict[int, SimJob] = {}
        self._next = 0
        self.raw: dict[int, Any] = {}  # slot -> a verbatim body (bad-data tests)
        self._templates: dict[tuple[Any, ...], list[bytes]] = {}  # bodies of ended jobs by variant, LRU

    def add(
        self,
        *,
        benchmark_id: str | None,
        agents: Sequence[Agent],
        create_ms: int,
        state: str = "completed",
        n_scenarios: int = 5,
        levels: Sequence[float] | None = None,
        started: int | None = None,
        name: str | None = None,
        secrets: dict[str, str] | None = None,
        job_id: str | None = None,
        seed: int | None = None,
    ) -> str:
        """Add a job. Terminal jobs have every agent's run ended; a live job's first `started` agents
        have runs, of which none ended (queued and initializing jobs have none)."""
        if state not in JOB_STATES:
            raise ValueError(f"state must be one of {JOB_STATES}")
        with self._lock:
            slot = self._next
            self._next += 1
            jid = job_id or f"bmj_{(slot * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFFFF:010x}"
            if jid in self._jobs:
                raise ValueError(f"a job with id {jid!r} already exists")
            n = len(agents)
            job = SimJob(
                id=jid,
                slot=slot,
                name=name or f"job-{slot:06d}",
                create_ms=create_ms,
                state=state,
                benchmark_id=benchmark_id,
                agents=tuple(agents),
                n_scenarios=n_scenarios,
                seed=slot if seed is None else seed,
                levels=tuple(levels) if levels is not None else tuple(0.5 for _ in agents),
                run_ids=[None] * n,
                finished=[False] * n,
                secrets=dict(secrets or {}),
                shuffle_key=(self._rng.getrandbits(32) << 32) | slot,
            )
            self._jobs[jid] = job
            self._by_slot[slot] = job
            self._slots.append(slot)
            if state in TERMINAL:
                self._start_runs(job, n)
                for agent in range(n):
                    if state == "cancelled" and agent == n - 1:
                        self._cancel_run(job, agent)  # cancelled before its last run ended
                    else:
                        self._finish_run(job, agent)
            elif state == "running":
                self._start_runs(job, n if started is None else started)
            self._world.touch()
            return jid

    def finish(self, job_id: str, state: str = "completed") -> None:
        """End a live job: every started run ends with its outcome (a cancelled job's unstarted ones
        never run)."""
        if state not in TERMINAL:
            raise ValueError(f"{state!r} is not a terminal job state")
        with self._lock:
            job = self._jobs[job_id]
            if state != "cancelled":
                self._start_runs(job, len(job.agents))
            for agent in range(len(job.agents)):
                if job.run_ids[agent] is not None and not job.finished[agent]:
                    if state == "cancelled":
                        self._cancel_run(job, agent)
                    else:
                        self._finish_run(job, agent)
            job.state = state
            self._world.touch()

    def start(self, job_id: str) -> None:
        """Move a queued job to running, starting the run of every agent config."""
        with self._lock:
            job = self._jobs[job_id]
            job.state = "running"
            self._start_runs(job, len(job.agents))
            self._world.touch()

    def delete(self, job_id: str) -> None:
        """Remove a job (its runs stay, as Runloop keeps runs)."""
        with self._lock:
            job = self._jobs.pop(job_id)
            del self._by_slot[job.slot]
            self._slots.pop(bisect_left(self._slots, job.slot))
            self.raw.pop(job.slot, None)
            self._world.touch()

    def add_raw(self, record: Any, *, job_id: str | None = None) -> None:
        """Serve any JSON value as a job in the listing (bad-data tests); `bytes` are served verbatim, as
        JSON text no dict can hold (a duplicated key, NaN, invalid UTF-8), listed under `job_id`."""
        with self._lock:
            slot = self._next
            self._next += 1
            rid = record.get("id") if isinstance(record, dict) else job_id
            job = SimJob(
                id=rid if isinstance(rid, str) else f"raw_{slot}",
                slot=slot,
                name="raw",
                create_ms=0,
                state="completed",
                benchmark_id=None,
                agents=(),
                n_scenarios=0,
                seed=slot,
                levels=(),
                run_ids=[],
                finished=[],
                shuffle_key=(self._rng.getrandbits(32) << 32) | slot,
            )
            self._jobs.setdefault(job.id, job)
            self._by_slot[slot] = job
            self._slots.append(slot)
            self.raw[slot] = record if isinstance(record, bytes) else json.loads(json.dumps(record))
            self._world.touch()

    def views(self) -> list[dict[str, Any]]:
        """Every job's view, in list order (for oracles in tests; a verbatim body as its bytes)."""
        with self._lock:
            return [self._view(slot) for slot in self._ordered()]

    def count(self) -> int:
        """Jobs listed now."""
        with self._lock:
            return len(self._slots)

    def get(self, job_id: str) -> bytes | None:
        """`GET /v1/benchmark_jobs/{id}`."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.slot in self.raw:
                return None
            return self._body(job.slot)

    def list_page(self, *, limit: int, starting_after: str | None, include_total_count: bool) -> bytes:
        """`GET /v1/benchmark_jobs`: one page after the cursor job, in the World's order."""
        if not 1 <= limit <= MAX_LIMIT:
            raise SimulatedApiError(400, f"limit must be between 1 and {MAX_LIMIT}")
        with self._lock:
            ordered = self._ordered()
            pos = 0
            if starting_after is not None:
                job = self._jobs.get(starting_after)
                if job is None or job.slot not in self._by_slot:
                    raise SimulatedApiError(
                        400, f"starting_after: no benchmark job with id {starting_after!r}"
                    )
                pos = ordered.index(job.slot) + 1 if self._order_of() == "shuffled" else self._after(job.slot)
            page = ordered[pos : pos + limit]
            has_more = pos + limit < len(ordered)
            total = len(ordered) if include_total_count else None
            # One page rendered at a time: views are heavy, and a page is all the memory it takes.
            body = b",".join([self._body(slot) for slot in page])
        tail = f'],"has_more":{"true" if has_more else "false"},"total_count":{"null" if total is None else total}}}'
        return b"".join((b'{"jobs":[', body, tail.encode()))

    def _after(self, slot: int) -> int:
        if self._order_of() == "newest_first":
            return len(self._slots) - bisect_left(self._slots, slot)
        return bisect_right(self._slots, slot)

    def _ordered(self) -> list[int]:
        order = self._order_of()
        if order == "newest_first":
            return self._slots[::-1]
        if order == "oldest_first":
            return list(self._slots)
        return sorted(self._slots, key=lambda slot: self._by_slot[slot].shuffle_key)

    def _body(self, slot: int) -> bytes:
        """The JSON of one job. An ended job never changes, so its body is the template of its variant
        (everything but ids, name and time) with those filled in: serving 100,000 heavy jobs then costs
        joins of bytes, not building and dumping millions of dicts."""
        job = self._by_slot.get(slot)
        if isinstance(self.raw.get(slot), bytes):
            return bytes(self.raw[slot])
        if job is None or slot in self.raw or job.state not in TERMINAL:
            return json.dumps(self._view(slot), separators=(",", ":")).encode()
        key = (
            job.seed,
            job.n_scenarios,
            job.agents,
            job.levels,
            job.state,
            job.benchmark_id,
            tuple(job.finished),
            tuple(run is None for run in job.run_ids),
            tuple(sorted(job.secrets.items())),
        )
        parts = self._templates.pop(key, None)
        if parts is None:
            stub = replace(
                job,
                id=_ID,
                name=_NAME,
                create_ms=_CREATE_MS,
                run_ids=[None if run is None else f"{_RUN}{i}@" for i, run in enumerate(job.run_ids)],
            )
            text = json.dumps(render(stub, tag=_SLOT), separators=(",", ":"))
            parts = [part.encode() for part in _HOLES.split(text)]  # odd items are placeholders
            if len(self._templates) >= _MAX_TEMPLATES:
                self._templates.pop(next(iter(self._templates)))
        self._templates[key] = parts  # most recently used last
        values = {
            _SLOT.encode(): f"{job.slot:06d}".encode(),
            _ID.encode(): _json_str(job.id).encode(),
            _NAME.encode(): _json_str(job.name).encode(),
            str(_CREATE_MS).encode(): str(job.create_ms).encode(),
        }
        for i, run in enumerate(job.run_ids):
            if run is not None:
                values[f"{_RUN}{i}@".encode()] = _json_str(run).encode()
        out = parts.copy()
        out[1::2] = [values[hole] for hole in parts[1::2]]
        return b"".join(out)

    def _view(self, slot: int) -> Any:
        if slot in self.raw:
            return self.raw[slot]
        job = self._by_slot.get(slot)
        return None if job is None else render(job)

    def _start_runs(self, job: SimJob, n: int) -> None:
        for agent in range(n):
            if job.run_ids[agent] is None:
                job.run_ids[agent] = self._world.add_run(
                    benchmark_id=None, state="running", start_ms=job.create_ms, name=f"{job.name}-{agent}"
                )

    def _cancel_run(self, job: SimJob, agent: int) -> None:
        run_id = job.run_ids[agent]
        if run_id is not None:
            with contextlib.suppress(KeyError):  # deleted behind our back (tests do)
                self._world.finish_run(run_id, "canceled", 1_000)

    def _finish_run(self, job: SimJob, agent: int) -> None:
        run_id = job.run_ids[agent]
        if run_id is None:
            return
        job.finished[agent] = True
        duration = _summary(job, agent)[0]
        with contextlib.suppress(KeyError):  # the run was deleted behind our back (tests do)
            self._world.finish_run(run_id, "completed", max(int(duration), 1), run_score(job, agent))
