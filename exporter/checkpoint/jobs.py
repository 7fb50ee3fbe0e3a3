"""The jobs' part of a checkpoint: totals of ended jobs (with each agent and model's recent scores), the live
jobs reduced to the fields the figures use, when each is read again, and the caps' admitted values.

A live job keeps its state, creation time, benchmark, and per outcome its agent and model, benchmark-run
id, counts, score and failures by exception type. Agent and model names and exception types are kept
only as the labels show them: a value the cap did not admit is written `__other__`, as it is exported.
Job names, scenario names, agent environments, kwargs and failure messages are never decoded by the
exporter, so they cannot be here. Decoding is strict and whole, as for runs.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

from exporter.checkpoint import shape as s
from exporter.metrics.agents import AgentCaps, AgentKey, AgentTotals, JobsTotals
from exporter.metrics.aggregate import SCORE_SCALE, Histogram
from exporter.metrics.labels import OTHER
from exporter.metrics.recent import HISTORY, RecentScores
from exporter.runloop.jobs import SCENARIO_STATES, TERMINAL_JOB_STATES, Job, Outcome
from exporter.sync.jobpages import HeldJobs, JobsLedger
from exporter.sync.jobs import JobsSync
from exporter.sync.recheck import Recheck


@dataclass
class JobsCheckpoint:
    """What the jobs' part keeps, and the sync it goes back to."""

    sync: JobsSync
    score_buckets: tuple[float, ...]

    def save(self) -> dict[str, Any] | None:
        """The part as JSON values, or None unless the last sync found its ledger up to date."""
        held = self.sync.held()
        if held is None:
            return None
        caps = self.sync.caps
        ledger = held.ledger
        pairs, types = caps.admitted()
        return {
            "listed": ledger.listed,
            "counted": ledger.counted,
            "head": ledger.head,
            "tail": ledger.tail,
            "top_bytes": ledger.top_bytes,
            "since_full_s": held.since_full_s,
            "totals": _totals_doc(ledger.totals),
            "live": [_live_doc(job, ledger, held.now, caps) for job in ledger.live.values()],
            "caps": {
                "pairs": [[bid, sorted([a, m] for a, m in values)] for bid, values in pairs.items()],
                "types": sorted(types),
            },
        }

    def restore(self, body: Any, age_s: float) -> None:
        """Decode the whole part, then hand the sync its ledger; `CorruptError` before anything changes."""
        doc = s.obj(body, "jobs")
        now = self.sync.now()
        ledger = JobsLedger(
            self._totals(s.field(doc, "totals", "jobs")),
            head=s.maybe_text(doc.get("head"), "head"),
            tail=s.maybe_text(doc.get("tail"), "tail"),
            listed=s.count(s.field(doc, "listed", "jobs"), "listed"),
            counted=s.flag(s.field(doc, "counted", "jobs"), "counted"),
            top_bytes=max(s.number(doc.get("top_bytes", 0.0), "top_bytes"), 0.0),
        )
        for entry in s.items(s.field(doc, "live", "jobs"), "live"):
            job, depth, recheck = _live(entry, now - age_s)
            if job.id in ledger.live:
                raise s.CorruptError("a live job twice")
            ledger.live[job.id] = job
            if depth is not None:
                ledger.depth[job.id] = depth
            if recheck is not None:
                ledger.rechecks[job.id] = recheck
        if not ledger.counted or ledger.listed < ledger.totals.jobs + len(ledger.live):
            raise s.CorruptError("the ledger does not add up")
        caps_doc = s.obj(s.field(doc, "caps", "jobs"), "caps")
        pairs = {
            s.maybe_text(bid, "caps benchmark"): [_pair(p) for p in s.items(values, "pairs")]
            for bid, values in (
                s.pair(e, "caps") for e in s.items(s.field(caps_doc, "pairs", "caps"), "pairs")
            )
        }
        types = [s.text(t, "type") for t in s.items(s.field(caps_doc, "types", "caps"), "types")]
        try:
            self.sync.caps.restore(pairs, types)
        except ValueError as exc:
            raise s.CorruptError(f"caps: {exc}") from None
        since = max(s.number(s.field(doc, "since_full_s", "jobs"), "since_full_s"), 0.0)
        self.sync.resume(HeldJobs(ledger, since + age_s, now))

    def _totals(self, value: Any) -> JobsTotals:
        doc = s.obj(value, "totals")
        totals = JobsTotals(self.score_buckets)
        for entry in s.items(s.field(doc, "states", "totals"), "states"):
            bid, states = s.pair(entry, "states")
            totals.states[s.maybe_text(bid, "benchmark")] = s.counts(states, "states")
        totals.jobs = s.count(s.field(doc, "jobs", "totals"), "jobs")
        if totals.jobs != sum(sum(states.values()) for states in totals.states.values()):
            raise s.CorruptError("jobs do not add up")
        for entry in s.items(s.field(doc, "groups", "totals"), "groups"):
            group = s.obj(entry, "group")
            bid, agent, model = s.items(s.field(group, "key", "group"), "group key")
            key = AgentKey(
                s.maybe_text(bid, "benchmark"), s.maybe_text(agent, "agent"), s.maybe_text(model, "model")
            )
            if key in totals.groups:
                raise s.CorruptError("a group twice")
            buckets, units = s.pair(s.field(group, "scores", "group"), "scores")
            counts = [s.count(n, "bucket") for n in s.items(buckets, "buckets")]
            if len(counts) != len(self.score_buckets) + 1:
                raise s.CorruptError("a histogram of other buckets")
            scenarios = s.counts(s.field(group, "scenarios", "group"), "scenarios")
            if set(scenarios) != set(SCENARIO_STATES):
                raise s.CorruptError("scenarios: not one per state")
            last = group.get("last")
            times, scores = s.pair(s.field(group, "recent", "group"), "recent")
            recent = RecentScores(
                array("q", [s.integer(t, "time") for t in s.items(times, "times")]),
                array("d", [s.score(v, "score") for v in s.items(scores, "scores")]),
            )
            if (
                len(recent.times) != len(recent.scores)
                or len(recent) > HISTORY
                or list(recent.times) != sorted(recent.times)
            ):
                raise s.CorruptError("recent scores out of shape")
            totals.groups[key] = AgentTotals(
                Histogram(self.score_buckets, SCORE_SCALE, counts, s.count(units, "sum")),
                runs=s.count(s.field(group, "runs", "group"), "runs"),
                in_progress=s.count(group.get("in_progress", 0), "in_progress"),
                scenarios=scenarios,
                failures=s.counts(s.field(group, "failures", "group"), "failures"),
                last=None if last is None else _last(last),
                last_score=None if group.get("last_score") is None else s.score(group["last_score"], "last"),
                recent=recent,
            )
        return totals


def _totals_doc(totals: JobsTotals) -> dict[str, Any]:
    return {
        "jobs": totals.jobs,
        "states": [[bid, dict(states)] for bid, states in totals.states.items()],
        "groups": [
            {
                "key": [key.benchmark_id, key.agent_name, key.model_name],
                "scores": [list(group.scores.counts), group.scores.total_units],
                "runs": group.runs,
                "in_progress": group.in_progress,
                "scenarios": dict(group.scenarios),
                "failures": dict(group.failures),
                "last": None if group.last is None else list(group.last),
                "last_score": group.last_score,
                "recent": [list(group.recent.times), list(group.recent.scores)],
            }
            for key, group in totals.groups.items()
        ],
    }


def _live_doc(job: Job, ledger: JobsLedger, now: float, caps: AgentCaps) -> dict[str, Any]:
    """A live job as the labels show it: names the caps did not admit are written `__other__`."""
    recheck = ledger.rechecks.get(job.id)

    def pair(agent: str | None, model: str | None) -> list[str | None]:
        if agent is None:
            return [None, None]
        return [agent, model] if caps.holds(job.benchmark_id, agent, model) else [OTHER, OTHER]

    def failures(found: tuple[tuple[str, int], ...]) -> list[list[Any]]:
        merged: dict[str, int] = {}
        for kind, n in found:
            label = kind if caps.holds_type(kind) else OTHER
            merged[label] = merged.get(label, 0) + n
        return [[kind, n] for kind, n in sorted(merged.items())]

    return {
        "id": job.id,
        "state": job.state,
        "create_ms": job.create_time_ms,
        "benchmark_id": job.benchmark_id,
        "outcomes": [
            [
                *pair(o.agent_name, o.model_name),
                o.run_id,
                o.n_completed,
                o.n_failed,
                o.n_timeout,
                o.average_score,
                failures(o.failures),
            ]
            for o in job.outcomes
        ],
        "in_progress": [pair(agent, model) for agent, model in job.in_progress],
        "depth": ledger.depth.get(job.id),
        "recheck": None if recheck is None else [recheck.period_s, recheck.due - now],
    }


def _live(value: Any, then: float) -> tuple[Job, int | None, Recheck | None]:
    """A live job, where it was listed and when it is read again (`then`: the clock when it was written)."""
    doc = s.obj(value, "live job")
    outcomes = []
    for entry in s.items(s.field(doc, "outcomes", "live job"), "outcomes"):
        agent, model, run_id, done, failed, timeout, average, kinds = s.items(entry, "outcome")
        if not isinstance(run_id, str):
            raise s.CorruptError("outcome: run id")
        outcomes.append(
            Outcome(
                s.text(agent, "agent"),
                s.maybe_text(model, "model"),
                run_id,
                s.count(done, "n_completed"),
                s.count(failed, "n_failed"),
                s.count(timeout, "n_timeout"),
                None if average is None else s.score(average, "average_score"),
                tuple(
                    (s.text(k, "type"), s.count(n, "failures"))
                    for k, n in (s.pair(f, "failure") for f in s.items(kinds, "failures"))
                ),
            )
        )
    state = s.text(s.field(doc, "state", "live job"), "state")
    if state in TERMINAL_JOB_STATES:
        raise s.CorruptError("a live job that ended")
    job = Job(
        id=s.text(s.field(doc, "id", "live job"), "job id"),
        state=state,
        create_time_ms=s.integer(s.field(doc, "create_ms", "live job"), "create_ms"),
        benchmark_id=s.maybe_text(doc.get("benchmark_id"), "benchmark"),
        outcomes=tuple(outcomes),
        in_progress=tuple(_maybe_pair(p) for p in s.items(doc.get("in_progress", []), "in_progress")),
    )
    depth = doc.get("depth")
    recheck = doc.get("recheck")
    if recheck is not None:
        period, due_in = s.pair(recheck, "recheck")
        recheck = Recheck(max(s.number(period, "period"), 0.0), then + s.number(due_in, "due"))
    return job, None if depth is None else s.count(depth, "depth"), recheck


def _pair(value: Any) -> tuple[str, str | None]:
    agent, model = s.pair(value, "pair")
    return s.text(agent, "agent"), s.maybe_text(model, "model")


def _maybe_pair(value: Any) -> tuple[str | None, str | None]:
    agent, model = s.pair(value, "pair")
    return s.maybe_text(agent, "agent"), s.maybe_text(model, "model")


def _last(value: Any) -> tuple[int, str, str]:
    time_ms, job_id, run_id = s.items(value, "last")
    if not isinstance(run_id, str):
        raise s.CorruptError("last: run id")
    return s.integer(time_ms, "last time"), s.text(job_id, "last job"), run_id
