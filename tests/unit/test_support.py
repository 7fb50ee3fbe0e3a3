"""The helpers the deploy tests stand on: a missing tool skips on a laptop but fails under CI."""

from __future__ import annotations

import pytest

from tests.support.deploy import check_shape, metric_names
from tests.support.tools import require_tool

MISSING = "runloop-no-such-tool"


def test_missing_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"install-test-tools\.sh"):
        require_tool(MISSING)


def test_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"CI=true: {MISSING} is not installed"):
        require_tool(MISSING)


def test_metric_names() -> None:
    expr = 'sum(rate(runloop_exporter_api_requests_total{code!~"2.."}[5m])) / up{job="x"} + runloop_up'
    assert metric_names(expr) == {"runloop_exporter_api_requests_total", "runloop_up"}


def test_check_shape() -> None:
    shape = {"a": int, "b?": [str], "c?": {"d": bool}}
    assert check_shape({"a": 1, "b": ["x"], "c": {"d": True}}, shape) == []
    assert check_shape({"a": True}, shape) == ["$.a: expected <class 'int'>, got True"]
    assert check_shape({"b": [1], "e": 0}, shape) == [
        "$.e: unknown field",
        "$.a: missing",
        "$.b[0]: expected <class 'str'>, got 1",
    ]
    assert check_shape({"a": 1, "c": []}, shape) == ["$.c: expected a mapping, got list"]
