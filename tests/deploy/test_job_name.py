"""One scrape job name everywhere: the README's scrape configs, the chart, the alert rules and the dashboard.

The alert rules select `job="runloop-exporter"`; a scrape config copied from the README with another
name leaves RunloopExporterAbsent firing forever and RunloopExporterDown silent. So every scrape config
and every job selector this project ships is read here, and any other name is a failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

from tests.support.deploy import (
    CHART,
    DASHBOARD_FILE,
    NAMESPACE,
    RELEASE,
    RULES_FILE,
    RULES_TEST_FILE,
    Helm,
    ci_values,
    load_yaml,
)
from tests.support.tools import REPO

JOB = "runloop-exporter"
README = REPO / "README.md"
# job="x", job=~"x", job!="x" in PromQL, and `job_name: x` / `jobName: x` / `job: x` in YAML and prose.
SELECTOR = re.compile(r'\bjob\s*(?:=~|!~|!=|=)\s*"([^"]*)"')
NAMED = re.compile(r"\b(?:job_name|jobName)\s*:\s*[\"']?([^\s\"'#,}]+)")
YAML_BLOCK = re.compile(r"```ya?ml\n(.*?)```", re.DOTALL)


def strings(value: Any) -> Iterator[str]:
    """Every string inside a parsed YAML or JSON document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def job_names(text: str) -> list[str]:
    """The job names a text spells out: selectors and job_name/jobName settings."""
    return SELECTOR.findall(text) + NAMED.findall(text)


def assert_all_ours(found: list[str], where: str) -> None:
    others = sorted(set(found) - {JOB})
    assert not others, f"{where} names the job {others}, not {JOB!r}"


def test_every_scrape_config_in_the_readme_uses_the_job_the_rules_select() -> None:
    text = README.read_text(encoding="utf-8")
    scrape_jobs = [
        job["job_name"]
        for block in YAML_BLOCK.findall(text)
        for doc in [yaml.safe_load(block)]
        if isinstance(doc, dict)
        for job in doc.get("scrape_configs", [])
    ]
    assert len(scrape_jobs) >= 2, "the README's scrape configs were not found"
    assert_all_ours(scrape_jobs, "a scrape config in README.md")
    mentioned = job_names(text)
    assert len(mentioned) > len(scrape_jobs)
    assert_all_ours(mentioned, "README.md")


def test_the_alert_rules_and_their_tests_select_that_job() -> None:
    rules = list(strings(load_yaml(RULES_FILE)))
    selectors = [name for text in rules for name in SELECTOR.findall(text)]
    assert selectors, "no job selector in the rules"
    assert_all_ours(selectors, str(RULES_FILE.relative_to(REPO)))
    # Their input series include other jobs on purpose (a node exporter that must not fire an alert);
    # every alert they expect carries ours.
    tests = load_yaml(RULES_TEST_FILE)
    expected_jobs = [
        alert["exp_labels"]["job"]
        for case in tests["tests"]
        for alert_case in case.get("alert_rule_test", [])
        for alert in alert_case.get("exp_alerts", [])
        if "job" in alert.get("exp_labels", {})
    ]
    assert expected_jobs
    assert_all_ours(expected_jobs, str(RULES_TEST_FILE.relative_to(REPO)))


def test_the_dashboard_selects_no_other_job() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    assert_all_ours([name for text in strings(dashboard) for name in job_names(text)], "the dashboard")


def test_the_chart_defaults_to_that_job_in_values_templates_and_rendered_objects(helm: Helm) -> None:
    assert load_yaml(CHART / "values.yaml")["serviceMonitor"]["jobName"] == JOB
    for template in sorted((CHART / "templates").iterdir()):
        # Templates hold the name only in the rules' own selector, which prometheusrule.yaml rewrites.
        literal = [name for name in job_names(template.read_text(encoding="utf-8")) if "{{" not in name]
        assert_all_ours(literal, f"templates/{template.name}")

    rendered = helm.render(
        ci_values("default"), sets=["serviceMonitor.enabled=true", "prometheusRule.enabled=true"]
    )
    (endpoint,) = rendered.one("ServiceMonitor")["spec"]["endpoints"]
    job_labels = [r["replacement"] for r in endpoint["relabelings"] if r.get("targetLabel") == "job"]
    assert job_labels == [JOB]
    selectors = [
        name for text in strings(rendered.one("PrometheusRule")["spec"]) for name in SELECTOR.findall(text)
    ]
    assert selectors
    assert_all_ours(selectors, "the rendered PrometheusRule")


def test_the_chart_notes_give_that_job_name_with_or_without_a_service_monitor(helm: Helm) -> None:
    for enabled in ("false", "true"):
        result = helm(
            "install",
            RELEASE,
            str(CHART),
            "--dry-run=client",
            "--namespace",
            NAMESPACE,
            "-f",
            str(ci_values("default")),
            "--set",
            f"serviceMonitor.enabled={enabled}",
        )
        assert result.returncode == 0, result.stderr
        notes = result.stdout.split("NOTES:", 1)[1]
        found = job_names(notes)
        assert found, notes
        assert_all_ours(found, f"NOTES.txt (serviceMonitor.enabled={enabled})")


def test_a_custom_job_name_is_followed_by_the_service_monitor_rules_and_notes(helm: Helm) -> None:
    values = ci_values("prometheusrule")
    custom = load_yaml(values)["serviceMonitor"]["jobName"]
    assert custom != JOB
    rendered = helm.render(values)
    (endpoint,) = rendered.one("ServiceMonitor")["spec"]["endpoints"]
    assert {r["replacement"] for r in endpoint["relabelings"] if r.get("targetLabel") == "job"} == {custom}
    selectors = {
        name for text in strings(rendered.one("PrometheusRule")["spec"]) for name in SELECTOR.findall(text)
    }
    assert selectors == {custom}
    result = helm("install", RELEASE, str(CHART), "--dry-run=client", "-n", NAMESPACE, "-f", str(values))
    assert result.returncode == 0, result.stderr
    assert set(job_names(result.stdout.split("NOTES:", 1)[1])) == {custom}
