"""The Helm chart: lints, renders, validates against Kubernetes' schemas, and wires what matters right."""

from __future__ import annotations

import base64
import json
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.deploy import (
    CHART,
    CI_VALUES,
    DASHBOARD_FILE,
    NAMESPACE,
    RELEASE,
    RULES_FILE,
    Helm,
    Manifests,
    check_shape,
    ci_values,
    load_yaml,
    run,
)

CI_IDS = [path.name for path in CI_VALUES]
OPERATOR_API = "monitoring.coreos.com/v1"
# kubeVersion in Chart.yaml is >=1.25; validate against that and the newest schemas we have.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
CHART_META = load_yaml(CHART / "Chart.yaml")
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))


def container(manifests: Manifests) -> dict[str, Any]:
    pod = manifests.one("Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return dict(pod["containers"][0])


def env_of(manifests: Manifests) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(manifests)["env"]}


def volume(manifests: Manifests, name: str) -> dict[str, Any]:
    volumes = manifests.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    found = [v for v in volumes if v["name"] == name]
    assert len(found) == 1, f"volume {name}: {volumes}"
    return dict(found[0])


def mount_for(manifests: Manifests, file_path: str) -> dict[str, Any]:
    """The volume mount that holds `file_path`."""
    found = [
        m
        for m in container(manifests)["volumeMounts"]
        if file_path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert len(found) == 1, f"{file_path} is not in exactly one mount"
    return dict(found[0])


# --- lint, render, validate ---------------------------------------------------------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_lint_strict(helm: Helm, values: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(values), "--namespace", NAMESPACE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout, result.stdout
    assert "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_core_objects_match_kubernetes_schemas(helm: Helm, values: Path) -> None:
    manifests = helm.render(values)
    core = [doc for doc in manifests.docs if doc["apiVersion"] != OPERATOR_API]
    assert {"Deployment", "Service"} <= {doc["kind"] for doc in core}
    for doc in core:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']} against {version}: {'.'.join(map(str, exc.path))}: {exc.message}")


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_every_object_is_labelled_and_namespaced(helm: Helm, values: Path) -> None:
    for doc in helm.render(values).docs:
        meta = doc["metadata"]
        assert meta["namespace"], doc["kind"]
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert len(meta["name"]) <= 63


def test_every_ci_values_file_is_rendered_by_the_tests() -> None:
    assert len(CI_VALUES) >= 8
    assert {p.name for p in CI_VALUES} >= {
        "default-values.yaml",
        "servicemonitor-values.yaml",
        "prometheusrule-values.yaml",
        "dashboard-values.yaml",
        "networkpolicy-values.yaml",
    }


def test_package_ships_rules_and_dashboard(helm: Helm, tmp_path: Path) -> None:
    result = helm("package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (package,) = tmp_path.glob("runloop-exporter-*.tgz")
    with tarfile.open(package) as archive:
        names = set(archive.getnames())
        rules = archive.extractfile("runloop-exporter/files/alerts.yaml")
        dashboard = archive.extractfile("runloop-exporter/files/runloop-exporter.json")
        assert rules is not None
        assert dashboard is not None
        assert rules.read() == RULES_FILE.read_bytes()
        assert dashboard.read() == DASHBOARD_FILE.read_bytes()
    assert "runloop-exporter/values.schema.json" in names
    assert "runloop-exporter/templates/NOTES.txt" in names
    assert not any("/ci/" in name for name in names), "test values are not for users"


# --- the Deployment -----------------------------------------------------------------------------------


def test_default_render_has_only_the_core_objects(helm: Helm) -> None:
    assert helm.render(ci_values("default")).kinds() == ["Deployment", "Service", "ServiceAccount"]


def test_pod_is_hardened(helm: Helm) -> None:
    manifests = helm.render(ci_values("default"))
    pod = manifests.one("Deployment")["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert isinstance(security["runAsUser"], int)
    assert security["runAsUser"] > 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["fsGroup"] == security["runAsGroup"]
    assert pod["automountServiceAccountToken"] is False
    assert manifests.one("ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == manifests.one("ServiceAccount")["metadata"]["name"]
    box = container(manifests)["securityContext"]
    assert box["readOnlyRootFilesystem"] is True
    assert box["allowPrivilegeEscalation"] is False
    assert box["capabilities"] == {"drop": ["ALL"]}
    assert box["runAsNonRoot"] is True
    assert "privileged" not in box or box["privileged"] is False
    # The read-only root still gets a writable /tmp.
    assert mount_for(manifests, "/tmp/x")["name"] == "tmp"
    assert "emptyDir" in volume(manifests, "tmp")


STATE = "/var/lib/runloop-exporter"


def test_the_checkpoint_is_kept_on_an_empty_dir_by_default(helm: Helm) -> None:
    """It survives a restart of the container (an OOM kill, a failed liveness probe); the root stays read-only."""
    manifests = helm.render(ci_values("default"))
    assert env_of(manifests)["RUNLOOP_EXPORTER_STATE_DIR"] == STATE
    assert "RUNLOOP_EXPORTER_CHECKPOINT_INTERVAL_SECONDS" not in env_of(manifests)  # the exporter's default
    mount = mount_for(manifests, f"{STATE}/runs.json.gz")
    assert mount["name"] == "state"
    assert not mount.get("readOnly", False)
    assert volume(manifests, "state") == {"name": "state", "emptyDir": {"sizeLimit": "64Mi"}}
    assert container(manifests)["securityContext"]["readOnlyRootFilesystem"] is True
    assert "PersistentVolumeClaim" not in manifests.kinds()


def test_persistence_keeps_the_checkpoint_on_a_claim_one_pod_at_a_time(helm: Helm) -> None:
    manifests = helm.render(ci_values("persistence"))
    claim = manifests.one("PersistentVolumeClaim")
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOncePod"],
        "storageClassName": "fast-ssd",
        "resources": {"requests": {"storage": "256Mi"}},
    }
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert volume(manifests, "state")["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    assert mount_for(manifests, f"{STATE}/jobs.json.gz")["name"] == "state"
    assert env_of(manifests)["RUNLOOP_EXPORTER_CHECKPOINT_INTERVAL_SECONDS"] == "30"
    assert manifests.one("Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert container(manifests)["securityContext"]["readOnlyRootFilesystem"] is True


def test_persistence_on_an_existing_claim_or_without_a_storage_class(helm: Helm) -> None:
    existing = helm.render(
        ci_values("default"), sets=["persistence.enabled=true", "persistence.existingClaim=my-claim"]
    )
    assert "PersistentVolumeClaim" not in existing.kinds()
    assert volume(existing, "state")["persistentVolumeClaim"] == {"claimName": "my-claim"}
    unclassed = helm.render(
        ci_values("default"), sets=["persistence.enabled=true", "persistence.storageClass=-"]
    )
    assert unclassed.one("PersistentVolumeClaim")["spec"]["storageClassName"] == ""
    default_class = helm.render(ci_values("default"), sets=["persistence.enabled=true"])
    assert "storageClassName" not in default_class.one("PersistentVolumeClaim")["spec"]


def test_probes_use_healthz_and_readyz_on_the_metrics_port(helm: Helm) -> None:
    box = container(helm.render(ci_values("default")))
    (port,) = box["ports"]
    assert port == {"name": "http", "containerPort": 9756, "protocol": "TCP"}
    assert box["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}
    assert box["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", "scheme": "HTTP"}
    assert env_of(helm.render(ci_values("default")))["RUNLOOP_EXPORTER_PORT"] == "9756"


def test_resources_are_set(helm: Helm) -> None:
    resources = container(helm.render(ci_values("default")))["resources"]
    assert resources["requests"]["memory"]
    assert resources["requests"]["cpu"]
    assert resources["limits"]["memory"]


def test_image_defaults_to_app_version_and_honours_a_digest(helm: Helm) -> None:
    assert (
        container(helm.render(ci_values("default")))["image"]
        == f"runloop-exporter:{CHART_META['appVersion']}"
    )
    extras = load_yaml(ci_values("extras"))["image"]
    image = container(helm.render(ci_values("extras")))["image"]
    assert image == f"{extras['repository']}@{extras['digest']}"


def test_existing_secret_is_mounted_as_the_key_file(helm: Helm) -> None:
    manifests = helm.render(ci_values("default"))
    assert manifests.maybe("Secret") is None, "an existing Secret is used, not copied"
    env = env_of(manifests)
    assert "RUNLOOP_API_KEY" not in env, "the key never goes into the environment"
    key_file = env["RUNLOOP_API_KEY_FILE"]
    mount = mount_for(manifests, key_file)
    assert mount["readOnly"] is True
    assert "subPath" not in mount, "a subPath mount would never see a rotated key"
    secret = volume(manifests, mount["name"])["secret"]
    assert secret["secretName"] == "runloop-api-key"
    assert secret["items"] == [{"key": "api-key", "path": key_file.rsplit("/", 1)[1]}]
    assert secret["defaultMode"] == 0o440


def test_existing_secret_with_another_key_name(helm: Helm) -> None:
    manifests = helm.render(ci_values("webconfig"))
    key_file = env_of(manifests)["RUNLOOP_API_KEY_FILE"]
    secret = volume(manifests, mount_for(manifests, key_file)["name"])["secret"]
    assert secret["items"] == [{"key": "token", "path": key_file.rsplit("/", 1)[1]}]


def test_chart_made_secret_holds_the_key_and_rolls_the_pod(helm: Helm) -> None:
    manifests = helm.render(ci_values("api-key"))
    secret = manifests.one("Secret")
    key = load_yaml(ci_values("api-key"))["config"]["apiKey"]
    assert base64.b64decode(secret["data"]["api-key"]).decode() == key
    key_file = env_of(manifests)["RUNLOOP_API_KEY_FILE"]
    mounted = volume(manifests, mount_for(manifests, key_file)["name"])["secret"]
    assert mounted["secretName"] == secret["metadata"]["name"]
    assert mounted["items"] == [{"key": "api-key", "path": key_file.rsplit("/", 1)[1]}]

    def checksum(m: Manifests) -> str:
        return str(m.one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/secret"])

    other = helm.render(ci_values("api-key"), sets=["config.apiKey=another-key"])
    assert checksum(other) != checksum(manifests)
    assert checksum(helm.render(ci_values("api-key"))) == checksum(manifests), "stable for the same values"


def test_demo_mode_needs_no_key(helm: Helm) -> None:
    manifests = helm.render(ci_values("demo"))
    assert manifests.maybe("Secret") is None
    box = container(manifests)
    assert box["args"] == ["--demo"]
    assert "RUNLOOP_API_KEY_FILE" not in env_of(manifests)
    assert {m["name"] for m in box["volumeMounts"]} == {"tmp"}


def test_settings_reach_the_environment(helm: Helm) -> None:
    values = load_yaml(ci_values("extras"))
    manifests = helm.render(ci_values("extras"))
    env = env_of(manifests)
    config = values["config"]
    assert env["RUNLOOP_BASE_URL"] == config["baseUrl"]
    assert env["RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS"] == str(config["syncIntervalSeconds"])
    assert env["RUNLOOP_EXPORTER_PAGE_SIZE"] == str(config["pageSize"])
    assert env["RUNLOOP_EXPORTER_MAX_CONCURRENT_REQUESTS"] == str(config["maxConcurrentRequests"])
    assert env["RUNLOOP_EXPORTER_MAX_REQUESTS_PER_SECOND"] == str(config["maxRequestsPerSecond"])
    assert env["RUNLOOP_EXPORTER_LOG_FORMAT"] == config["logFormat"]
    assert env["RUNLOOP_EXPORTER_LOG_LEVEL"] == config["logLevel"]
    assert env["RUNLOOP_EXPORTER_READ_HEADER_TIMEOUT_SECONDS"] == str(config["readHeaderTimeoutSeconds"])
    assert env["RUNLOOP_EXPORTER_IDLE_TIMEOUT_SECONDS"] == str(config["idleTimeoutSeconds"])
    assert env["RUNLOOP_EXPORTER_MAX_CONNECTIONS"] == str(config["maxConnections"])
    for extra in values["extraEnv"]:
        assert env[extra["name"]] == extra["value"]
    defaults = env_of(helm.render(ci_values("default")))
    assert not {
        "RUNLOOP_EXPORTER_PAGE_SIZE",
        "RUNLOOP_EXPORTER_MAX_CONCURRENT_REQUESTS",
        "RUNLOOP_EXPORTER_MAX_REQUESTS_PER_SECOND",
    } & set(defaults)
    box = container(manifests)
    assert box["args"] == values["extraArgs"]
    assert mount_for(manifests, "/etc/ssl/private-ca/ca.crt")["name"] == "private-ca"
    assert volume(manifests, "private-ca")["configMap"] == {"name": "private-ca-bundle"}
    pod = manifests.one("Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "evals"
    assert pod["metadata"]["annotations"]["example.test/owner"] == "evals"
    for key in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets", "priorityClassName"):
        assert pod["spec"][key] == values[key]
    # An existing ServiceAccount is used, not created.
    assert manifests.maybe("ServiceAccount") is None
    assert pod["spec"]["serviceAccountName"] == values["serviceAccount"]["name"]


def test_jobs_settings_reach_the_environment(helm: Helm) -> None:
    config = load_yaml(ci_values("jobs"))["config"]
    env = env_of(helm.render(ci_values("jobs")))
    assert env["RUNLOOP_EXPORTER_JOBS"] == "false"
    assert env["RUNLOOP_EXPORTER_JOBS_PAGE_SIZE"] == str(config["jobsPageSize"])
    assert env["RUNLOOP_EXPORTER_AGENT_MODEL_MAX_VALUES"] == str(config["agentModelMaxValues"])
    assert env["RUNLOOP_EXPORTER_EXCEPTION_TYPE_MAX_VALUES"] == str(config["exceptionTypeMaxValues"])
    defaults = env_of(helm.render(ci_values("default")))
    assert defaults["RUNLOOP_EXPORTER_JOBS"] == "true"
    assert not {
        "RUNLOOP_EXPORTER_JOBS_PAGE_SIZE",
        "RUNLOOP_EXPORTER_AGENT_MODEL_MAX_VALUES",
        "RUNLOOP_EXPORTER_EXCEPTION_TYPE_MAX_VALUES",
    } & set(defaults)


def test_one_replica_only_and_never_two_at_once(helm: Helm) -> None:
    """One pod per key, also during a rollout: the old pod stops before the new one starts (a rolling
    update would run both while the new one backfills, doubling requests and series)."""
    spec = helm.render(ci_values("default")).one("Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


# --- Service, ServiceMonitor: the selectors must meet ----------------------------------------------------


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_selectors_match_the_pod(helm: Helm, values: Path) -> None:
    manifests = helm.render(values)
    deployment = manifests.one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector
    assert _matches(selector, pod_labels)
    service = manifests.one("Service")
    assert service["spec"]["selector"] == selector
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == container(manifests)["ports"][0]["name"]
    assert service["spec"]["publishNotReadyAddresses"] is True, "a pod that cannot sync must still be scraped"
    policy = manifests.maybe("NetworkPolicy")
    if policy:
        assert policy["spec"]["podSelector"]["matchLabels"] == selector
    monitor = manifests.maybe("ServiceMonitor")
    if monitor:
        assert _matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        assert not _matches(
            monitor["spec"]["selector"]["matchLabels"], {"app.kubernetes.io/instance": "other"}
        )
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]


def _duration(value: Any) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", value)
    return None if ok else f"not a Prometheus duration: {value!r}"


def _label_map(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    return None if ok else f"not a map of strings: {value!r}"


SECRET_KEY_SELECTOR = {"name": str, "key": str, "optional?": bool}
RELABEL = {
    "action?": lambda v: (
        None
        if v
        in {
            "replace",
            "keep",
            "drop",
            "labelmap",
            "labeldrop",
            "labelkeep",
            "hashmod",
            "lowercase",
            "uppercase",
            "keepequal",
            "dropequal",
        }
        else f"bad action {v!r}"
    ),
    "sourceLabels?": [str],
    "separator?": str,
    "targetLabel?": str,
    "regex?": str,
    "modulus?": int,
    "replacement?": str,
}
METADATA = {"name": str, "namespace": str, "labels": _label_map, "annotations?": _label_map}
SERVICE_MONITOR = {
    "apiVersion": lambda v: None if v == OPERATOR_API else v,
    "kind": str,
    "metadata": METADATA,
    "spec": {
        "sampleLimit?": int,
        "namespaceSelector": {"matchNames": [str]},
        "selector": {"matchLabels": _label_map},
        "jobLabel?": str,
        "endpoints": [
            {
                "port": str,
                "path": lambda v: None if isinstance(v, str) and v.startswith("/") else "bad path",
                "scheme": lambda v: None if v in {"http", "https"} else f"bad scheme {v!r}",
                "interval": _duration,
                "scrapeTimeout": _duration,
                "honorLabels": bool,
                "tlsConfig?": {
                    "insecureSkipVerify?": bool,
                    "serverName?": str,
                    "ca?": dict,
                    "cert?": dict,
                    "keySecret?": SECRET_KEY_SELECTOR,
                },
                "basicAuth?": {"username": SECRET_KEY_SELECTOR, "password": SECRET_KEY_SELECTOR},
                "relabelings?": [RELABEL],
                "metricRelabelings?": [RELABEL],
            }
        ],
    },
}
ALERT_RULE = {"alert": str, "expr": str, "for?": _duration, "labels": _label_map, "annotations": _label_map}
RECORDING_RULE = {"record": str, "expr": str, "labels?": _label_map}


def _rule_problem(rule: Any) -> str | None:
    """An alerting rule or a recording rule, each with exactly its own fields."""
    shape = RECORDING_RULE if isinstance(rule, dict) and "record" in rule else ALERT_RULE
    problems = check_shape(rule, shape, "rule")
    return "; ".join(problems) or None


PROMETHEUS_RULE = {
    "apiVersion": lambda v: None if v == OPERATOR_API else v,
    "kind": str,
    "metadata": METADATA,
    "spec": {
        "groups": [
            {
                "name": str,
                "interval?": _duration,
                "rules": [
                    _rule_problem,
                ],
            }
        ]
    },
}


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_operator_objects_are_well_formed(helm: Helm, values: Path) -> None:
    manifests = helm.render(values)
    for doc in manifests.all("ServiceMonitor"):
        assert check_shape(doc, SERVICE_MONITOR) == []
    for doc in manifests.all("PrometheusRule"):
        assert check_shape(doc, PROMETHEUS_RULE) == []


def test_structural_check_catches_mistakes() -> None:
    """The hand-made shapes above are not vacuous."""
    broken = {
        "apiVersion": OPERATOR_API,
        "kind": "ServiceMonitor",
        "metadata": {"name": "x", "namespace": "y", "labels": {"a": 1}},
        "spec": {
            "namespaceSelector": {"matchNames": ["y"]},
            "selector": {"matchLabels": {}},
            "endpoints": [
                {
                    "port": "http",
                    "path": "metrics",
                    "scheme": "tcp",
                    "interval": "30",
                    "scrapeTimeout": "5s",
                    "honorLabels": "no",
                    "intervall": "1m",
                }
            ],
        },
    }
    problems = check_shape(broken, SERVICE_MONITOR)
    for fragment in ("labels", "path", "scheme", "interval", "honorLabels", "intervall: unknown field"):
        assert any(fragment in problem for problem in problems), (fragment, problems)


def test_service_monitor_sample_limit_is_set_above_the_series_budget(helm: Helm) -> None:
    monitor = helm.render(ci_values("servicemonitor")).one("ServiceMonitor")
    assert (
        monitor["spec"]["sampleLimit"]
        == load_yaml(ci_values("servicemonitor"))["serviceMonitor"]["sampleLimit"]
    )
    unset = helm.render(ci_values("default"), sets=["serviceMonitor.enabled=true"]).one("ServiceMonitor")
    assert "sampleLimit" not in unset["spec"], "0, the default, leaves Prometheus' own limit"
    budget = helm.render(
        ci_values("default"),
        sets=["serviceMonitor.enabled=true", "serviceMonitor.sampleLimit=6000", "config.maxSeries=5000"],
    )
    assert budget.one("ServiceMonitor")["spec"]["sampleLimit"] == 6000
    assert env_of(budget)["RUNLOOP_EXPORTER_MAX_SERIES"] == "5000"


def test_service_monitor_sets_the_job_the_alerts_select(helm: Helm) -> None:
    manifests = helm.render(ci_values("servicemonitor"))
    monitor = manifests.one("ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["scheme"] == "http"
    assert endpoint["path"] == "/metrics"
    first, *extra = endpoint["relabelings"]
    assert first == {"action": "replace", "targetLabel": "job", "replacement": "runloop-exporter"}
    assert extra == load_yaml(ci_values("servicemonitor"))["serviceMonitor"]["relabelings"]
    assert endpoint["metricRelabelings"][0]["action"] == "drop"


def test_web_config_tls_switches_probes_and_scrapes_to_https(helm: Helm) -> None:
    manifests = helm.render(ci_values("webconfig"))
    box = container(manifests)
    assert box["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert box["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    web_file = env_of(manifests)["RUNLOOP_EXPORTER_WEB_CONFIG_FILE"]
    assert web_file.endswith("/web-config.yml")
    mount = mount_for(manifests, web_file)
    secret = volume(manifests, mount["name"])["secret"]
    assert secret["secretName"] == "runloop-exporter-web"
    assert "items" not in secret, "the whole Secret, so TLS files next to the config are there too"
    (endpoint,) = manifests.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    assert endpoint["basicAuth"]["password"] == {"name": "runloop-exporter-scrape", "key": "password"}
    assert "RUNLOOP_EXPORTER_WEB_CONFIG_FILE" not in env_of(helm.render(ci_values("default")))


# --- PrometheusRule and dashboard: the very files the tests check --------------------------------------


def test_prometheus_rule_is_the_rules_file(helm: Helm) -> None:
    manifests = helm.render(ci_values("default"), sets=["prometheusRule.enabled=true"])
    rule = manifests.one("PrometheusRule")
    assert rule["spec"] == load_yaml(RULES_FILE)
    assert rule["metadata"]["namespace"] == NAMESPACE


def test_prometheus_rule_options_change_only_what_they_say(helm: Helm) -> None:
    values = load_yaml(ci_values("prometheusrule"))
    rendered = helm.render(ci_values("prometheusrule")).one("PrometheusRule")
    assert rendered["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    expected = load_yaml(RULES_FILE)
    disabled = set(values["prometheusRule"]["disabledAlerts"])
    job = values["serviceMonitor"]["jobName"]
    for group in expected["groups"]:
        group["rules"] = [r for r in group["rules"] if r.get("alert") not in disabled]
        for rule in group["rules"]:
            if "record" in rule:  # its series keep their labels, so the alerts that read them still match
                continue
            rule["labels"] = {**values["prometheusRule"]["additionalRuleLabels"], **rule["labels"]}
            rule["expr"] = rule["expr"].replace('job="runloop-exporter"', f'job="{job}"')
            rule["annotations"] = {
                k: v.replace('job="runloop-exporter"', f'job="{job}"') for k, v in rule["annotations"].items()
            }
    assert rendered["spec"] == expected
    names = [r["alert"] for g in rendered["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert disabled
    assert not disabled & set(names)
    assert any(f'up{{job="{job}"}}' in r["expr"] for g in rendered["spec"]["groups"] for r in g["rules"])


def test_additional_rule_labels_do_not_override_severity(helm: Helm) -> None:
    rendered = helm.render(
        ci_values("default"),
        sets=["prometheusRule.enabled=true", "prometheusRule.additionalRuleLabels.severity=none"],
    ).one("PrometheusRule")
    severities = {
        r["labels"]["severity"] for g in rendered["spec"]["groups"] for r in g["rules"] if "alert" in r
    }
    assert severities <= {"critical", "warning", "info"}


def test_dashboard_config_map_holds_the_dashboard_file(helm: Helm) -> None:
    config_map = helm.render(ci_values("dashboard")).one("ConfigMap")
    assert config_map["data"] == {"runloop-exporter.json": DASHBOARD_FILE.read_text(encoding="utf-8")}
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "grafana"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Runloop"}


def test_dashboard_sidecar_label_is_configurable(helm: Helm) -> None:
    config_map = helm.render(
        ci_values("dashboard"),
        sets=["grafanaDashboard.labels.grafana_dashboard=null", "grafanaDashboard.labels.dash=yes"],
    ).one("ConfigMap")
    assert config_map["metadata"]["labels"]["dash"] == "yes"
    assert "grafana_dashboard" not in config_map["metadata"]["labels"]


def test_network_policy_opens_the_metrics_port_and_the_api(helm: Helm) -> None:
    values = load_yaml(ci_values("networkpolicy"))["networkPolicy"]
    policy = helm.render(ci_values("networkpolicy")).one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress["from"] == values["ingressFrom"]
    egress_ports = sorted((p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"])
    assert egress_ports == [(53, "TCP"), (53, "UDP"), (values["egress"]["apiPort"], "TCP")]
    only_ingress = helm.render(ci_values("default"), sets=["networkPolicy.enabled=true"]).one("NetworkPolicy")
    assert only_ingress["spec"]["policyTypes"] == ["Ingress"]
    assert "from" not in only_ingress["spec"]["ingress"][0]


# --- values: contradictions, schema, documentation ------------------------------------------------------

CONTRADICTIONS = {
    "key-and-existing-secret": (
        ["config.apiKey=k", "config.existingSecret.name=s"],
        "config.apiKey and config.existingSecret.name are both set",
    ),
    "no-key": ([], "no Runloop API key"),
    "demo-with-key": (["config.demo=true", "config.apiKey=k"], "config.demo is true but an API key is given"),
    "tls-without-web-config": (
        ["config.existingSecret.name=s", "webConfig.tls=true"],
        "webConfig.tls is true but webConfig.existingSecret is empty",
    ),
    "egress-without-policy": (
        ["config.existingSecret.name=s", "networkPolicy.egress.enabled=true"],
        "networkPolicy.egress.enabled is true but networkPolicy.enabled is false",
    ),
    "sample-limit-below-the-series-budget": (
        ["config.existingSecret.name=s", "serviceMonitor.enabled=true", "serviceMonitor.sampleLimit=50000"],
        "serviceMonitor.sampleLimit is 50000, below config.maxSeries (100000) + 1000",
    ),
    "claim-without-persistence": (
        ["config.existingSecret.name=s", "persistence.existingClaim=my-claim"],
        "persistence.existingClaim is set but persistence.enabled is false",
    ),
    "unknown-disabled-alert": (
        [
            "config.existingSecret.name=s",
            "prometheusRule.enabled=true",
            "prometheusRule.disabledAlerts={RunloopNope}",
        ],
        'prometheusRule.disabledAlerts names "RunloopNope"',
    ),
}


@pytest.mark.parametrize(("sets", "message"), CONTRADICTIONS.values(), ids=CONTRADICTIONS.keys())
def test_contradictory_values_fail_with_a_clear_message(helm: Helm, sets: list[str], message: str) -> None:
    result = helm.template(sets=sets)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


SCHEMA_REJECTS = {
    "unknown-top-level-key": ["serviceMonitr.enabled=true"],
    "unknown-nested-key": ["config.apikey=k"],
    "unknown-key-in-egress": ["networkPolicy.egress.port=443"],
    "page-size-too-big": ["config.pageSize=5001"],
    "no-concurrency": ["config.maxConcurrentRequests=0"],
    "too-much-concurrency": ["config.maxConcurrentRequests=65"],
    "no-request-rate": ["config.maxRequestsPerSecond=0"],
    "bad-log-format": ["config.logFormat=xml"],
    "bad-sync-mode": ["config.syncMode=sometimes"],
    "reconcile-too-often": ["config.reconcileIntervalSeconds=59"],
    "request-timeout-too-long": ["config.requestTimeoutSeconds=301"],
    "bucket-not-above-zero": ["config.durationBuckets={0,60}"],
    "id-with-a-comma": ["config.includeBenchmarkIds[0]=bmd_a\\,bmd_b"],
    "label-cap-zero": ["config.metadataLabelMaxValues=0"],
    "purpose-not-a-boolean": ["config.purposeLabel=maybe"],
    "port-not-a-number": ["service.port=http"],
    "bad-digest": ["image.digest=latest"],
    "bad-interval": ["serviceMonitor.interval=30"],
    "negative-sample-limit": ["serviceMonitor.sampleLimit=-1"],
    "series-budget-too-small": ["config.maxSeries=10"],
    "stuck-after-zero-hours": ["prometheusRule.thresholds.stuckAfterHours=0"],
    "enabled-not-a-boolean": ["enabled=maybe"],
    "no-access-mode": ["persistence.accessModes={}"],
    "bad-access-mode": ["persistence.accessModes={ReadWriteSometimes}"],
    "size-not-a-quantity": ["persistence.size=big"],
    "negative-checkpoint-interval": ["config.checkpointIntervalSeconds=-1"],
}


@pytest.mark.parametrize("sets", SCHEMA_REJECTS.values(), ids=SCHEMA_REJECTS.keys())
def test_schema_rejects_bad_values(helm: Helm, sets: list[str]) -> None:
    result = helm.template(ci_values("default"), sets=sets)
    assert result.returncode != 0
    assert "schema" in result.stderr.lower() or "at '/" in result.stderr, result.stderr


def _schema_leaves(schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    leaves: list[tuple[str, ...]] = []
    for key, sub in schema.get("properties", {}).items():
        if "properties" in sub:
            assert sub.get("additionalProperties") is False, (
                f"{'.'.join((*prefix, key))} accepts unknown keys"
            )
            leaves += _schema_leaves(sub, (*prefix, key))
        else:
            leaves.append((*prefix, key))
    return leaves


def _values_comments() -> dict[tuple[str, ...], list[str]]:
    """For each key path in values.yaml, the comment lines right above it."""
    found: dict[tuple[str, ...], list[str]] = {}
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    for line in (CHART / "values.yaml").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        match = re.match(r"^( *)([A-Za-z_][\w./-]*):", line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group(2)))
            found[tuple(key for _, key in stack)] = comments
        comments = []
    return found


def test_schema_rejects_unknown_keys_everywhere() -> None:
    assert SCHEMA["additionalProperties"] is False
    _schema_leaves(SCHEMA)


def test_every_value_is_documented_and_in_the_schema() -> None:
    comments = _values_comments()
    leaves = [leaf for leaf in _schema_leaves(SCHEMA) if leaf != ("global",)]
    for leaf in leaves:
        assert leaf in comments, f"{'.'.join(leaf)} is in the schema but not in values.yaml"
        assert any(c.startswith("# --") for c in comments[leaf]), (
            f"{'.'.join(leaf)} has no '# --' description"
        )
    defaults = load_yaml(CHART / "values.yaml")

    def paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        if isinstance(node, dict) and (not prefix or prefix in parents):
            return [p for key, sub in node.items() for p in paths(sub, (*prefix, key))]
        return [prefix]

    parents = {leaf[:i] for leaf in leaves for i in range(1, len(leaf))}
    assert set(paths(defaults)) == set(leaves), "values.yaml and values.schema.json disagree"


def test_schema_accepts_the_defaults_and_every_ci_file(helm: Helm) -> None:
    """Guards the schema against being so strict that a documented setting fails."""
    for values in CI_VALUES:
        assert helm.template(values).returncode == 0, values.name


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_notes_render(helm: Helm, values: Path) -> None:
    """NOTES.txt is only rendered at install time: a template error there would surface only then."""
    result = helm(
        "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE, "-f", str(values)
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "port-forward svc/" in notes
    assert "/metrics" in notes


def test_notes_tell_how_to_reach_metrics(helm: Helm) -> None:
    result = helm(
        "install",
        RELEASE,
        str(CHART),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        "-f",
        str(ci_values("default")),
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"port-forward svc/{RELEASE}-runloop-exporter 9756" in notes
    assert "/metrics" in notes
    assert "job_name: runloop-exporter" in notes


# --- thresholds operators tune, rendered into the rules ----------------------------------------------------

TUNED = {"stuckAfterHours": 2, "failureShare": 0.25, "scoreRegressionMargin": 0.5}


def _rendered_rules(helm: Helm, thresholds: dict[str, float]) -> dict[str, dict[str, Any]]:
    manifests = helm.render(
        ci_values("default"),
        sets=["prometheusRule.enabled=true"],
        set_json=["prometheusRule.thresholds=" + json.dumps(thresholds)],
    )
    return {
        r["alert"]: r
        for g in manifests.one("PrometheusRule")["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    }


def test_thresholds_change_the_rules_and_their_texts(helm: Helm) -> None:
    rules = _rendered_rules(helm, TUNED)
    stuck = rules["RunloopBenchmarkRunStuck"]
    assert "> 2 * 3600" in stuck["expr"]
    assert "more than 2 hours" in stuck["annotations"]["description"]
    ratio = rules["RunloopBenchmarkFailureRatioHigh"]
    assert "> 0.25" in ratio["expr"]
    assert "> 0.5" not in ratio["expr"]
    assert "More than 25% (and at least 3)" in ratio["annotations"]["description"]
    for name in ("RunloopBenchmarkScoreRegression", "RunloopAgentScoreRegression"):
        assert "0.5 * (" in rules[name]["expr"], name
        assert "less than 50% of the mean" in rules[name]["annotations"]["description"], name
    untouched = _rendered_rules(helm, {})
    assert rules["RunloopExporterDown"] == untouched["RunloopExporterDown"]


def test_rendered_thresholds_fire_where_they_say(helm: Helm, promtool: str, tmp_path: Path) -> None:
    """The rendered rules, run by promtool: stuck after 2 hours, a 30% failure share, a drop below half the
    mean (and not one to 55%, which the default 80% would report)."""
    manifests = helm.render(
        ci_values("default"),
        sets=["prometheusRule.enabled=true"],
        set_json=["prometheusRule.thresholds=" + json.dumps(TUNED)],
    )
    groups = manifests.one("PrometheusRule")["spec"]["groups"]
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # their texts are checked above; here, when the rules fire
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    check = run([promtool, "check", "rules", str(tmp_path / "rules.yaml")])
    assert check.returncode == 0, check.stdout + check.stderr
    at = 'job="runloop-exporter",instance="a:9756",benchmark_id="bmd_a"'
    b = 'job="runloop-exporter",instance="a:9756",benchmark_id="bmd_b"'
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f"runloop_benchmark_oldest_running_run_start_timestamp_seconds{{{at}}}",
                        "values": "0x200",
                    },
                    {"series": 'runloop_up{job="runloop-exporter",instance="a:9756"}', "values": "1x200"},
                    # 3 failures and 7 completions from 10m: a 30% share, above 25% (not above the default 50%).
                    {"series": f'runloop_benchmark_runs{{{at},state="failed"}}', "values": "0x10 3x190"},
                    {"series": f'runloop_benchmark_runs{{{at},state="completed"}}', "values": "0x10 7x190"},
                    # Five scored runs of 0.9, then one of 0.45 on bmd_a (55% of the mean of 0.825: below the
                    # default 80%, not below 50%) and one of 0.3 on bmd_b (40% of 0.8: below both).
                    {"series": f"runloop_benchmark_run_score_count{{{at}}}", "values": "0x10 5x10 6x180"},
                    {"series": f"runloop_benchmark_run_score_sum{{{at}}}", "values": "0x10 4.5x10 4.95x180"},
                    {
                        "series": f"runloop_benchmark_last_completed_run_score{{{at}}}",
                        "values": "_x11 0.9x10 0.45x180",
                    },
                    {"series": f"runloop_benchmark_run_score_count{{{b}}}", "values": "0x10 5x10 6x180"},
                    {"series": f"runloop_benchmark_run_score_sum{{{b}}}", "values": "0x10 4.5x10 4.8x180"},
                    {
                        "series": f"runloop_benchmark_last_completed_run_score{{{b}}}",
                        "values": "_x11 0.9x10 0.3x180",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "1h50m", "alertname": "RunloopBenchmarkRunStuck", "exp_alerts": []},
                    {
                        "eval_time": "2h10m",
                        "alertname": "RunloopBenchmarkRunStuck",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "job": "runloop-exporter",
                                    "benchmark_id": "bmd_a",
                                }
                            }
                        ],
                    },
                    {
                        "eval_time": "40m",
                        "alertname": "RunloopBenchmarkFailureRatioHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "job": "runloop-exporter",
                                    "benchmark_id": "bmd_a",
                                }
                            }
                        ],
                    },
                    {
                        "eval_time": "40m",
                        "alertname": "RunloopBenchmarkScoreRegression",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "job": "runloop-exporter",
                                    "benchmark_id": "bmd_b",
                                }
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = run([promtool, "test", "rules", str(tmp_path / "tests.yaml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_rules_file_that_drops_a_threshold_literal_fails_the_render(helm: Helm, tmp_path: Path) -> None:
    """The template replaces literals; if the rules file stops writing one, the render must say so."""
    chart = tmp_path / "runloop-exporter"
    shutil.copytree(CHART, chart, symlinks=False)
    rules = chart / "files" / "alerts.yaml"
    rules.write_text(rules.read_text(encoding="utf-8").replace("> 6 * 3600", "> 21600"), encoding="utf-8")
    result = helm(
        "template", RELEASE, str(chart), "--set", "config.demo=true", "--set", "prometheusRule.enabled=true"
    )
    assert result.returncode != 0
    assert 'RunloopBenchmarkRunStuck no longer writes "6 * 3600"' in result.stderr


# --- as a subchart of an umbrella chart -----------------------------------------------------------------


def umbrella(tmp_path: Path, helm: Helm) -> Path:
    """A parent chart that depends on this one with `condition: runloop-exporter.enabled`, as umbrella
    charts do, its dependency built by the real helm from the chart's folder."""
    parent = tmp_path / "umbrella"
    parent.mkdir()
    (parent / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "umbrella",
                "version": "1.0.0",
                "dependencies": [
                    {
                        "name": "runloop-exporter",
                        "version": str(CHART_META["version"]),
                        "repository": f"file://{CHART}",
                        "condition": "runloop-exporter.enabled",
                    }
                ],
            }
        )
    )
    (parent / "values.yaml").write_text(
        yaml.safe_dump(
            {
                "global": {"imageRegistry": "unused"},
                "runloop-exporter": {"enabled": True, "config": {"demo": True}},
            }
        )
    )
    (parent / "templates").mkdir()
    (parent / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-umbrella\ndata: {}\n"
    )
    built = helm("dependency", "build", str(parent))
    assert built.returncode == 0, built.stdout + built.stderr
    return parent


def test_installs_as_a_subchart_with_a_condition(helm: Helm, tmp_path: Path) -> None:
    """The schema accepts `enabled` (it rejected it: additionalProperties false) and global values, and the
    condition switches the whole chart on and off."""
    parent = umbrella(tmp_path, helm)
    lint = helm("lint", "--strict", str(parent))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    on = helm("template", "u", str(parent), "--namespace", NAMESPACE)
    assert on.returncode == 0, on.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(on.stdout) if doc)
    assert kinds == ["ConfigMap", "Deployment", "Service", "ServiceAccount"]
    off = helm(
        "template", "u", str(parent), "--namespace", NAMESPACE, "--set", "runloop-exporter.enabled=false"
    )
    assert off.returncode == 0, off.stderr
    assert [doc["kind"] for doc in yaml.safe_load_all(off.stdout) if doc] == ["ConfigMap"]
    typo = helm(
        "template", "u", str(parent), "--namespace", NAMESPACE, "--set", "runloop-exporter.enabld=true"
    )
    assert typo.returncode != 0, "the schema still rejects what it does not know"
