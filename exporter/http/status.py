"""The status page at `/`: what a person wants to see first, rendered once per sync, never per request.

Pure functions from a snapshot and the last sync's outcome to HTML bytes: plain server-side HTML and
CSS (pictures as inline SVG), no JavaScript, nothing fetched from elsewhere, every string that comes from
Runloop or from the user escaped. `exporter.publisher.StatePublisher` renders the benchmark table, with the sections by
benchmark below it (exporter.http.status_details), when a sync publishes a snapshot, and the whole page
(which is small around them) after every sync; the server only copies the bytes.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from exporter import __version__
from exporter.http import status_details, svg
from exporter.http.parts import PartView, render_parts
from exporter.http.timefmt import NONE as _NONE
from exporter.http.timefmt import age as _age
from exporter.http.timefmt import utc as _utc
from exporter.http.timefmt import when as _when
from exporter.metrics.aggregate import FailedRun, GroupView, Snapshot, newest_failed
from exporter.runloop.models import KNOWN_STATES, RUNNING

STUCK_AFTER_S = 6 * 3600
"""A run running longer than this is flagged, as the RunloopBenchmarkRunStuck alert does."""
HIGH_FAILURE_SHARE = 0.5
"""A failure share above this is shown as critical, as the RunloopBenchmarkFailureRatioHigh alert does."""
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'none'"
"""Sent with the page: no script runs and nothing is fetched, even if escaping were ever wrong."""


@dataclass(frozen=True, slots=True)
class LastSync:
    """How the last sync went. `error` is one line for an operator, with secrets already removed."""

    ended_at: float  # wall clock, seconds since the epoch
    duration_s: float
    requests: int
    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One benchmark's line of the table (its groups of extra labels added together)."""

    benchmark_id: str | None
    name: str | None
    running: int
    completed: int
    failed: int
    canceled: int
    other: int
    last_score: float | None
    last_completed_s: float | None
    oldest_running_s: float | None
    score_bounds: tuple[float, ...] = ()
    score_counts: tuple[int, ...] = ()  # completed runs per score bucket, the last one past the bounds
    last_failed: tuple[FailedRun, ...] = ()  # newest first

    @property
    def failure_share(self) -> float | None:
        """Failed among completed and failed runs (canceled ones do not count, as in the alerts)."""
        decided = self.completed + self.failed
        return self.failed / decided if decided else None

    def stuck(self, now: float) -> bool:
        """Whether its oldest running run has run for longer than STUCK_AFTER_S."""
        return self.oldest_running_s is not None and now - self.oldest_running_s > STUCK_AFTER_S

    def label(self) -> str:
        """What the row is called: the name, else the id."""
        return self.name or self.benchmark_id or "(runs without a benchmark)"


@dataclass(frozen=True, slots=True)
class Table:
    """The benchmark table of one snapshot, rendered, with what the page says about it."""

    html: str
    as_of: float
    benchmarks: int
    runs: int


def rows(snapshot: Snapshot) -> list[Row]:
    """One row per benchmark (and one for runs without a benchmark), unsorted."""
    by_benchmark: dict[str | None, list[GroupView]] = {}
    for group in snapshot.groups:
        by_benchmark.setdefault(group.key.benchmark_id, []).append(group)
    return [
        _row(bid, snapshot.benchmark_names.get(bid or ""), groups) for bid, groups in by_benchmark.items()
    ]


def _row(benchmark_id: str | None, name: str | None, groups: list[GroupView]) -> Row:
    counts: dict[str, int] = {}
    for group in groups:
        for state, n in group.counts.items():
            counts[state] = counts.get(state, 0) + n
    latest = max(
        (g for g in groups if g.last_completed_end_s is not None),
        key=lambda g: (g.last_completed_end_s, g.last_completed_score or 0.0),
        default=None,
    )
    starts = [g.oldest_running_start_s for g in groups if g.oldest_running_start_s is not None]
    cumulative = groups[0].scores.cumulative
    if len(groups) > 1:  # label groups of one benchmark: add their histograms up
        cumulative = tuple(sum(column) for column in zip(*(g.scores.cumulative for g in groups), strict=True))
    return Row(
        benchmark_id=benchmark_id,
        name=name,
        running=counts.get(RUNNING, 0),
        completed=counts.get("completed", 0),
        failed=counts.get("failed", 0),
        canceled=counts.get("canceled", 0),
        other=sum(n for state, n in counts.items() if state not in KNOWN_STATES),
        last_score=latest.last_completed_score if latest else None,
        last_completed_s=latest.last_completed_end_s if latest else None,
        oldest_running_s=min(starts, default=None),
        score_bounds=groups[0].scores.bounds,
        score_counts=tuple(n - p for n, p in zip(cumulative, [0, *cumulative], strict=False)),
        last_failed=newest_failed(run for g in groups for run in g.last_failed),
    )


def trouble_first(table_rows: Iterable[Row], now: float) -> list[Row]:
    """Trouble on top: the highest failure share, then a stuck run, then the longest running, then name."""

    def key(row: Row) -> tuple[float, bool, float, str, str]:
        share = row.failure_share
        oldest = row.oldest_running_s
        return (
            -(share or 0.0),
            not row.stuck(now),
            oldest if oldest is not None else math.inf,
            row.label().casefold(),
            row.benchmark_id or "",
        )

    return sorted(table_rows, key=key)


def render_table(snapshot: Snapshot, now: float | None = None) -> Table:
    """The benchmark table of a snapshot and the sections by benchmark below it (agents and models,
    failed runs); `now` is when the snapshot was taken (ages are as of then)."""
    now = time.time() if now is None else now
    ordered = trouble_first(rows(snapshot), now)
    sections = status_details.Sections(snapshot, ordered, now)
    if not ordered:
        body = '<p class="empty">No benchmark runs yet.</p>'
    else:
        shown = ordered[: status_details.MAX_TABLE_ROWS]
        lines = [_row_html(row, now, sections.links.get(row.benchmark_id)) for row in shown]
        body = (
            "<table>\n<thead><tr><th>Benchmark</th><th>Running</th><th>Completed</th><th>Failed</th>"
            "<th>Canceled</th><th>Failure share</th><th>Scores</th><th>Last score</th><th>Last completed</th>"
            "<th>Oldest running</th></tr></thead>\n<tbody>\n"
            + "\n".join(lines)
            + "\n</tbody>\n</table>"
            + status_details.left_out_table(len(ordered) - len(shown))
        )
    body += sections.html()
    return Table(html=body, as_of=now, benchmarks=len(snapshot.benchmark_ids), runs=snapshot.runs)


def _row_html(row: Row, now: float, link: str | None) -> str:
    """One benchmark's row; its name links to its section below when it has one (`link`), else the row
    is the benchmark's anchor itself, so that `#benchmark-<id>` always lands on the benchmark."""
    e = html.escape
    who = f'<span class="name">{e(row.label())}</span>'
    if link is not None:
        who = f'<a class="name" href="#{link}">{e(row.label())}</a>'
    if row.name and row.benchmark_id:
        who += f'<span class="id">{e(row.benchmark_id)}</span>'
    share = row.failure_share
    if share is None:
        share_cell = f'<td class="num muted">{_NONE}</td>'
    else:
        level = "bad" if share > HIGH_FAILURE_SHARE else "warn" if share > 0 else "good"
        share_cell = (
            f'<td class="num"><span class="pill {level}">{share:.0%}</span>{svg.share_bar(share, level)}</td>'
        )
    hist = svg.histogram(row.score_bounds, row.score_counts) or _NONE
    score = _NONE if row.last_score is None else f"{row.last_score:.3f}"
    oldest = _NONE
    if row.oldest_running_s is not None:
        oldest = _age(now - row.oldest_running_s)
        if row.stuck(now):
            oldest = f'<span class="pill bad">{oldest} (stuck?)</span>'
    other = f' <span class="muted" title="runs in other states">+{row.other}</span>' if row.other else ""
    failed = f'<td class="num{" bad-text" if row.failed else ""}">{row.failed}</td>'
    target = "" if link is not None else f' id="{e(status_details.anchor(row.benchmark_id))}"'
    return (
        f"<tr{target}><td>{who}</td><td class=num>{row.running}{other}</td><td class=num>{row.completed}</td>"
        f"{failed}<td class=num>{row.canceled}</td>{share_cell}<td class=num>{hist}</td><td class=num>{score}</td>"
        f"<td class=num>{_when(row.last_completed_s, now)}</td><td class=num>{oldest}</td></tr>"
    )


def render(
    *,
    demo: bool,
    last: LastSync | None,
    table: Table | None,
    freshness: Sequence[PartView] = (),
    now: float | None = None,
) -> bytes:
    """The whole page: the demo banner, the last sync, each part's freshness, the table of the last good
    snapshot, the links."""
    e = html.escape
    parts = [_HEAD.format(version=e(__version__), style=status_details.STYLE)]
    if demo:
        parts.append(
            '<p class="banner">Demo mode: a simulated account, no Runloop key used. '
            "The figures are made up and change every few seconds.</p>"
        )
    parts.append(_last_sync(last))
    parts.append(render_parts(freshness, time.time() if now is None else now))
    parts.append("<h2>Benchmarks</h2>")
    if table is None:
        parts.append('<p class="empty">Waiting for the first successful sync.</p>')
    else:
        stale = "" if last is None or last.ok else " (the last successful sync; the later one failed)"
        parts.append(
            f'<p class="meta">{table.benchmarks} benchmarks, {table.runs} runs, as of {_utc(table.as_of)}'
            f"{stale}. Trouble first: highest failure share (failed among completed and failed), "
            f"then runs running longest.</p>"
        )
        parts.append(table.html)
    parts.append(_links(LINKS))
    parts.append("</main></body></html>\n")
    return "\n".join(parts).encode()


def _last_sync(last: LastSync | None) -> str:
    if last is None:
        return '<section class="sync"><h2>Last sync</h2><p>No sync has finished yet.</p></section>'
    result = '<span class="pill good">ok</span>' if last.ok else '<span class="pill bad">failed</span>'
    error = f'<p class="error">{html.escape(last.error)}</p>' if last.error else ""
    return (
        f'<section class="sync"><h2>Last sync</h2><dl>'
        f"<dt>Result</dt><dd>{result}</dd>"
        f"<dt>Ended</dt><dd>{_utc(last.ended_at)}</dd>"
        f"<dt>Took</dt><dd>{last.duration_s:.2f} s</dd>"
        f"<dt>Requests</dt><dd>{last.requests}</dd></dl>{error}</section>"
    )


LINKS = {
    "/metrics": "the metrics, for Prometheus",
    "/healthz": "200 while the process serves",
    "/readyz": "200 once the runs are read",
}
SCRAPE_CONFIG = """scrape_configs:
  - job_name: runloop-exporter   # the alert rules select job="runloop-exporter"
    static_configs:
      - targets: ["HOST:9756"]"""
NEXT_STEPS = (
    "<b>Prometheus scrape config</b> (above)",
    "<b>Grafana dashboard</b>: <code>deploy/grafana/runloop-exporter.json</code>",
    "<b>Alerts</b>: <code>deploy/prometheus/alerts.yaml</code>",
    "<b>Kubernetes with Helm</b>: <code>deploy/helm/runloop-exporter</code>",
)


def _links(links: Mapping[str, str]) -> str:
    e = html.escape
    endpoints = "".join(
        f'<li><a href="{e(path)}"><code>{e(path)}</code></a> {e(what)}</li>' for path, what in links.items()
    )
    steps = "".join(f"<li>{step}</li>" for step in NEXT_STEPS)
    return (
        f'<section class="links"><div><h2>Endpoints</h2><ul>{endpoints}</ul></div>'
        f"<div><h2>Next steps</h2><pre>{e(SCRAPE_CONFIG)}</pre>"
        f"<p>Then, from the repository (each has its section in the README):</p><ul>{steps}</ul></div>"
        "</section>"
    )


_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>runloop-exporter</title>
<style>
:root {{ color-scheme: light; --fg: #1d2433; --muted: #6b7385; --line: #e3e6ec; --bg: #f6f7f9;
  --good: #1a7f37; --warn: #9a6700; --bad: #c62828; }}
* {{ box-sizing: border-box; }}
body {{ margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }}
main {{ max-width: 1200px; margin: 0 auto; padding: 20px 24px 40px; }}
header {{ display: flex; align-items: baseline; gap: 12px; }}
h1 {{ font-size: 22px; margin: 0 0 12px; }}
h1 small {{ font-weight: 400; color: var(--muted); font-size: 14px; }}
h2 {{ font-size: 16px; margin: 22px 0 8px; }}
section.sync h2 {{ margin-top: 0; }}
.parts ul {{ margin: 0; padding-left: 18px; }}
.parts .error {{ display: block; }}
.read {{ white-space: nowrap; }}
progress {{ width: 140px; vertical-align: middle; }}
.banner {{ background: #fff4d6; border: 1px solid #f0d58c; padding: 10px 14px; border-radius: 6px;
  font-weight: 600; }}
.sync {{ background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; }}
dl {{ display: grid; grid-template-columns: repeat(4, auto 1fr); gap: 4px 12px; margin: 0; }}
dt {{ color: var(--muted); }}
dd {{ margin: 0; font-variant-numeric: tabular-nums; }}
.error {{ margin: 10px 0 0; padding: 8px 10px; background: #fdecea; border-radius: 4px; color: #7f1d1d;
  font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; overflow-wrap: anywhere; }}
.meta, .empty {{ color: var(--muted); }}
table {{ width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); }}
th, td {{ padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }}
th {{ background: #eef0f4; font-weight: 600; white-space: nowrap; }}
tbody tr:nth-child(even) {{ background: #fafbfc; }}
td.num, th:not(:first-child) {{ text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }}
.name {{ display: block; font-weight: 600; overflow-wrap: anywhere; }}
.id {{ display: block; color: var(--muted); font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }}
.pill {{ display: inline-block; padding: 0 7px; border-radius: 9px; font-weight: 600; }}
.pill.good {{ background: #dafbe1; color: var(--good); }}
.pill.warn {{ background: #fff4d6; color: var(--warn); }}
.pill.bad {{ background: #fdecea; color: var(--bad); }}
.bad-text {{ color: var(--bad); }}
.muted {{ color: var(--muted); }}
.links {{ display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }}
.links ul {{ margin: 0; padding-left: 18px; }}
pre {{ background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; margin: 0;
  font-size: 12px; overflow-x: auto; }}
a {{ color: #0b57d0; }}
{style}
</style></head>
<body><main>
<header><h1>runloop-exporter <small>{version}</small></h1>
<span class="meta">Prometheus metrics of Runloop benchmark runs; this page is rendered at each sync.</span>
</header>"""
