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
    run,
)

DASHBOARD: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
PANELS: list[dict[str, Any]] = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
TARGETS: list[tuple[dict[str, Any], dict[str, Any]]] = [(p, t) for p in PANELS for t in p["targets"]]
TARGET_IDS = [f"{p['id']}-{t['refId']}" for p, t in TARGETS]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The only variables a panel query may use, and what an end-to-end test substitutes for them.
SUBSTITUTES = {"$benchmark": "bmd_.*", "$__rate_interval": "1m", "$__range": "1h"}
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


def test_benchmark_variables_map_names_to_ids() -> None:
    by_name = variables()["benchmark_name"]
    assert by_name["type"] == "query"
    assert by_name["definition"] == "label_values(runloop_benchmark_info, benchmark_name)"
    assert by_name["query"]["query"] == by_name["definition"]
    assert by_name["multi"]
    assert by_name["includeAll"]
    ids = variables()["benchmark"]
    assert (
        ids["definition"]
        == 'label_values(runloop_benchmark_info{benchmark_name=~"$benchmark_name"}, benchmark_id)'
    )
    assert ids["query"]["query"] == ids["definition"]
    assert ids["hide"] == 2, "the id variable is plumbing; people pick names"
    assert ids["multi"]
    assert ids["includeAll"]
    assert not ids.get("allValue"), "'All' must expand to the ids of the chosen names, not to .*"
    for var in (by_name, ids):
        assert var["datasource"] == DATASOURCE


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


def test_per_benchmark_series_are_named_not_numbered() -> None:
    """Series per benchmark carry the benchmark's name (joined from runloop_benchmark_info) as legend."""
    per_benchmark = [(p, t) for p, t in TARGETS if "per benchmark" in p["title"].lower()]
    assert len(per_benchmark) >= 3
    for panel, target in per_benchmark:
        # One name per id even while a renamed benchmark has two info series: no many-to-many error.
        assert "group_left (benchmark_name) topk by (benchmark_id) (1, " in target["expr"], panel["title"]
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
