"""The status page below the benchmark table: one section per benchmark, in the table's trouble-first
order, with its agents and models and its last failed runs, and the bounds that keep the page small.

Each section is the anchor `#benchmark-<id>` the alerts link to (`#no-benchmark` for runs and jobs without
one); a benchmark without a section has its table row as that anchor instead. Only what the last sync
already holds is shown: the failed runs are the few the run sync keeps per benchmark (`GroupTotals.
last_failed`), never read for the page. Sizes are bounded (MAX_TABLE_ROWS, MAX_SECTIONS,
status_agents.MAX_PAIRS), each cut said in a line that names the /metrics series holding the rest.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from exporter.http import status_agents
from exporter.http.timefmt import NONE, duration, when
from exporter.metrics.aggregate import FailedRun, Snapshot

if TYPE_CHECKING:  # status.py renders the table and calls this module for what is below it
    from exporter.http.status import Row

MAX_TABLE_ROWS = 500
"""Benchmark rows in the table; the rest are counted in a line."""
MAX_SECTIONS = 25
"""Benchmarks with a section of their own (those with failed runs or agents, first in the table's order)."""
ANCHOR_PREFIX = "benchmark-"
NO_BENCHMARK = "no-benchmark"


def anchor(benchmark_id: str | None) -> str:
    """The element id of a benchmark on the page (unescaped: escape it for an attribute)."""
    return NO_BENCHMARK if benchmark_id is None else ANCHOR_PREFIX + benchmark_id


def fragment(benchmark_id: str | None) -> str:
    """The `href` fragment that finds `anchor(benchmark_id)`: percent-encoded, so safe in an attribute
    as is (a browser decodes a fragment before it looks for the id)."""
    return quote(anchor(benchmark_id), safe="")


def left_out_table(count: int) -> str:
    """The line under the table when rows are left out."""
    if count <= 0:
        return ""
    return (
        f'<p class="more">{count} more benchmarks are left out here (the table shows the first '
        f"{MAX_TABLE_ROWS}); /metrics has every one: <code>runloop_benchmark_runs</code>, "
        "<code>runloop_benchmark_run_score</code> and the other <code>runloop_benchmark_*</code> series.</p>"
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    benchmark_id: str | None
    label: str
    row: Row | None  # None for a benchmark with jobs but no runs


class Sections:
    """The sections of one snapshot: which benchmarks have one (`links`), and their HTML."""

    def __init__(self, snapshot: Snapshot, ordered: Sequence[Row], now: float) -> None:
        self._snapshot = snapshot
        self._now = now
        self._agents = status_agents.AgentIndex(snapshot.jobs)
        entries = [_Entry(row.benchmark_id, row.label(), row) for row in ordered]
        with_rows = {row.benchmark_id for row in ordered}
        entries += [
            _Entry(bid, bid or "(jobs without a benchmark)", None)
            for bid in sorted(self._agents.benchmarks - with_rows, key=lambda b: b or "")
        ]
        agents = self._agents.benchmarks
        candidates = [e for e in entries if e.benchmark_id in agents or (e.row and e.row.last_failed)]
        self._shown = candidates[:MAX_SECTIONS]
        self._left_out = len(candidates) - len(self._shown)
        self.links = {entry.benchmark_id: fragment(entry.benchmark_id) for entry in self._shown}
        self._labels = {entry.benchmark_id: entry.label for entry in entries}
        # Where a benchmark is on the page: its section, else its row in the table, else nowhere.
        in_table = (row.benchmark_id for row in ordered[:MAX_TABLE_ROWS])
        self._anchors = {**{bid: fragment(bid) for bid in in_table}, **self.links}

    def html(self) -> str:
        """The jobs by state, the agents and models below their mean, then one section per benchmark."""
        snapshot = self._snapshot
        parts = ['<h2 id="agents">Agents and models, failed runs</h2>']
        parts.append(status_agents.jobs_header(snapshot.jobs, snapshot.jobs_note))
        if snapshot.jobs is not None:
            parts.append(status_agents.flagged(self._agents, self._labels, self._anchors))
        if not self._shown:
            parts.append('<p class="empty">No benchmark has failed runs or agents and models yet.</p>')
            return "\n".join(parts)
        parts.append(
            '<p class="meta">Each benchmark with failed runs or agents and models, in the order of the '
            "table. Agents and models worst first: below their mean first (flagged as "
            "RunloopAgentScoreRegression would be), then by their latest score against their mean.</p>"
        )
        parts.extend(self._section(entry) for entry in self._shown)
        if self._left_out > 0:
            parts.append(
                f'<p class="more">{self._left_out} more benchmarks with failed runs or agents and models are '
                f"left out here (the first {MAX_SECTIONS} are shown); /metrics has their figures: "
                "<code>runloop_agent_last_benchmark_run_score</code> and the other <code>runloop_agent_*</code>"
                ' series, and <code>runloop_benchmark_runs{state="failed"}</code> (failed runs are counted '
                "there; their ids are in Runloop).</p>"
            )
        return "\n".join(parts)

    def _section(self, entry: _Entry) -> str:
        e = html.escape
        title = f'<span class="name">{e(entry.label)}</span>'
        if entry.row is not None and entry.row.name and entry.benchmark_id:
            title += f' <span class="id">{e(entry.benchmark_id)}</span>'
        agents = self._agents.of(entry.benchmark_id)
        jobs_on = self._snapshot.jobs is not None
        agents_html = status_agents.table(agents, entry.benchmark_id, self._now) if jobs_on else ""
        failed = _failed_runs(entry.row.last_failed if entry.row else (), self._now)
        return (
            f'<section class="bench" id="{e(anchor(entry.benchmark_id))}"><h3>{title}</h3>'
            f"{_summary(entry.row)}{agents_html}<h4>Failed last</h4>{failed}</section>"
        )


def _summary(row: Row | None) -> str:
    if row is None:
        return ""
    share = row.failure_share
    text = f"{row.failed} failed of {row.completed + row.failed} finished"
    if share is not None:
        text += f" ({share:.0%})"
    return f'<p class="meta">{text}, {row.running} running.</p>'


def _failed_runs(runs: Sequence[FailedRun], now: float) -> str:
    if not runs:
        return '<p class="muted">No failed run.</p>'
    lines = "".join(
        f"<tr><td><code>{html.escape(run.id)}</code></td>"
        f"<td class=num>{NONE if run.end_ms is None else when(run.end_ms / 1000, now)}</td>"
        f"<td class=num>{NONE if run.duration_ms is None else duration(run.duration_ms / 1000)}</td></tr>"
        for run in runs
    )
    return (
        '<table class="failed"><thead><tr><th>Run</th><th>Ended</th><th>Ran for</th></tr></thead>'
        f"<tbody>{lines}</tbody></table>"
    )


STYLE = """
.bar { display: block; height: 5px; margin-top: 3px; background: var(--line); border-radius: 3px;
  overflow: hidden; min-width: 48px; }
.bar i { display: block; height: 100%; float: left; background: var(--muted); }
.bar i.good { background: var(--good); } .bar i.warn { background: #d4a72c; }
.bar i.bad { background: var(--bad); }
svg.hist rect { fill: #5b7bd5; } svg.hist line { stroke: var(--line); }
svg.spark polyline { fill: none; stroke: #0b57d0; stroke-width: 1.5; }
svg.spark circle { fill: #0b57d0; }
svg.spark line.mean { stroke: var(--muted); stroke-dasharray: 2 2; stroke-width: 1; }
svg.spark line.floor { stroke: var(--bad); stroke-dasharray: 2 2; stroke-width: 1; opacity: .6; }
tr.flagged svg.spark polyline, tr.flagged svg.spark circle { stroke: var(--bad); fill: var(--bad); }
tr.flagged svg.spark polyline { fill: none; }
tr.flagged { background: #fff5f5 !important; }
.jobs .state { display: inline-block; margin: 0 10px 0 0; }
.more { color: var(--muted); font-style: italic; }
ul.flagged { margin: 0 0 8px; padding-left: 18px; }
section.bench { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 16px;
  margin: 12px 0; overflow-x: auto; }
section.bench h3 { font-size: 15px; margin: 0 0 4px; display: flex; gap: 10px; align-items: baseline; }
section.bench h4 { font-size: 13px; margin: 12px 0 4px; color: var(--muted); }
section.bench table { border: 0; }
section.bench :target, section.bench:target { outline: 2px solid #0b57d0; }
table.failed { width: auto; }
table.agents td { white-space: nowrap; }
table.agents th { white-space: normal; vertical-align: bottom; }
table.agents th:nth-child(2), table.agents th:last-child { text-align: left; }
table.agents .name { overflow-wrap: normal; }
table.agents td:last-child { white-space: normal; overflow-wrap: anywhere; }
.pill { white-space: nowrap; }
tr:target { outline: 2px solid #0b57d0; }
"""
