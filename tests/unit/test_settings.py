"""Settings: names that must and must not be read, and problems reported together."""

from __future__ import annotations

import pytest

from exporter.settings import SettingsError, load_invocation


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("RUNLOOP") or name in ("API_KEY", "API_KEY_FILE", "BASE_URL"):
            monkeypatch.delenv(name)


def test_bare_names_common_in_containers_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASE_URL", "http://127.0.0.1:1/elsewhere")
    monkeypatch.setenv("API_KEY", "someone-elses-key")
    monkeypatch.setenv("RUNLOOP_API_KEY", "the-runloop-key")
    settings = load_invocation([]).settings
    assert settings.base_url == "https://api.runloop.ai"
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "the-runloop-key"


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLOOP_BASE_URL", "http://127.0.0.1:2")
    monkeypatch.setenv("RUNLOOP_API_KEY", "k")
    assert load_invocation(["--base-url", "http://127.0.0.1:3/"]).settings.base_url == "http://127.0.0.1:3"


def test_a_missing_key_is_reported_with_other_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLOOP_EXPORTER_PORT", "0")
    with pytest.raises(SettingsError) as info:
        load_invocation([])
    assert len(info.value.problems) == 2
    assert "RUNLOOP_EXPORTER_PORT" in info.value.problems[0]
    assert "RUNLOOP_API_KEY or RUNLOOP_API_KEY_FILE is required" in info.value.problems[1]


def test_demo_needs_no_key_even_with_other_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLOOP_EXPORTER_PORT", "0")
    with pytest.raises(SettingsError) as info:
        load_invocation(["--demo"])
    assert len(info.value.problems) == 1
