"""The chart has a value for every exporter setting, and what it renders the exporter's own parser accepts.

Each ci/*-values.yaml is rendered by the real helm, and the container's environment and arguments are
handed to exporter.settings.load_invocation, the very code the exporter starts with: a value the
exporter would refuse (exit 2 at start-up, a crash-looping pod) fails here instead.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from exporter.settings import Settings, SettingsError, load_invocation
from tests.support.deploy import CHART, CI_VALUES, Helm, Manifests, ci_values, load_yaml

CI_IDS = [path.name for path in CI_VALUES]
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
CONFIG_SCHEMA = SCHEMA["properties"]["config"]["properties"]
DEFAULTS = load_yaml(CHART / "values.yaml")["config"]

NOT_CHART_VALUES = {
    "api_key_file": "the chart mounts the key of config.apiKey or config.existingSecret and points here",
    "address": "a pod listens on all its interfaces",
    "port": "fixed at 9756, the container port the Service and the probes name",
    "web_config_file": "webConfig.existingSecret and webConfig.key: the chart mounts the file",
    "state_dir": "the chart mounts the checkpoint's volume (persistence) at /var/lib/runloop-exporter",
}
"""Settings without a config.<camelCase> value, each with the reason."""
NOT_IN_ENV = {"apiKey", "existingSecret"}  # the key goes through a mounted Secret, never the environment
NOT_IN_DEMO = {"baseUrl", "syncIntervalSeconds"}  # demo mode has its own simulator and interval


def camel(field: str) -> str:
    first, *rest = field.split("_")
    return first + "".join(word.title() for word in rest)


def exporter_settings(manifests: Manifests, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What the exporter makes of the rendered container, as it would start in the pod."""
    pod = manifests.one("Deployment")["spec"]["template"]["spec"]
    (box,) = pod["containers"]
    env = {item["name"]: item["value"] for item in box["env"] if "value" in item}
    if "RUNLOOP_API_KEY_FILE" in env:  # the Secret's mount, which exists only in the pod
        key_file = tmp_path / "api-key"
        key_file.write_text("a-key-from-the-secret\n", encoding="utf-8")
        env["RUNLOOP_API_KEY_FILE"] = str(key_file)
    for name in os.environ:
        if name.startswith("RUNLOOP"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_invocation(box.get("args", [])).settings


def expected(value: Any) -> Any:
    """A chart value as the parsed setting holds it."""
    if isinstance(value, list):
        return tuple(value)
    return value


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_the_exporter_accepts_what_the_chart_renders(
    helm: Helm, values: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        settings = exporter_settings(helm.render(values), tmp_path, monkeypatch)
    except SettingsError as exc:
        pytest.fail(f"{values.name}: the exporter would refuse to start:\n" + "\n".join(exc.problems))
    given = (load_yaml(values) or {}).get("config", {})
    skip = NOT_IN_ENV | (NOT_IN_DEMO if given.get("demo") else set())
    by_camel = {camel(field): field for field in Settings.model_fields}
    for key, value in given.items():
        if key in skip:
            continue
        field = by_camel[key]
        assert getattr(settings, field) == expected(value), f"{values.name}: config.{key}"


def test_every_setting_has_a_chart_value() -> None:
    fields = set(Settings.model_fields)
    missing = sorted(f for f in fields - set(NOT_CHART_VALUES) if camel(f) not in DEFAULTS)
    assert missing == [], f"settings without a config value in values.yaml: {missing}"
    assert not {camel(f) for f in NOT_CHART_VALUES} & set(DEFAULTS), "excluded, yet a value exists"
    assert set(NOT_CHART_VALUES) <= fields, "an exclusion names no setting"


def test_every_config_value_is_set_by_some_ci_file() -> None:
    """So that each one is rendered and parsed by the test above."""
    set_somewhere = {key for path in CI_VALUES for key in ((load_yaml(path) or {}).get("config") or {})}
    unset = sorted(set(DEFAULTS) - set_somewhere)
    assert unset == [], f"config values no ci/*-values.yaml sets: {unset}"


def test_schema_bounds_are_the_exporters() -> None:
    """values.schema.json refuses early what the exporter would refuse, and nothing it accepts."""
    words = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum"}
    for field, info in Settings.model_fields.items():
        key = camel(field)
        if key not in CONFIG_SCHEMA:
            continue
        bounds = {
            words[name]: getattr(meta, name)
            for meta in info.metadata
            for name in words
            if getattr(meta, name, None) is not None
        }
        schema = CONFIG_SCHEMA[key]
        items = schema.get("items", {})
        found = {w: schema.get(w, items.get(w)) for w in words.values() if w in schema or w in items}
        if field.endswith("_buckets"):
            bounds = {"exclusiveMinimum": 0}  # checked by the validator: finite and above 0
        assert found == bounds, f"config.{key}: schema {found}, exporter {bounds}"


REFUSED = {
    "timeout-not-below-interval": (["config.syncTimeoutSeconds=60"], "RUNLOOP_EXPORTER_SYNC_TIMEOUT_SECONDS"),
    "buckets-not-increasing": (["config.scoreBuckets={2,1}"], "RUNLOOP_EXPORTER_SCORE_BUCKETS"),
    "bad-regex": (["config.includeBenchmarkNames=eval-("], "RUNLOOP_EXPORTER_INCLUDE_BENCHMARK_NAMES"),
    "clashing-labels": (["config.metadataLabels={a.b,a_b}"], "RUNLOOP_EXPORTER_METADATA_LABELS"),
    "exclude-everything": (
        ["config.includeBenchmarkIds={bmd_x}", "config.excludeBenchmarkIds={bmd_x}"],
        "RUNLOOP_EXPORTER_EXCLUDE_BENCHMARK_IDS",
    ),
}


@pytest.mark.parametrize(("sets", "setting"), REFUSED.values(), ids=REFUSED.keys())
def test_a_value_the_exporter_refuses_fails_here(
    helm: Helm, sets: list[str], setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schema cannot see these (order, regexes, settings together); the exporter's parser does."""
    manifests = helm.render(ci_values("default"), sets=sets)
    with pytest.raises(SettingsError) as refused:
        exporter_settings(manifests, tmp_path, monkeypatch)
    assert any(re.match(rf"{setting}\b", problem) for problem in refused.value.problems), (
        refused.value.problems
    )
