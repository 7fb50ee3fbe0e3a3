"""What every part of the simulated API shares on the wire: page sizes, refusals and compact JSON.

A refusal is raised as :class:`SimulatedApiError` anywhere below the HTTP layer (the World, the job
store, the query parsing) and becomes an HTTP status with ``{"error": message}``. Its name keeps it
apart from the exporter's own ``ApiError``, which is the client's view of such an answer.
"""

from __future__ import annotations

import json
from typing import Final

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 5000

Response = tuple[int, bytes, dict[str, str]]
"""An answer: status, body and headers."""


class SimulatedApiError(Exception):
    """A request the simulated API refuses: becomes an HTTP status with ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def dumps(value: object) -> str:
    """Compact JSON, as an API would send it."""
    return json.dumps(value, separators=(",", ":"))


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The answer to a refused request."""
    return status, dumps({"error": message}).encode(), headers or {}
