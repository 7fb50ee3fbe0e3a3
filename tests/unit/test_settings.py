"""Settings: names that must and must not be read, and problems reported together."""

from __future__ import annotations

import pytest

from exporter.settings import OPTIONS, SettingsError, _Option, accepts, load_invocation


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
    assert info.value.problems[1] == (
        "RUNLOOP_API_KEY (--api-key) or RUNLOOP_API_KEY_FILE (--api-key-file) is required (or --demo)"
    )


def test_demo_needs_no_key_even_with_other_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLOOP_EXPORTER_PORT", "0")
    with pytest.raises(SettingsError) as info:
        load_invocation(["--demo"])
    assert len(info.value.problems) == 1


# --- every problem in one run, in our words ---------------------------------------------------------


def problems_of(argv: list[str]) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_invocation(argv)
    return info.value.problems


def test_the_example_of_the_issue_word_for_word(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLOOP_EXPORTER_PAGE_SIZE", "0")
    assert problems_of(["--demo"]) == [
        "RUNLOOP_EXPORTER_PAGE_SIZE (--page-size): must be a whole number from 1 to 5000, not 0"
    ]


def test_field_errors_checks_across_settings_and_flags_are_reported_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNLOOP_EXPORTER_LOG_LEVEL", "loud")
    monkeypatch.setenv("RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS", "10")
    monkeypatch.setenv("RUNLOOP_EXPORTER_INCLUDE_BENCHMARK_IDS", "bmd_a")
    monkeypatch.setenv("RUNLOOP_API_KEY", "s3cret-key")
    argv = [
        "--no-such-flag",
        "--page-size=0",
        "--score-buckets=0.5,0.2",
        "--sync-timeout-seconds=20",
        "--exclude-benchmark-ids=bmd_a",
        "--api-key-file=/nonexistent/key",
    ]
    assert problems_of(argv) == [
        "--no-such-flag: no such flag (see runloop-exporter --help)",
        "RUNLOOP_EXPORTER_PAGE_SIZE (--page-size): must be a whole number from 1 to 5000, not 0",
        "RUNLOOP_EXPORTER_LOG_LEVEL (--log-level): must be debug, info, warning or error, not loud",
        "RUNLOOP_EXPORTER_SCORE_BUCKETS (--score-buckets): must be comma-separated numbers above 0 in"
        " increasing order, not 0.5,0.2 (0.2 does not come after 0.5)",
        "RUNLOOP_EXPORTER_EXCLUDE_BENCHMARK_IDS (--exclude-benchmark-ids): removes every id of"
        " RUNLOOP_EXPORTER_INCLUDE_BENCHMARK_IDS (--include-benchmark-ids), so nothing would be exported",
        "RUNLOOP_EXPORTER_SYNC_TIMEOUT_SECONDS (--sync-timeout-seconds): must be less than"
        " RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS (--sync-interval-seconds), which is 10, not 20",
        "RUNLOOP_API_KEY (--api-key) and RUNLOOP_API_KEY_FILE (--api-key-file): give one of them, not both",
    ]


def test_a_check_across_settings_is_skipped_when_one_of_them_is_invalid() -> None:
    # The interval is wrong already; comparing the timeout with it (or with its default) would mislead.
    assert problems_of(["--demo", "--sync-interval-seconds=0", "--sync-timeout-seconds=90"]) == [
        "RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS (--sync-interval-seconds): must be a number of seconds"
        " from 1 to 86400, not 0"
    ]


def test_the_key_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLOOP_API_KEY", " \t ")
    monkeypatch.setenv("RUNLOOP_EXPORTER_PORT", "http")
    problems = problems_of([])
    assert problems == [
        "RUNLOOP_EXPORTER_PORT (--port): must be a whole number from 1 to 65535, not http",
        "RUNLOOP_API_KEY (--api-key): must be a Runloop API key, not empty",
    ]


@pytest.mark.parametrize(
    "option", [o for o in OPTIONS if accepts(o.field) not in ("text", "a file path")], ids=lambda o: o.field
)
def test_every_setting_that_can_be_wrong_says_what_it_accepts(option: _Option) -> None:
    """Also the settings added later: a wrong value names the setting, what it takes and what it got."""
    bad = "a.b,a_b" if option.field == "metadata_labels" else "(bad value"  # the only wrong keys: a clash
    if option.field == "state_dir":
        bad = __file__  # the only wrong directory: a path that exists and is not one
    problems = problems_of(["--demo", f"{option.flag}={bad}"])
    assert len(problems) == 1, problems
    shown = bad if " " not in bad else repr(bad)
    assert problems[0].startswith(
        f"{option.env} ({option.flag}): must be {accepts(option.field)}, not {shown}"
    )
    assert "Input should" not in problems[0]
    assert "Value error" not in problems[0]


def test_what_numbers_accept_is_read_from_their_bounds() -> None:
    assert accepts("port") == "a whole number from 1 to 65535"
    assert accepts("request_timeout_seconds") == "a number of seconds above 0 and up to 300"
    assert accepts("reconcile_interval_seconds") == "a number of seconds from 60 up"
    assert accepts("sync_timeout_seconds") == "a number of seconds above 0"
    assert accepts("sync_mode") == "incremental or full"
    assert accepts("purpose_label") == "true or false"
