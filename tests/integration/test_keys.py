"""The API key: read from a file that may be rotated, used without a restart, never written to a log.

Also: the user data of a run (`environment_variables`, `secrets_provided`) is never kept or logged.
"""

from __future__ import annotations

import gc
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from exporter.logs import REDACTED, configure
from exporter.metrics.exposition import Rendered
from exporter.metrics.telemetry import Telemetry
from exporter.runloop.apikey import ApiKey
from exporter.runloop.client import RunloopClient
from exporter.settings import Settings
from exporter.simulator import DEFAULT_API_KEY, Simulator, World
from exporter.sync import BenchmarkNames, IncrementalSync, InvalidRecords, SyncConfig
from tests.support.exporter_process import Exporter
from tests.support.logs import json_lines

KEY_ONE = "rl_key_one_7f3a9c1e5b"
KEY_TWO = "rl_key_two_0d8e4b2f6a"  # the same length: only the content changes
ENV_SECRET = "env-value-never-seen"
SECRET_NAME = "SECRET_NAME_NEVER_SEEN"
NOW_MS = 1_760_000_000_000


def seed(world: World) -> None:
    world.add_benchmark("bmd_alpha", "Alpha")
    world.add_run(benchmark_id="bmd_alpha", state="completed", start_ms=NOW_MS, duration_ms=60_000, score=0.5)
    world.add_run(benchmark_id="bmd_alpha", state="running", start_ms=NOW_MS)


class KeyFile:
    """A key file as an operator or Kubernetes writes it: in place, or by swapping a symlinked directory."""

    def __init__(self, root: Path, style: str) -> None:
        self.style = style
        self.root = root
        self.path = root / "api-key"
        self.version = 0

    def write(self, key: str) -> None:
        if self.style == "in_place":
            self.path.write_text(key + "\n")
            return
        # Kubernetes: api-key -> ..data/api-key, ..data -> ..<version>; the ..data link is replaced atomically.
        self.version += 1
        version_dir = self.root / f"..v{self.version}"
        version_dir.mkdir()
        (version_dir / "api-key").write_text(key)
        tmp_link = self.root / "..data_tmp"
        tmp_link.symlink_to(version_dir.name)
        os.replace(tmp_link, self.root / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to(Path("..data") / "api-key")


@pytest.fixture
def seeded(world: World) -> World:
    seed(world)
    return world


@pytest.mark.parametrize("style", ["in_place", "symlink_swap"])
def test_rotated_key_file_is_used_without_restart(
    style: str,
    tmp_path: Path,
    seeded: World,
    simulator: Simulator,
    start_exporter: Callable[..., Exporter],
) -> None:
    keys = tmp_path / "secret"
    keys.mkdir()
    key_file = KeyFile(keys, style)
    key_file.write(KEY_ONE)
    simulator.api_key = KEY_ONE
    exporter = start_exporter(key=None, env={"RUNLOOP_API_KEY_FILE": str(key_file.path)})
    exporter.wait_for_sync()
    assert exporter.proc is not None
    pid = exporter.proc.pid

    simulator.api_key = KEY_TWO  # Runloop now accepts only the new key ...
    failures = exporter.failures()
    exporter.wait_until(lambda: exporter.failures() > failures, 20, "the old key to be refused")
    key_file.write(KEY_TWO)  # ... and the mounted Secret catches up
    scraped = exporter.wait_for_sync()

    assert exporter.proc.pid == pid
    assert exporter.proc.poll() is None
    assert scraped[("runloop_up", frozenset())] == 1
    assert len(json_lines(exporter.logs(), "the API key file changed; using the new key")) == 1
    logs = exporter.logs()
    assert KEY_ONE not in logs
    assert KEY_TWO not in logs


def test_key_file_that_vanishes_keeps_the_previous_key_and_says_so_once(
    tmp_path: Path, seeded: World, simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    path = tmp_path / "api-key"
    path.write_text(DEFAULT_API_KEY)
    exporter = start_exporter(key=None, env={"RUNLOOP_API_KEY_FILE": str(path)})
    exporter.wait_for_sync()
    path.unlink()
    successes = exporter.successes()
    scraped = exporter.wait_for_sync(after=successes + 2)  # three syncs, several requests each
    assert scraped[("runloop_up", frozenset())] == 1
    warnings = json_lines(exporter.logs(), "the API key file cannot be read; keeping the previous key")
    assert len(warnings) == 1
    assert str(path) in warnings[0]["error"]

    simulator.api_key = KEY_TWO
    path.write_text(KEY_TWO)
    exporter.wait_for_sync()
    assert len(json_lines(exporter.logs(), "the API key file changed; using the new key")) == 1
    assert KEY_TWO not in exporter.logs()


# --- redaction ------------------------------------------------------------------------------------


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """The exporter's real logging set-up, writing to a buffer; structlog is reset afterwards."""
    stream = io.StringIO()
    configure("json", "debug", stream)
    yield stream
    structlog.reset_defaults()


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_key_in_a_message_url_exception_or_traceback_is_redacted(
    log_format: str, captured_logs: io.StringIO, tmp_path: Path
) -> None:
    configure(log_format, "debug", captured_logs)
    key = ApiKey(value=SecretStr(KEY_ONE))
    assert key() == KEY_ONE
    path = tmp_path / "key"
    path.write_text(KEY_TWO)
    rotated = ApiKey(path=path)
    assert rotated() == KEY_TWO
    log = structlog.get_logger("test")

    url = f"https://api.runloop.ai/v1/benchmark_runs?token={KEY_ONE}"
    log.error(f"request to {url} failed", url=url, nested={"headers": [f"Bearer {KEY_TWO}"]})
    try:
        raise RuntimeError(f"the server echoed our key {KEY_ONE} and {KEY_TWO}")
    except RuntimeError as exc:
        log.exception("sync crashed", error=repr(exc))
    log.warning("key as a bytes value", raw=f"Bearer {KEY_ONE}".encode())

    out = captured_logs.getvalue()
    assert KEY_ONE not in out
    assert KEY_TWO not in out
    assert out.count(REDACTED) >= 7
    assert "https://api.runloop.ai/v1/benchmark_runs?token=" in out  # the rest stays readable
    assert "Traceback" in out
    assert "the server echoed our key" in out


def test_a_key_in_the_base_url_is_redacted_in_the_real_process(
    simulator: Simulator, start_exporter: Callable[..., Exporter]
) -> None:
    # Someone puts the key where it does not belong: it still never reaches the log.
    exporter = start_exporter(
        key=KEY_ONE, env={"RUNLOOP_BASE_URL": f"{simulator.url}/proxy/{KEY_ONE}?token={KEY_ONE}"}
    )
    exporter.wait_until(lambda: exporter.failures() >= 1, 20, "a sync")
    assert KEY_ONE not in exporter.logs()
    started = json_lines(exporter.logs(), "runloop-exporter started")
    assert started
    assert started[0]["base_url"] == f"{simulator.url}/proxy/{REDACTED}?token={REDACTED}"


def test_the_key_is_held_as_a_secret() -> None:
    key = ApiKey(value=SecretStr(KEY_ONE))
    settings = Settings(api_key=SecretStr(KEY_ONE))
    for text in (repr(key), str(key), repr(settings), str(settings), settings.model_dump_json()):
        assert KEY_ONE not in text


# --- the user data of runs ------------------------------------------------------------------------


def reachable_strings(*roots: object) -> Iterator[str]:
    """Every str or bytes reachable from roots through containers and the exporter's own objects."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            yield obj
        elif isinstance(obj, bytes | bytearray):
            yield obj.decode("utf-8", "replace")
        elif isinstance(obj, dict | list | tuple | set | frozenset) or type(obj).__module__.startswith(
            "exporter."
        ):
            stack.extend(gc.get_referents(obj))


def test_run_environment_variables_and_secrets_are_never_kept_or_logged(
    seeded: World, simulator: Simulator
) -> None:
    for state, score in (("completed", 0.9), ("running", None), ("completed", 7.0)):  # the last invalid
        seeded.add_run(
            benchmark_id="bmd_alpha",
            state=state,
            start_ms=NOW_MS,
            duration_ms=None if state == "running" else 1000,
            score=score,
            name="a run",
            metadata={"team": "evals"},
            environment_variables={"TOKEN": ENV_SECRET},
            secrets_provided={SECRET_NAME: "name-of-secret"},
        )
    telemetry = Telemetry()
    client = RunloopClient(simulator.url, lambda: DEFAULT_API_KEY)
    names = BenchmarkNames(client)
    sync = IncrementalSync(
        client,
        SyncConfig(page_size=2),
        names=names,
        invalid=InvalidRecords(telemetry.count_invalid),
        telemetry=telemetry,
    )
    with structlog.testing.capture_logs() as events:
        snapshots = [sync.run() for _ in range(3)]
    client.close()
    rendered = Rendered.of(snapshots[-1])
    assert snapshots[-1].runs == 4
    assert (
        telemetry.registry.get_sample_value(
            "runloop_exporter_invalid_records_total", {"reason": "invalid_score"}
        )
        == 1
    )
    held = list(reachable_strings(sync, names, snapshots, rendered, events))
    assert len(held) > 10  # the walk did reach the figures (benchmark ids, names, log events)
    assert "bmd_alpha" in held
    for text in held:
        for needle in (ENV_SECRET, SECRET_NAME, "name-of-secret", "evals"):
            assert needle not in text
