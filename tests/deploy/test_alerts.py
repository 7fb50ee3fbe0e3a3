"""The alert rules: valid for promtool, unit-tested firing and not firing, documented, on the contract."""

from __future__ import annotations

import re
from typing import Any

import pytest

from exporter.http.status_details import ANCHOR_PREFIX, NO_BENCHMARK
from tests.support.deploy import (
    CONTRACT,
    RULES_FILE,
    RULES_LINK,
    RULES_TEST_FILE,
    load_yaml,
    metric_names,
    recorded_names,
    run,
)

SEVERITIES = {"critical", "warning", "info"}
# The alerts issue 5 asks for, by what they catch; each must exist.
REQUIRED_ALERTS = {
    "RunloopBenchmarkRunFailed",
    "RunloopBenchmarkFailureRatioHigh",
    "RunloopBenchmarkRunStuck",
    "RunloopBenchmarkScoreRegression",
    "RunloopExporterDown",
    "RunloopExporterSyncStale",
    "RunloopApiErrors",
    "RunloopApiRateLimited",
    # issue 23: rules for the backlog and for folded label values; jobs unavailable as info, not auth.
    "RunloopApiAuthFailing",
    "RunloopExporterBacklog",
    "RunloopExporterLabelValuesFolded",
    "RunloopExporterSeriesBudgetReached",
    "RunloopJobsUnavailable",
}
# The literals the chart replaces from prometheusRule.thresholds, per alert (templates/prometheusrule.yaml).
THRESHOLD_TOKENS = {
    "RunloopBenchmarkRunStuck": ("6 * 3600", "6 hours"),
    "RunloopBenchmarkFailureRatioHigh": ("> 0.5", "More than 50%"),
    "RunloopBenchmarkScoreRegression": ("0.8 *", "80%"),
    "RunloopAgentScoreRegression": ("0.8 *", "80%"),
}


def alerting_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for group in load_yaml(RULES_FILE)["groups"]:
        rules += [rule for rule in group["rules"] if "alert" in rule]
    return rules


def recording_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES_FILE)["groups"] for rule in group["rules"] if "record" in rule]


ALERTS = alerting_rules()
ALERT_IDS = [rule["alert"] for rule in ALERTS]
RECORDS = recording_rules()


def test_promtool_check_rules(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(RULES_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = run([promtool, "test", "rules", str(RULES_TEST_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_plain_prometheus_path_is_the_same_file() -> None:
    """deploy/prometheus/alerts.yaml (what users and the unit tests load) is the chart's file."""
    assert RULES_LINK.read_bytes() == RULES_FILE.read_bytes()
    assert RULES_LINK.resolve() == RULES_FILE.resolve()


def test_required_alerts_exist_once() -> None:
    assert len(ALERT_IDS) == len(set(ALERT_IDS)), "duplicate alert names"
    assert set(ALERT_IDS) >= REQUIRED_ALERTS


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_IDS)
def test_alert_is_documented(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"Runloop[A-Z][A-Za-z]+", rule["alert"])
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) >= {"summary", "description"}
    assert 20 <= len(annotations["summary"]) <= 300
    # The description must say what to do, not only what happened.
    assert len(annotations["description"]) >= 150


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_IDS)
def test_alert_uses_only_contract_metrics(rule: dict[str, Any]) -> None:
    names = metric_names(rule["expr"])
    assert names <= CONTRACT, names - CONTRACT
    assert recorded_names(rule["expr"]) <= {r["record"] for r in RECORDS}, "a series no rule records"
    # Prometheus' own `up` is selected by the job the chart and the docs set up.
    uses_up = re.search(r"\bup\b", rule["expr"]) is not None
    if uses_up:
        assert 'up{job="runloop-exporter"}' in rule["expr"]
    assert names or uses_up, "an alert on no metric of the exporter"


def _unit_test_cases() -> dict[str, tuple[int, int]]:
    """Per alert name: how many promtool cases expect it firing, and how many expect it silent."""
    counts: dict[str, tuple[int, int]] = {}
    for test in load_yaml(RULES_TEST_FILE)["tests"]:
        for case in test.get("alert_rule_test", []):
            firing, silent = counts.get(case["alertname"], (0, 0))
            if case.get("exp_alerts"):
                firing += 1
            else:
                silent += 1
            counts[case["alertname"]] = (firing, silent)
    return counts


@pytest.mark.parametrize("name", ALERT_IDS)
def test_alert_is_unit_tested_firing_and_not_firing(name: str) -> None:
    firing, silent = _unit_test_cases().get(name, (0, 0))
    assert firing >= 1, f"no promtool case where {name} fires"
    assert silent >= 1, f"no promtool case where {name} stays silent"


def test_unit_tests_name_only_existing_alerts() -> None:
    assert set(_unit_test_cases()) <= set(ALERT_IDS)


def test_unit_tests_check_annotations_of_firing_alerts() -> None:
    """Firing expectations carry the full annotations, so the templates (and the name lookup) are tested."""
    annotations = {rule["alert"]: set(rule["annotations"]) for rule in ALERTS}
    for test in load_yaml(RULES_TEST_FILE)["tests"]:
        for case in test.get("alert_rule_test", []):
            for alert in case.get("exp_alerts") or []:
                assert set(alert.get("exp_annotations", {})) == annotations[case["alertname"]], test["name"]


def _per_benchmark(name: str) -> bool:
    """Whether a series has a benchmark_id label (runloop_benchmark_jobs is per state only)."""
    return name.startswith("runloop_agent_") or (
        name.startswith("runloop_benchmark_") and name != "runloop_benchmark_jobs"
    )


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_IDS)
def test_alerts_about_a_benchmark_give_its_place_on_the_status_page(rule: dict[str, Any]) -> None:
    """Where the status page shows a benchmark (exporter.http.status_details.anchor): its failed runs, its
    agents and models. Only alerts about one benchmark carry it."""
    if not any(_per_benchmark(name) for name in metric_names(rule["expr"])):
        assert "status_page" not in rule["annotations"]
        return
    assert rule["annotations"]["status_page"] == (
        f"{{{{ with $labels.benchmark_id }}}}/#{ANCHOR_PREFIX}{{{{ . }}}}{{{{ else }}}}/#{NO_BENCHMARK}{{{{ end }}}}"
    )


def test_the_7_day_baselines_are_recorded_once_and_read_from_the_records() -> None:
    """A 7-day range is read by the recording rules only: the alerts (and the dashboard) read the records."""
    assert len(RECORDS) == 4
    for record in RECORDS:
        assert record["record"].startswith("runloop:")
        assert record["record"].endswith(":min_over_time_7d")
        (name,) = metric_names(record["expr"])
        assert record["expr"] == f"min without (instance, pod) (min_over_time({name}[7d]))"
        assert name in CONTRACT
    used = set().union(*(recorded_names(rule["expr"]) for rule in ALERTS))
    assert used == {r["record"] for r in RECORDS}, "every baseline is used by an alert"
    for rule in ALERTS:
        assert "[7d]" not in rule["expr"], rule["alert"]


@pytest.mark.parametrize("name", sorted(THRESHOLD_TOKENS))
def test_each_tuned_threshold_is_written_once_where_the_chart_replaces_it(name: str) -> None:
    (rule,) = [r for r in ALERTS if r["alert"] == name]
    in_expr, in_text = THRESHOLD_TOKENS[name]
    assert rule["expr"].count(in_expr) == 1
    assert in_expr not in "".join(rule["annotations"].values())
    assert "".join(rule["annotations"].values()).count(in_text) == 1, "the description states it once"


def test_the_auth_alert_watches_only_the_run_endpoints_and_needs_failed_syncs() -> None:
    """A jobs 403 (a key without jobs access, by design) or a 401 that passes must not page."""
    (rule,) = [r for r in ALERTS if r["alert"] == "RunloopApiAuthFailing"]
    assert 'path=~"/v1/benchmark_runs.*"' in rule["expr"]
    assert "runloop_up == 0" in rule["expr"]
    assert "restart the pod" not in rule["annotations"]["description"]
    assert "no restart is needed" in rule["annotations"]["description"]
    (jobs,) = [r for r in ALERTS if r["alert"] == "RunloopJobsUnavailable"]
    assert jobs["labels"]["severity"] == "info"


def test_every_benchmark_alert_waits_before_it_fires() -> None:
    for rule in ALERTS:
        if rule["alert"].startswith("RunloopBenchmark"):
            assert "for" in rule, rule["alert"]
