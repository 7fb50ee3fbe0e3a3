"""The agents-and-models part of the status page: jobs by state, the agents and models below their mean,
and one table of agents and models per benchmark, worst first.

"Below their mean" is RunloopAgentScoreRegression's test (exporter.metrics.recent): the latest score under
80% of the mean of the outcomes of the last 7 days, with at least 3 of them. The page's mean is computed
from the newest outcomes the exporter holds, by their job's creation time; Prometheus' from what it saw
added in its 7-day window, so the page may flag a row before the alert can fire (after a fresh start) and
its 5 minutes `for` do not apply.
"""

from __future__ import annotations

import html
import json
import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence

from exporter.http import svg
from exporter.http.timefmt import NONE, when
from exporter.metrics.agents import AgentView, JobsSnapshot
from exporter.metrics.recent import HISTORY, REGRESSION_MARGIN
from exporter.runloop.jobs import JOB_STATES

MAX_PAIRS = 10
"""Agent and model rows shown per benchmark; the rest are counted in a line that names their series."""
MAX_FLAGGED = 20
"""Agents and models listed under "below their mean" across benchmarks."""
_BAD_JOB_STATES = frozenset({"failed", "timeout"})
OFF = (
    "Benchmark jobs are off (RUNLOOP_EXPORTER_JOBS=false), so there are no agents and models to show: "
    "runs carry no agent or model."
)


class AgentIndex:
    """The agent rows of a jobs snapshot by benchmark, without grouping them all on every render: a
    snapshot's rows are sorted by benchmark (then agent, model), so a benchmark's rows are found by
    bisection, and the few shown are all that is ever sliced out of 50,000."""

    def __init__(self, jobs: JobsSnapshot | None) -> None:
        self._rows: Sequence[AgentView] = () if jobs is None else jobs.groups
        self.benchmarks: frozenset[str | None] = frozenset() if jobs is None else jobs.benchmarks
        self.regressed: Sequence[AgentView] = () if jobs is None else jobs.regressed

    def of(self, benchmark_id: str | None) -> Sequence[AgentView]:
        """The rows of one benchmark, in the snapshot's order."""
        if benchmark_id not in self.benchmarks:
            return ()
        key = benchmark_id or ""
        low = bisect_left(self._rows, key, key=_sort_key)
        return self._rows[low : bisect_right(self._rows, key, lo=low, key=_sort_key)]


def _sort_key(view: AgentView) -> str:
    return view.key.benchmark_id or ""  # as exporter.metrics.agents sorts them


def _ratio(view: AgentView) -> float:
    mean = view.window.mean
    if view.last_score is None or not mean:
        return math.inf
    return view.last_score / mean


def _worst_first(view: AgentView) -> tuple[bool, float, str, str]:
    key = view.key
    return (not view.regressed, _ratio(view), key.agent_name or "", key.model_name or "")


def jobs_header(snapshot_jobs: JobsSnapshot | None, note: str | None) -> str:
    """Jobs by state, or the one line that says why there are none."""
    if snapshot_jobs is None:
        return f'<p class="empty">{html.escape(note or OFF)}</p>'
    states = snapshot_jobs.states
    order = [*JOB_STATES, *sorted(s for s in states if s not in JOB_STATES)]
    cells = "".join(
        f'<span class="state{" bad-text" if state in _BAD_JOB_STATES and states.get(state) else ""}">'
        f"{html.escape(state)} <b>{states.get(state, 0)}</b></span>"
        for state in order
    )
    stale = f'<p class="error">{html.escape(note)}</p>' if note else ""
    return f'<p class="jobs">Benchmark jobs by state: {cells}</p>{stale}'


def flagged(
    agents: AgentIndex,
    labels: Mapping[str | None, str],
    anchors: Mapping[str | None, str],
) -> str:
    """The agents and models below their mean across benchmarks, worst first, linked to their benchmark."""
    rows = sorted(
        agents.regressed,
        key=lambda v: (_ratio(v), v.key.benchmark_id or "", v.key.agent_name or "", v.key.model_name or ""),
    )
    if not rows:
        return (
            '<p class="meta">No agent and model is below its 7-day mean by the alert\'s margin '
            f"({1 - REGRESSION_MARGIN:.0%}).</p>"
        )
    items = []
    for view in rows[:MAX_FLAGGED]:
        bid = view.key.benchmark_id
        where = html.escape(labels.get(bid) or bid or "(jobs without a benchmark)")
        link = anchors.get(bid)
        if link is not None:
            where = f'<a href="#{link}">{where}</a>'
        items.append(
            f"<li>{_who(view)} on {where}: <b>{_score(view.last_score)}</b> against a mean of "
            f"{_score(view.window.mean)} ({_change(view)})</li>"
        )
    more = len(rows) - MAX_FLAGGED
    tail = f'<p class="more">{more} more below their mean are not listed.</p>' if more > 0 else ""
    return (
        f'<p class="flagged-head"><span class="pill bad">{len(rows)} below mean</span> as '
        "RunloopAgentScoreRegression tests it (latest score under "
        f"{REGRESSION_MARGIN:.0%} of the mean of the last 7 days, at least 3 outcomes):</p>"
        f'<ul class="flagged">{"".join(items)}</ul>{tail}'
    )


def table(views: Sequence[AgentView], benchmark_id: str | None, now: float) -> str:
    """One benchmark's agents and models: at most MAX_PAIRS rows, worst first (below the mean first,
    then by the latest score against the mean, then by name)."""
    if not views:
        return '<p class="muted">No benchmark job has run on it.</p>'
    body = "\n".join(_row(view, now) for view in sorted(views, key=_worst_first)[:MAX_PAIRS])
    more = len(views) - MAX_PAIRS
    tail = ""
    if more > 0:
        selector = "" if benchmark_id is None else f"{{benchmark_id={json.dumps(benchmark_id)}}}"
        tail = (
            f'<p class="more">{more} more agent and model pairs are left out here; /metrics has every one: '
            f"<code>{html.escape(f'runloop_agent_last_benchmark_run_score{selector}')}</code> and the other "
            "<code>runloop_agent_*</code> series.</p>"
        )
    return (
        '<table class="agents">\n<thead><tr><th>Agent</th><th>Model</th><th>Latest score</th>'
        "<th>7-day mean</th><th>Last scores</th><th>Runs</th><th>In progress</th>"
        '<th>Scenarios <span class="id">completed / failed / timed out</span></th>'
        '<th>Most frequent <span class="id">exception type</span></th></tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table>{tail}"
    )


def _row(view: AgentView, now: float) -> str:
    e = html.escape
    flag = ' <span class="pill bad">below mean</span>' if view.regressed else ""
    model = NONE if view.key.model_name is None else e(view.key.model_name)
    latest = NONE
    if view.last_score is not None:
        change = f' <span class="{"bad-text" if view.regressed else "muted"}">{_change(view)}</span>'
        latest = f"{_score(view.last_score)}{change if view.window.mean else ''}"
        latest += f' <span class="id">{when(view.last_time_s, now)}</span>'
    window = view.window
    mean = NONE
    if window.mean is not None:
        of = (
            f"the newest {HISTORY}"
            if not window.complete
            else f"{window.count} outcome" + "s" * (window.count != 1)
        )
        mean = f'{_score(window.mean)} <span class="id">{of}</span>'
    spark = svg.sparkline(
        view.recent, mean=window.mean, floor=None if window.mean is None else window.mean * REGRESSION_MARGIN
    )
    scenarios = view.scenarios
    counts = [scenarios.get(state, 0) for state in ("completed", "failed", "timeout")]
    bar = svg.stacked_bar(list(zip(("good", "bad", "warn"), counts, strict=True)))
    return (
        f"<tr{' class=flagged' if view.regressed else ''}><td>{_who(view, name_only=True)}{flag}</td>"
        f"<td>{model}</td><td class=num>{latest}</td><td class=num>{mean}</td><td>{spark or NONE}</td>"
        f"<td class=num>{view.runs}</td><td class=num>{view.in_progress}</td>"
        f"<td class=num>{' / '.join(map(str, counts))}{bar}</td><td>{_exception(view.failures)}</td></tr>"
    )


def _who(view: AgentView, *, name_only: bool = False) -> str:
    """The agent (in a table, a cell of its own), or in a sentence the agent with its model."""
    key = view.key
    if key.agent_name is None:
        return '<span class="muted">(no agent config)</span>'
    if name_only:
        return f'<span class="name">{html.escape(key.agent_name)}</span>'
    model = "" if key.model_name is None else f" with {html.escape(key.model_name)}"
    return f"<b>{html.escape(key.agent_name)}</b>{model}"


def _score(score: float | None) -> str:
    return NONE if score is None else f"{score:.3f}"


def _change(view: AgentView) -> str:
    """The latest score against the mean, in percent (-34% is a third below)."""
    ratio = _ratio(view)
    if math.isinf(ratio):
        return NONE
    change = f"{ratio - 1:+.0%}"
    return "\u00b10%" if change in ("+0%", "-0%") else change.replace("-", "\u2212")


def _exception(failures: Mapping[str, int]) -> str:
    if not failures:
        return NONE
    kind, count = min(failures.items(), key=lambda item: (-item[1], item[0]))
    return f"<code>{html.escape(kind)}</code> <span class=muted>&times;{count}</span>"
