"""Fixtures of the deploy tests: the external tools they drive."""

from __future__ import annotations

import os

import pytest

from tests.support.deploy import Helm
from tests.support.tools import require_tool


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm, with its cache, config and data in a temporary folder."""
    path = require_tool("helm")
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )
    return Helm(path, env)
