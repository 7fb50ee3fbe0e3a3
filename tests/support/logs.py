"""The exporter logs JSON lines (structlog); tests read them back as dicts."""

from __future__ import annotations

import json
from typing import Any


def json_lines(text: str, event: str | None = None) -> list[dict[str, Any]]:
    """Every JSON object line of `text` (other lines are skipped), only those of `event` when given."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict) and (event is None or parsed.get("event") == event):
            out.append(parsed)
    return out
