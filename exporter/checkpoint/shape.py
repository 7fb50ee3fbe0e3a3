"""Strict reading of a checkpoint's JSON: each value checked for the type and range it must have.

A checkpoint is only ever used whole: the first value out of shape raises `CorruptError`, and the part reads
in full as if there were none. Nothing here trusts the file (a truncated or hand-edited one, or one of a
future format that kept the version number by mistake).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class CorruptError(ValueError):
    """A checkpoint's content is not what this exporter writes."""


def obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise CorruptError(f"{what}: not an object")
    return value


def items(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise CorruptError(f"{what}: not a list")
    return value


def field(value: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in value:
        raise CorruptError(f"{what}: {name} is missing")
    return value[name]


def count(value: Any, what: str) -> int:
    """A whole number from 0 up."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CorruptError(f"{what}: not a count")
    return value


def integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CorruptError(f"{what}: not a whole number")
    return value


def number(value: Any, what: str) -> float:
    """A finite number (a whole one is taken as a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CorruptError(f"{what}: not a finite number")
    return float(value)


def score(value: Any, what: str) -> float:
    found = number(value, what)
    if not 0.0 <= found <= 1.0:
        raise CorruptError(f"{what}: not a score from 0 to 1")
    return found


def text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise CorruptError(f"{what}: not a non-empty string")
    return value


def maybe_text(value: Any, what: str) -> str | None:
    return None if value is None else text(value, what)


def maybe_flag(value: Any, what: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise CorruptError(f"{what}: not true, false or null")
    return value


def flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise CorruptError(f"{what}: not true or false")
    return value


def counts(value: Any, what: str) -> dict[str, int]:
    """An object of counts by name."""
    return {text(name, what): count(n, what) for name, n in obj(value, what).items()}


def pair(value: Any, what: str) -> tuple[Any, Any]:
    found = items(value, what)
    if len(found) != 2:
        raise CorruptError(f"{what}: not a pair")
    return found[0], found[1]
