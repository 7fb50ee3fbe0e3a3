"""Fixtures every test folder shares, and the run's shared folder (what runs once per run lives there)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.e2e_stack import launch, one_test_done, stop_shared_stack
from tests.support.once import hand_to_worker, make_run_folder, owner_pid, remove_run_folder, run_folder
from tests.support.tools import find_tool, require_tool

_SUMMARY = pytest.StashKey[str]()
_STACK_TESTS = pytest.StashKey[int]()  # how many of the run's tests use the e2e stack


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (Debian's prometheus package)."""
    return require_tool("promtool")


_FOLDER_MARKS = {
    "unit": pytest.mark.unit,
    "integration": pytest.mark.integration,
    "deploy": pytest.mark.deploy,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder, so `./dev test -m unit` is the inner loop's fast path."""
    for item in items:
        folder = item.path.parent.name
        if folder in _FOLDER_MARKS:
            item.add_marker(_FOLDER_MARKS[folder])


def pytest_configure(config: pytest.Config) -> None:
    make_run_folder(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: each worker gets the run's folder."""
    hand_to_worker(node.config, node.workerinput)


def _uses_the_stack(item: pytest.Item) -> bool:
    return "stack" in getattr(item, "fixturenames", ())


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the e2e stack as soon as a test that needs it is collected: it warms up meanwhile."""
    config = session.config
    config.stash[_STACK_TESTS] = sum(map(_uses_the_stack, session.items))
    if config.stash[_STACK_TESTS] and not config.option.collectonly and find_tool("prometheus") is not None:
        launch(run_folder(config), owner_pid(config))


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _uses_the_stack(item):
        one_test_done(run_folder(item.config), item.config.stash[_STACK_TESTS])


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In the controller, once every worker is done: stop what was shared."""
    if not hasattr(session.config, "workerinput"):
        line = stop_shared_stack(run_folder(session.config))
        if line is not None:
            session.config.stash[_SUMMARY] = line


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if _SUMMARY in config.stash:
        terminalreporter.write_line(config.stash[_SUMMARY])


def pytest_unconfigure(config: pytest.Config) -> None:
    remove_run_folder(config)
