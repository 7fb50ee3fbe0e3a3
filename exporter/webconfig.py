"""Placeholder: the exporter-toolkit web config (TLS, basic auth) is being written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class WebConfigError(Exception):
    """The web config file is unreadable or invalid; the message says which field."""


@dataclass(frozen=True)
class WebConfig:
    """TLS and basic-auth settings for the HTTP server."""


def load_web_config(path: Path) -> WebConfig:
    """Read and validate a web config file."""
    raise WebConfigError("not implemented yet")
