"""The Grafana dashboard: importable anywhere (no fixed datasource), every query valid PromQL on the contract."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import (
    CONTRACT,
    DASHBOARD_FILE,
    DASHBOARD_LINK,
    RULES_FILE,
    load_yaml,
    metric_names,
    recorded_names,
    run,
)

DASHBOARD: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
PANELS: list[dict[str, Any]] = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
TARGETS: list[tuple[dict[str, Any], dict[str, Any]]] = [(p, t) for p in PANELS for t in p["targets"]]
TARGET_IDS = [f"{p['id']}-{t['refId']}" for p, t in TARGETS]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The only variables a panel query may use, and what an end-to-end test substitutes for them.
SUBSTITUTES = {"$benchmark": ".*", "$__rate_interval": "1m", "$__range": "1h"}
BENCHMARK_FILTER = 'benchmark_id=~"$benchmark"'


def variables() -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in DASHBOARD["templating"]["list"]}


def substitute(expr: str) -> str:
    for name in sorted(SUBSTITUTES, key=len, reverse=True):
        expr = expr.replace(name, SUBSTITUTES[name])
    return expr


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair anywhere in the JSON."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def test_dashboard_file_is_the_chart_file() -> None:
    """deploy/grafana/runloop-exporter.json (what users import) is the one the chart ships."""
    assert DASHBOARD_LINK.read_bytes() == DASHBOARD_FILE.read_bytes()


def test_identity() -> None:
    assert DASHBOARD["uid"] == "runloop-exporter"
    assert DASHBOARD["title"]
    assert DASHBOARD["id"] is None
    assert isinstance(DASHBOARD["schemaVersion"], int)
    assert "__inputs" not in DASHBOARD, "import inputs would tie the file to one Grafana's datasource"


def test_no_hard_coded_datasource() -> None:
    refs = [value for key, value in walk(DASHBOARD) if key == "datasource"]
    assert refs
    for ref in refs:
        if ref == {"type": "grafana", "uid": "-- Grafana --"}:  # the built-in annotations source
            continue
        assert ref == DATASOURCE


def test_datasource_variable() -> None:
    var = variables()["datasource"]
    assert var["type"] == "datasource"
    assert var["query"] == "prometheus"
    assert var["current"] == {}, "a saved current value would pin someone's datasource"


def grafana_query_result_lines(result: list[dict[str, Any]]) -> list[str]:
    """How Grafana's Prometheus datasource writes a query_result() variable query's series, one a line:
    `name{label="value",...} value timestamp_ms`, labels in the API's (sorted) order, values as they are."""
    lines = []
    for series in result:
        metric = dict(series["metric"])
        name = metric.pop("__name__", "")
        labels = ",".join(f'{key}="{value}"' for key, value in metric.items())
        lines.append(f"{name}{{{labels}}} {series['value'][1]} {int(float(series['value'][0]) * 1000)}")
    return lines


def picker_options(variable: dict[str, Any], lines: list[str]) -> set[tuple[str, str]]:
    """(text, value) of each option Grafana makes from the lines with the variable's regex."""
    pattern = variable["regex"].strip("/").replace("(?<", "(?P<")  # JavaScript's named groups, in Python
    options = set()
    for line in lines:
        match = re.search(pattern, line)
        if match:
            options.add((match.group("text"), match.group("value")))
    return options


def test_one_benchmark_picker_whose_all_means_all() -> None:
    """Issue 23: "All" was the list of named ids, which drops runs and jobs without a benchmark and
    benchmarks used only through jobs. Now All is .*, which every panel's benchmark_id=~ reads as every
    series, the label left out included; picking names still selects their ids."""
    assert set(variables()) == {"datasource", "benchmark"}
    var = variables()["benchmark"]
    assert var["type"] == "query"
    assert var["label"] == "Benchmark"
    assert var["hide"] == 0
    assert var["multi"]
    assert var["includeAll"]
    assert var["allValue"] == ".*"
    assert var["current"]["value"] == ["$__all"]
    assert var["datasource"] == DATASOURCE
    assert var["query"]["query"] == var["definition"]
    assert var["definition"].startswith("query_result(")
    assert "runloop_benchmark_info" in var["definition"]
    assert "runloop_benchmark_jobs" in var["definition"], "benchmarks known only from jobs can be picked"
    lines = [
        '{benchmark_id="bmd_a",benchmark_name="alpha suite"} 1 1700000000000',
        '{benchmark_id="bmd_j",benchmark_name="bmd_j"} 1 1700000000000',
    ]
    assert picker_options(var, lines) == {("alpha suite", "bmd_a"), ("bmd_j", "bmd_j")}


def test_panels_have_ids_titles_descriptions_and_targets() -> None:
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in PANELS:
        assert panel["title"], panel["id"]
        assert panel["description"], panel["title"]
        assert panel["datasource"] == DATASOURCE
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_layout_fits_and_does_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["w"] > 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        assert pos["y"] >= 0
        assert pos["h"] > 0
        cells = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


@pytest.mark.parametrize(("panel", "target"), TARGETS, ids=TARGET_IDS)
def test_query_uses_only_known_variables_and_metrics(panel: dict[str, Any], target: dict[str, Any]) -> None:
    expr = target["expr"]
    used = set(re.findall(r"\$\{?[A-Za-z_]+\}?", expr))
    assert used <= set(SUBSTITUTES), f"{panel['title']}: {used - set(SUBSTITUTES)}"
    names = metric_names(expr)
    assert names, f"{panel['title']}: no runloop metric"
    assert names <= CONTRACT, f"{panel['title']}: {names - CONTRACT}"
    recorded = {r["record"] for g in load_yaml(RULES_FILE)["groups"] for r in g["rules"] if "record" in r}
    assert recorded_names(expr) <= recorded, f"{panel['title']}: a series the rules do not record"
    # Benchmark and agent panels follow the picker. (runloop_benchmark_info may appear unfiltered to join
    # names.)
    selectors = re.findall(r"(runloop_(?:benchmark|agent)_[a-z_]+)(\{[^}]*\})?", expr)
    for name, selector in selectors:
        if name != "runloop_benchmark_info" or "by (benchmark_id, benchmark_name)" not in expr:
            assert BENCHMARK_FILTER in selector, f"{panel['title']}: {name}{selector} ignores $benchmark"


def test_every_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses each query (variables filled in) as a recording rule."""
    rules = [
        {"record": f"dashboard:panel_{panel['id']}:{target['refId']}", "expr": substitute(target["expr"])}
        for panel, target in TARGETS
    ]
    rules_file = tmp_path / "dashboard-queries.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(rules_file)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def _exprs(kind: str | None = None) -> str:
    return "\n".join(t["expr"] for p, t in TARGETS if kind is None or p["type"] == kind)


def test_covers_what_a_cold_reader_needs() -> None:
    """Issue 5's list: runs by state, running now, failure ratio, score heatmap and trend, durations, health."""
    everything = _exprs()
    assert "sum by (state)" in _exprs("timeseries"), "runs by state over time"
    assert 'state="running"' in _exprs("stat"), "running now"
    assert 'state="failed"' in everything, "failure ratio"
    assert 'state=~"completed|failed"' in everything, "failure ratio"
    heatmaps = [p for p in PANELS if p["type"] == "heatmap"]
    assert heatmaps, "score distribution heatmap"
    assert all(
        t["format"] == "heatmap"
        and "runloop_benchmark_run_score_bucket" in t["expr"]
        and "by (le)" in t["expr"]
        for p in heatmaps
        for t in p["targets"]
    )
    assert "runloop_benchmark_last_completed_run_score" in _exprs("timeseries"), "score trend"
    assert re.search(r"histogram_quantile\(0\.9, .*runloop_benchmark_run_duration_seconds_bucket", everything)
    for health in ("runloop_up", "runloop_exporter_last_successful_sync_timestamp_seconds"):
        assert health in everything


NAME_JOIN = "group_left (benchmark_name) (topk by (benchmark_id) (1, max by (benchmark_id, benchmark_name) (runloop_benchmark_info)) or on (benchmark_id) label_replace(label_replace(group by (benchmark_id) ("
UNNAMED = (
    '"benchmark_name", "$1", "benchmark_id", "(.+)"), "benchmark_name", "(no benchmark)", "benchmark_id", "")'
)


def test_per_benchmark_series_are_named_not_numbered() -> None:
    """Series per benchmark carry the benchmark's name (joined from runloop_benchmark_info) as legend; a
    benchmark without a name (used only through jobs) its id, and runs without a benchmark "(no
    benchmark)": a plain join would drop both from the panel."""
    per_benchmark = [(p, t) for p, t in TARGETS if "per benchmark" in p["title"].lower()]
    assert len(per_benchmark) >= 3
    joined = [(p, t) for p, t in TARGETS if "benchmark_name" in t["expr"]]
    assert len(joined) >= len(per_benchmark) + 2  # the leaderboard and the agents' scores too
    for panel, target in joined:
        # One name per id even while a renamed benchmark has two info series: no many-to-many error.
        assert NAME_JOIN in target["expr"], panel["title"]
        assert UNNAMED in target["expr"], panel["title"]
        assert target["expr"].count("runloop_benchmark_info") == 1, panel["title"]
    for panel, target in per_benchmark:
        assert target["legendFormat"] == "{{benchmark_name}}", panel["title"]
    for panel, target in TARGETS:
        assert "benchmark_id" not in target["legendFormat"], panel["title"]


def row_panels(title: str) -> list[dict[str, Any]]:
    """The panels under a row: below it and above the next row."""
    rows = sorted((p["gridPos"]["y"], p["title"]) for p in DASHBOARD["panels"] if p["type"] == "row")
    (top,) = [y for y, name in rows if name == title]
    below = [y for y, _ in rows if y > top]
    bottom = min(below) if below else 10**9
    return [p for p in PANELS if top < p["gridPos"]["y"] < bottom]


def _flat(expr: str) -> str:
    """An expression without whitespace and without the benchmark filter, to compare with a rule."""
    expr = expr.replace("{" + BENCHMARK_FILTER + "}", "").replace(", " + BENCHMARK_FILTER, "")
    return re.sub(r"\s+", "", expr)


def test_agents_row_has_leaderboard_trend_outcomes_and_failures() -> None:
    """Issue 10's row: leaderboard, score over time, scenario outcomes by state, top exception types."""
    panels = row_panels("Agents and models")
    exprs = {p["type"]: "\n".join(t["expr"] for t in p["targets"]) for p in panels}
    assert len(panels) == 4
    leaderboard = exprs["table"]
    assert "runloop_agent_last_benchmark_run_score" in leaderboard
    assert "runloop_agent_benchmark_run_score_sum" in leaderboard
    assert "runloop_agent_last_benchmark_run_score" in exprs["timeseries"]
    bars = [p for p in panels if p["type"] == "bargauge"]
    outcomes = "\n".join(
        t["expr"] for p in bars for t in p["targets"] if "runloop_agent_scenarios" in t["expr"]
    )
    for state in ("completed", "failed", "timeout"):
        assert f'runloop_agent_scenarios{{state="{state}", {BENCHMARK_FILTER}}}' in outcomes
    failures = [
        t["expr"] for p in bars for t in p["targets"] if "runloop_agent_scenario_failures" in t["expr"]
    ]
    assert failures
    assert all(f.startswith("topk(") and "by (exception_type)" in f for f in failures)
    for panel in panels:
        assert all(t["expr"] for t in panel["targets"])
        for target in panel["targets"]:
            if panel["type"] != "table":
                assert "agent_name" in target["legendFormat"] or "exception_type" in target["legendFormat"]


def test_leaderboard_mean_is_the_alerts_mean() -> None:
    """The 7-day mean shown is the one RunloopAgentScoreRegression compares with (sum and count of the
    score histogram: now minus the window's lowest), so the table explains the alert."""
    (table,) = [p for p in row_panels("Agents and models") if p["type"] == "table"]
    rule = next(
        r
        for g in load_yaml(RULES_FILE)["groups"]
        for r in g["rules"]
        if r.get("alert") == "RunloopAgentScoreRegression"
    )
    alert = _flat(rule["expr"])
    refs = {t["refId"]: _flat(t["expr"]) for t in table["targets"]}
    for metric in ("runloop_agent_benchmark_run_score_sum", "runloop_agent_benchmark_run_score_count"):
        baseline = "runloop:" + metric.removeprefix("runloop_") + ":min_over_time_7d"
        delta = f"maxwithout(instance,pod)({metric})-{baseline}"
        assert delta in alert, f"the rule no longer reads {metric} this way: update the dashboard with it"
        assert delta in refs["B"], metric
    assert refs["B"].startswith("((maxwithout(instance,pod)(runloop_agent_benchmark_run_score_sum)")
    assert "/((maxwithout(instance,pod)(runloop_agent_benchmark_run_score_count)" in refs["B"]
    assert refs["A"].startswith("maxwithout(instance,pod)(runloop_agent_last_benchmark_run_score)")
    assert alert.startswith("maxwithout(instance,pod)(runloop_agent_last_benchmark_run_score)")
    assert "-runloop:agent_benchmark_run_score_count:min_over_time_7d" in refs["C"]
    assert "[7d]" not in "".join(refs.values()), "the 7-day baselines are recorded by the rules"
    # One row per benchmark, agent and model: the three queries are merged into one table.
    assert [t["format"] for t in table["targets"]] == ["table"] * 3
    assert all(t["instant"] for t in table["targets"])
    assert table["transformations"][0]["id"] == "merge"
    renamed = table["transformations"][1]["options"]["renameByName"]
    assert renamed["Value #B"] == "Mean score (7 days)"
    assert "the RunloopAgentScoreRegression alert compares" in table["description"]
