"""The World's compact storage pieces: run ids, interned strings, typed checks and sorted slot indexes.

Generated run ids are a bijection of the slot number (no memory for a million of them); strings that
repeat (states, benchmark ids, names) are interned to small codes with their JSON pre-encoded; nullable
columns keep typed arrays with sentinels; an index is a sorted ``array`` of slots.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from typing import Final

from exporter.simulator.wire import dumps

# Sentinels that keep nullable columns in typed arrays: duration null <-> INT64 min, score null <-> NaN.
NULL_INT: Final = -(2**63)
NAN: Final = math.nan

# Generated run ids are a bijection of the slot number, scrambled so they do not sort by creation time
# (nothing may rely on ids being ordered) and decodable so that a million ids cost no memory at all.
_ID_BITS: Final = 40
_ID_MASK: Final = (1 << _ID_BITS) - 1
_ID_MUL: Final = 0x9E3779B97F  # odd, hence invertible modulo 2**40
_ID_ADD: Final = 0x5DEECE66D
_ID_INV: Final = pow(_ID_MUL, -1, 1 << _ID_BITS)
ID_PREFIX: Final = "bmr_"
_ID_LEN: Final = len(ID_PREFIX) + 10


def gen_id(slot: int) -> str:
    """The generated id of a slot: ``bmr_`` and 10 hex digits."""
    return f"{ID_PREFIX}{(slot * _ID_MUL + _ID_ADD) & _ID_MASK:010x}"


def decode_id(run_id: str) -> int | None:
    """The slot a generated id stands for, or None when the string is not a generated id."""
    if len(run_id) != _ID_LEN or not run_id.startswith(ID_PREFIX):
        return None
    digits = run_id[len(ID_PREFIX) :]
    try:
        number = int(digits, 16)
    except ValueError:
        return None
    if f"{number:010x}" != digits:  # rejects upper case, signs, "0x", underscores, spaces
        return None
    return ((number - _ID_ADD) * _ID_INV) & _ID_MASK


class Interner:
    """Maps repeated strings (states, benchmark ids, names) to small codes with their JSON pre-encoded.

    Code 0 is reserved for null, so a run's column holds an int and rendering is a list lookup.
    """

    def __init__(self) -> None:
        self.values: list[str | None] = [None]
        self.json: list[str] = ["null"]
        self.codes: dict[str, int] = {}

    def code(self, value: str | None) -> int:
        """The code of value, allocating one when new."""
        if value is None:
            return 0
        found = self.codes.get(value)
        if found is not None:
            return found
        new = len(self.values)
        self.values.append(value)
        self.json.append(dumps(value))
        self.codes[value] = new
        return new


EMPTY: Final[array[int]] = array("q")  # shared, never mutated


def opt_str(name: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")


def req_str(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"{name} must be a str, not {type(value).__name__}")


def req_int(name: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"{name} must be an int, not {type(value).__name__}")


def opt_int(name: str, value: object) -> int:
    """An int column value; None becomes the null sentinel."""
    return NULL_INT if value is None else req_int(name, value)


def opt_float(name: str, value: object) -> float:
    """A float column value; None becomes NaN (rendered as null)."""
    if value is None:
        return NAN
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if math.isinf(number):
            raise ValueError(f"{name} must be finite")
        return number
    raise TypeError(f"{name} must be a number or None, not {type(value).__name__}")


def index_remove(index: array[int], slot: int) -> None:
    pos = bisect_left(index, slot)
    if pos < len(index) and index[pos] == slot:
        del index[pos]


def index_add(index: array[int], slot: int) -> None:
    pos = bisect_left(index, slot)
    if pos == len(index) or index[pos] != slot:
        index.insert(pos, slot)
