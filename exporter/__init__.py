"""runloop-exporter: Prometheus metrics for Runloop benchmark runs."""

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _version() -> str:
    """The installed package's version; pyproject.toml holds the one source of it."""
    try:
        return version("runloop-exporter")
    except PackageNotFoundError:  # a source tree that was never installed: read the source itself
        try:
            with (Path(__file__).resolve().parents[1] / "pyproject.toml").open("rb") as pyproject:
                return str(tomllib.load(pyproject)["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0.0.0+unknown"


__version__ = _version()
