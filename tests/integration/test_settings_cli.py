"""Bad settings: exit code 2, one line per problem naming the setting, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.exporter_process import run_cli
from tests.support.ports import free_port

KEY = {"RUNLOOP_API_KEY": "k3y-value"}


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        ([], {}, ["RUNLOOP_API_KEY"]),
        ([], {"RUNLOOP_API_KEY": "   "}, ["RUNLOOP_API_KEY"]),
        ([], {**KEY, "RUNLOOP_API_KEY_FILE": "/etc/hostname"}, ["RUNLOOP_API_KEY_FILE"]),
        ([], {"RUNLOOP_API_KEY_FILE": "/nonexistent/key"}, ["RUNLOOP_API_KEY_FILE"]),
        ([], {**KEY, "RUNLOOP_BASE_URL": "ftp://example"}, ["RUNLOOP_BASE_URL"]),
        ([], {**KEY, "RUNLOOP_EXPORTER_PORT": "70000"}, ["RUNLOOP_EXPORTER_PORT"]),
        (["--port", "http"], KEY, ["--port"]),
        (
            [],
            {**KEY, "RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": "0"},
            ["RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS"],
        ),
        ([], {**KEY, "RUNLOOP_EXPORTER_PAGE_SIZE": "0"}, ["RUNLOOP_EXPORTER_PAGE_SIZE"]),
        (["--page-size", "5001"], KEY, ["RUNLOOP_EXPORTER_PAGE_SIZE"]),
        ([], {**KEY, "RUNLOOP_EXPORTER_LOG_FORMAT": "xml"}, ["RUNLOOP_EXPORTER_LOG_FORMAT"]),
        ([], {**KEY, "RUNLOOP_EXPORTER_LOG_LEVEL": "loud"}, ["RUNLOOP_EXPORTER_LOG_LEVEL"]),
        ([], {**KEY, "RUNLOOP_EXPORTER_SCORE_BUCKETS": "0.5,0.2"}, ["RUNLOOP_EXPORTER_SCORE_BUCKETS"]),
        ([], {**KEY, "RUNLOOP_EXPORTER_DURATION_BUCKETS": "60,inf"}, ["RUNLOOP_EXPORTER_DURATION_BUCKETS"]),
        ([], {**KEY, "RUNLOOP_EXPORTER_DURATION_BUCKETS": "a,b"}, ["RUNLOOP_EXPORTER_DURATION_BUCKETS"]),
        (
            [],
            {**KEY, "RUNLOOP_EXPORTER_PAGE_SIZE": "0", "RUNLOOP_EXPORTER_LOG_LEVEL": "x"},
            ["PAGE_SIZE", "LOG_LEVEL"],
        ),
        (["--no-such-flag"], KEY, ["--no-such-flag"]),
        (
            ["--no-such-flag", "--sync-interval-seconds", "10"],
            {"RUNLOOP_EXPORTER_PAGE_SIZE": "0", "RUNLOOP_EXPORTER_SYNC_TIMEOUT_SECONDS": "20"},
            ["--no-such-flag", "PAGE_SIZE", "SYNC_TIMEOUT_SECONDS", "RUNLOOP_API_KEY"],
        ),
        (
            [],
            {**KEY, "RUNLOOP_EXPORTER_READ_HEADER_TIMEOUT_SECONDS": "0"},
            ["RUNLOOP_EXPORTER_READ_HEADER_TIMEOUT_SECONDS"],
        ),
        (["--idle-timeout-seconds", "soon"], KEY, ["RUNLOOP_EXPORTER_IDLE_TIMEOUT_SECONDS"]),
        ([], {**KEY, "RUNLOOP_EXPORTER_MAX_CONNECTIONS": "0"}, ["RUNLOOP_EXPORTER_MAX_CONNECTIONS"]),
    ],
)
def test_invalid_settings_exit_2_with_one_line_each(
    args: list[str], env: dict[str, str], names: list[str]
) -> None:
    result = run_cli(args, env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(names), result.stderr
    for line, name in zip(lines, names, strict=True):
        assert name in line
        assert line.startswith("runloop-exporter: ")
    assert "Traceback" not in result.stderr
    assert "k3y-value" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_port_in_use_is_a_clear_error() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        result = run_cli(
            ["--address", "127.0.0.1", "--port", str(port)], {**KEY, "RUNLOOP_BASE_URL": "http://127.0.0.1:9"}
        )
    assert result.returncode == 2
    assert "RUNLOOP_EXPORTER_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_key_file_with_surrounding_whitespace_is_accepted(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("  abc-key\n")
    result = run_cli(["--help"], {"RUNLOOP_API_KEY_FILE": str(key_file)})
    assert result.returncode == 0
    assert "RUNLOOP_EXPORTER_PAGE_SIZE" in result.stdout


def test_version_flag() -> None:
    result = run_cli(["--version"], {})
    assert result.returncode == 0
    assert result.stdout.startswith("runloop-exporter ")
