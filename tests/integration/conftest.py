"""Fixtures: a simulator world on 127.0.0.1 and exporter processes pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.simulator import DEFAULT_API_KEY, Simulator, World
from tests.support.exporter_process import Exporter


@pytest.fixture
def world() -> World:
    return World(order="newest_first", seed=7)


@pytest.fixture
def simulator(world: World) -> Iterator[Simulator]:
    with Simulator(world) as sim:
        yield sim


@pytest.fixture
def start_exporter(simulator: Simulator, tmp_path: Path) -> Iterator[Callable[..., Exporter]]:
    """Start exporters against the simulator; they are stopped after the test."""
    started: list[Exporter] = []

    def start(*args: str, env: dict[str, str] | None = None, key: str | None = DEFAULT_API_KEY) -> Exporter:
        base = {"RUNLOOP_BASE_URL": simulator.url, "RUNLOOP_EXPORTER_SYNC_INTERVAL_SECONDS": "1"}
        if key is not None:
            base["RUNLOOP_API_KEY"] = key
        base.update(env or {})
        exporter = Exporter(list(args), base)
        started.append(exporter)
        return exporter.start(tmp_path)

    yield start
    for exporter in started:
        exporter.stop()
