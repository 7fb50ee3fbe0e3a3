"""Runloop's answers decoded at wire speed, into typed records that hold only the fields the exporter reads.

Why msgspec into typed records, measured with `./dev bench decode` on the 2-core machine (median CPU ms;
peak MB allocated while decoding). A page of 20 heavy jobs (500 scenarios, 4 agents: 5.25 MB, as the jobs
sync sizes pages; a backfill of 100,000 such jobs reads 35 GB of them):

    json.loads 41.7 ms, 23.8 MB    orjson 30.0 ms, 81.5 MB    msgspec into plain objects 21.3 ms, 18.5 MB
    msgspec into these records 7.3 ms, 3.4 MB (10.5 ms when a record that does not fit splits the page)
    decoded and validated (parse_job), as the sync does: 50.3 ms with json.loads, 9.8 ms now (5 times less)

A page of 5,000 runs (1.2 MB): json.loads 10.8 ms, typed 2.5 ms; with parse_run 38.0 ms, now 22.5 ms.
orjson and plain msgspec still build a dict for every scenario outcome of every job; only a typed decoder
skips what the exporter never reads, and that is where the time and the memory went. msgspec is
maintained, typed for mypy, and ships wheels for CPython 3.11 on PyPI.

How a page is decoded. Whole, into typed records (`RunRecord` and `BenchmarkRecord` in models.py,
`JobRecord` in jobs.py, each a `Record` below), in one pass. If a record does not fit its type (a number where a string was, a null where an object was, a
field missing), the page is split into raw records (its envelope decoded with each record as
`msgspec.Raw`) and each is decoded on its own: those that fit stay typed; one that does not is handed on
as plain JSON (`json.loads` of its own bytes), so that the models validate it exactly as they always did
and give it the same invalid reason, while every other record of the page is kept. A body msgspec refuses
as JSON (NaN or Infinity, a byte-order mark, UTF-16, a lone surrogate escape, nesting too deep) goes to
`json.loads` whole, as before: what the exporter accepted and refused does not change, only its speed.

The new cases a typed decoder raises, each as `json.loads` had it:
- an extra field: ignored (never even read into an object);
- a duplicated key: the last one wins, in a record, in an object within it and in the envelope;
- a null: where the API allows one (`duration_ms`, `score`, `benchmark_id`, ...) it is no value, as it
  was; elsewhere the record does not fit and is validated as plain JSON (a null `state`: `invalid_state`);
- a number where a string was: the record does not fit, so it is validated as plain JSON and gets the
  reason it always had (`state: 5` is `invalid_state`, `benchmark_id: 7` is `invalid_benchmark_id`);
- a huge integer: an int of any size, as `json.loads` gives it, then validated (models.MAX_TIME_MS, the
  0..1 of a score, the bounds of a count; a total_count past int32 is none);
- invalid UTF-8 anywhere in a body: the body is not JSON (RFC 8259 requires UTF-8) and is refused whole,
  `BadResponseError`, as `json.loads` refused it. msgspec checks only the strings it decodes, so the body
  is checked first (`bytes.isascii`, a fraction of a millisecond a page, or a decode when it is not ASCII).

Privacy: a field not named in a record's struct is never materialized, so a well-formed record's
`environment_variables`, `secrets_provided`, `name`, a job's `job_spec` (agent environments, secrets,
kwargs), `inline_yaml`, `failure_reason` text and `exception_message` never exist as Python objects: no
bug, log line or heap dump can show them. A record that does not fit its type is decoded whole as
before, validated into an `Invalid` that holds none of its data, and dropped.
"""

from __future__ import annotations

import json
from typing import Any, Generic, TypeVar

import msgspec

from exporter.runloop.errors import BadResponseError


class Record(msgspec.Struct, gc=False):
    """What every listed record has: an id (validated by the models, like every other field)."""

    id: str


R = TypeVar("R", bound=Record)

# What msgspec raises for a body or record it will not decode: not JSON to it, or not of the type.
# RecursionError: nesting deeper than it goes (json.loads is then asked, and decides as it always did).
_REFUSED = (msgspec.DecodeError, RecursionError)


class Wire(Generic[R]):
    """The decoders of one endpoint's records: its pages (records under `key`) and a single record."""

    def __init__(self, key: str, record_type: type[R]) -> None:
        self._key = key
        self._record = msgspec.json.Decoder(record_type)
        self._typed = msgspec.json.Decoder(_envelope(key, list[record_type]))  # type: ignore[valid-type]
        self._raw = msgspec.json.Decoder(_envelope(key, list[msgspec.Raw]))

    def page(self, content: bytes, endpoint: str) -> tuple[list[Any], bool, int | None]:
        """(records, has_more, total_count) of a list body; each record typed, or plain JSON if it does
        not fit. Raises BadResponseError for a body that is not JSON or not a listing."""
        try:
            page = self._typed.decode(content)
        except _REFUSED:
            return self._split(content, endpoint)
        _check_utf8(content, endpoint)
        return getattr(page, self._key), page.has_more, _total(page.total_count)

    def record(self, content: bytes, endpoint: str) -> Any:
        """One record's body: typed, or plain JSON if it does not fit (BadResponseError if not JSON)."""
        try:
            record = self._record.decode(content)
        except _REFUSED:
            return _plain(content, endpoint)
        _check_utf8(content, endpoint)
        return record

    def _split(self, content: bytes, endpoint: str) -> tuple[list[Any], bool, int | None]:
        """A page with a record that does not fit: each record decoded on its own."""
        try:
            page = self._raw.decode(content)
        except _REFUSED:
            return plain_page(_plain(content, endpoint), self._key)
        _check_utf8(content, endpoint)
        records = [self._one(raw, endpoint) for raw in getattr(page, self._key)]
        return records, page.has_more, _total(page.total_count)

    def _one(self, raw: msgspec.Raw, endpoint: str) -> Any:
        try:
            return self._record.decode(raw)
        except _REFUSED:
            return _plain(bytes(raw), endpoint)  # what json.loads of the whole body gave for this record


def plain_page(body: Any, key: str) -> tuple[list[Any], bool, int | None]:
    """(records, has_more, total_count) of a list body decoded by json.loads, checked as it always was."""
    if not isinstance(body, dict):
        raise BadResponseError("the list body is not a JSON object")
    records = body.get(key)
    has_more = body.get("has_more")
    if not isinstance(records, list):
        raise BadResponseError(f"the list body has no '{key}' array")
    if not isinstance(has_more, bool):
        raise BadResponseError("the list body has no boolean 'has_more'")
    return records, has_more, _total(body.get("total_count"))


# A total_count past this (the API's int32) is no count a listing has; a huge one would overflow the
# page bound computed from it.
MAX_TOTAL = 2**31 - 1


def _total(value: Any) -> int | None:
    """total_count when it can be a count (any other value is taken as none given)."""
    if isinstance(value, bool) or not isinstance(value, int) or value > MAX_TOTAL:
        return None
    return value


def _envelope(key: str, records: Any) -> Any:
    """The struct of a list body: its records, `has_more` and `total_count` (any JSON, checked later)."""
    return msgspec.defstruct(
        f"{key}_page", [(key, records), ("has_more", bool), ("total_count", Any, None)], gc=False
    )


def _plain(content: bytes, endpoint: str) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        raise BadResponseError(f"{endpoint}: the body is not valid JSON") from None


def _check_utf8(content: bytes, endpoint: str) -> None:
    """Refuse a body that is not UTF-8, as json.loads did: msgspec checks only the strings it decodes."""
    if content.isascii():
        return
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        raise BadResponseError(f"{endpoint}: the body is not valid JSON") from None
