"""Benchmark filters: include/exclude by id and name, and on-demand name lookups."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import httpx
import pytest

from exporter.metrics.filters import BenchmarkFilter, compile_name_filter
from exporter.runloop.client import RetryPolicy, RunloopClient
from exporter.runloop.errors import TransientError
from exporter.sync import BenchmarkNames

NAMES: dict[str, str | None] = {
    "bmd_a": "eval-prod",
    "bmd_b": "eval-prod-canary",
    "bmd_c": "smoke",
    "bmd_nameless": None,
}


def name_of(bid: str) -> str | None:
    return NAMES[bid]


def never(bid: str) -> str | None:
    raise AssertionError(f"looked up the name of {bid} although no name filter is set")


def admitted(f: BenchmarkFilter, lookup: Callable[[str], str | None] = name_of) -> set[str | None]:
    return {bid for bid in [*NAMES, None] if f.admits(bid, lookup)}


def test_the_empty_filter_exports_everything_without_looking_names_up() -> None:
    f = BenchmarkFilter()
    assert f.is_empty
    assert admitted(f, never) == {*NAMES, None}


def test_ids_include_exclude_and_exclude_wins() -> None:
    f = BenchmarkFilter(include_ids=frozenset({"bmd_a", "bmd_b"}), exclude_ids=frozenset({"bmd_b"}))
    assert admitted(f, never) == {"bmd_a"}
    assert f.listed_ids() == ["bmd_a"]
    assert admitted(BenchmarkFilter(exclude_ids=frozenset({"bmd_c"})), never) == {
        "bmd_a",
        "bmd_b",
        "bmd_nameless",
        None,
    }


def test_name_regexes_match_the_whole_name() -> None:
    f = BenchmarkFilter(include_names=re.compile("eval-prod"))
    assert admitted(f) == {"bmd_a"}  # not eval-prod-canary: fullmatch, not search
    f = BenchmarkFilter(include_names=re.compile("eval-.*"))
    assert admitted(f) == {"bmd_a", "bmd_b"}
    f = BenchmarkFilter(exclude_names=re.compile(".*canary"))
    assert admitted(f) == {"bmd_a", "bmd_c", "bmd_nameless", None}


def test_runs_without_a_benchmark_pass_only_when_no_include_filter_is_set() -> None:
    assert not BenchmarkFilter(include_ids=frozenset({"bmd_a"})).admits(None, never)
    assert not BenchmarkFilter(include_names=re.compile(".*")).admits(None, never)
    assert BenchmarkFilter(exclude_ids=frozenset({"bmd_a"}), exclude_names=re.compile(".*")).admits(
        None, never
    )


def test_a_nameless_benchmark_fails_include_names_and_passes_exclude_names() -> None:
    assert not BenchmarkFilter(include_names=re.compile(".*")).admits("bmd_nameless", name_of)
    assert BenchmarkFilter(exclude_names=re.compile(".*")).admits("bmd_nameless", name_of)


@pytest.mark.parametrize(
    ("include", "exclude"),
    [
        (
            BenchmarkFilter(include_ids=frozenset({"bmd_a", "bmd_c"})),
            BenchmarkFilter(exclude_ids=frozenset({"bmd_a", "bmd_c"})),
        ),
        (
            BenchmarkFilter(include_names=re.compile("eval-.*")),
            BenchmarkFilter(exclude_names=re.compile("eval-.*")),
        ),
        (BenchmarkFilter(include_names=re.compile(".*")), BenchmarkFilter(exclude_names=re.compile(".*"))),
    ],
)
def test_a_filter_and_its_opposite_split_the_account_exactly(
    include: BenchmarkFilter, exclude: BenchmarkFilter
) -> None:
    left, right = admitted(include), admitted(exclude)
    assert left & right == set()
    assert left | right == {*NAMES, None}


def test_name_filters_are_decided_by_the_name_only_once_ids_pass() -> None:
    asked: list[str] = []

    def lookup(bid: str) -> str | None:
        asked.append(bid)
        return NAMES[bid]

    f = BenchmarkFilter(include_ids=frozenset({"bmd_a"}), include_names=re.compile("eval-.*"))
    assert [bid for bid in NAMES if f.admits(bid, lookup)] == ["bmd_a"]
    assert asked == ["bmd_a"]  # ids that fail the id filter cost no lookup


def test_compile_name_filter() -> None:
    assert compile_name_filter(None) is None
    assert compile_name_filter("") is None
    pattern = compile_name_filter("a|b")
    assert pattern is not None
    assert pattern.fullmatch("b")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        compile_name_filter("(unclosed")


# --- BenchmarkNames.name_of ------------------------------------------------------------------------


def names_over(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[BenchmarkNames, list[str]]:
    paths: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return handler(request)

    client = RunloopClient(
        "http://127.0.0.1:1",
        lambda: "key",
        transport=httpx.MockTransport(record),
        retry=RetryPolicy(max_retries=0),
    )
    return BenchmarkNames(client), paths


def test_name_of_lists_once_then_looks_up_by_id_and_caches_every_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/benchmarks":
            body = {"benchmarks": [{"id": "bmd_a", "name": "A"}], "has_more": False, "total_count": None}
            return httpx.Response(200, json=body)
        if path == "/v1/benchmarks/bmd_archived":
            return httpx.Response(200, json={"id": "bmd_archived", "name": "Old"})
        return httpx.Response(404, json={"error": "no such benchmark"})

    names, paths = names_over(handler)
    for _ in range(3):
        assert names.name_of("bmd_a") == "A"
        assert names.name_of("bmd_archived") == "Old"
        assert names.name_of("bmd_gone") is None
    assert paths == ["/v1/benchmarks", "/v1/benchmarks/bmd_archived", "/v1/benchmarks/bmd_gone"]
    assert names.names == {"bmd_a": "A", "bmd_archived": "Old"}


def test_name_of_raises_when_the_lookup_fails_and_asks_again_next_time() -> None:
    calls = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        if next(calls) < 2:  # the listing, then the lookup by id
            return httpx.Response(503)
        return httpx.Response(200, json={"id": "bmd_x", "name": "X"})

    names, paths = names_over(handler)
    with pytest.raises(TransientError):
        names.name_of("bmd_x")
    assert names.name_of("bmd_x") == "X"
    assert paths == ["/v1/benchmarks", "/v1/benchmarks/bmd_x", "/v1/benchmarks/bmd_x"]
