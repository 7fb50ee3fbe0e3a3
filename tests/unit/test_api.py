"""RunloopClient at the unit level, over httpx.MockTransport: paging, retries, errors."""

from __future__ import annotations

import email.utils
import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from exporter.runloop.client import (
    MAX_BODY_BYTES,
    USER_AGENT,
    RetryPolicy,
    RunloopClient,
    parse_retry_after,
    record_id,
)
from exporter.runloop.errors import (
    ApiError,
    AuthError,
    BadResponseError,
    CancelledError,
    PaginationError,
    RateLimitedError,
    ResponseTooLargeError,
    TransientError,
    explain,
)

FAST = RetryPolicy(max_retries=3, base_delay_s=0.001, max_delay_s=0.002)


def runs(*ids: str) -> list[dict[str, Any]]:
    return [{"id": i, "state": "running", "start_time_ms": 1, "metadata": {}} for i in ids]


def client_for(
    handler: Callable[[httpx.Request], httpx.Response], **kw: Any
) -> tuple[RunloopClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    kw.setdefault("retry", FAST)
    return RunloopClient(
        "http://127.0.0.1:1", lambda: "secret-key", transport=httpx.MockTransport(record), **kw
    ), seen


def listing(pages: list[tuple[list[dict[str, Any]], bool]]) -> Callable[[httpx.Request], httpx.Response]:
    """Serve pages in order; each is (runs, has_more)."""
    calls = iter(pages)

    def handler(request: httpx.Request) -> httpx.Response:
        page_runs, has_more = next(calls)
        return httpx.Response(200, json={"runs": page_runs, "has_more": has_more, "total_count": None})

    return handler


def read_all(client: RunloopClient, page_size: int) -> list[str | None]:
    return [record_id(r) for page in client.iter_runs_pages(page_size=page_size) for r in page.records]


def test_auth_and_user_agent_headers() -> None:
    client, seen = client_for(listing([([], False)]))
    assert read_all(client, 10) == []
    (req,) = seen
    assert req.headers["Authorization"] == "Bearer secret-key"
    assert req.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("runloop-exporter/")
    assert req.url.path == "/v1/benchmark_runs"
    assert req.url.params["limit"] == "10"
    assert "starting_after" not in req.url.params


def test_empty_list_is_one_request() -> None:
    client, seen = client_for(listing([([], False)]))
    assert read_all(client, 100) == []
    assert len(seen) == 1


def test_exactly_one_full_page() -> None:
    client, seen = client_for(listing([(runs("a", "b", "c"), False)]))
    assert read_all(client, 3) == ["a", "b", "c"]
    assert len(seen) == 1


def test_has_more_on_the_last_page_then_empty_page() -> None:
    client, seen = client_for(listing([(runs("a", "b"), True), ([], False)]))
    assert read_all(client, 2) == ["a", "b"]
    assert [r.url.params.get("starting_after") for r in seen] == [None, "b"]


def test_cursor_is_the_last_id_of_each_page() -> None:
    client, seen = client_for(listing([(runs("a", "b"), True), (runs("c", "d"), True), (runs("e"), False)]))
    assert read_all(client, 2) == ["a", "b", "c", "d", "e"]
    assert [r.url.params.get("starting_after") for r in seen] == [None, "b", "d"]


def test_cursor_skips_a_trailing_record_without_id() -> None:
    client, seen = client_for(listing([([*runs("a", "b"), {"oops": 1}], True), (runs("c"), False)]))
    pages = list(client.iter_runs_pages(page_size=3))
    assert len(pages) == 2
    assert seen[1].url.params["starting_after"] == "b"


def test_page_size_5000_is_sent_as_is() -> None:
    client, seen = client_for(listing([(runs(*[f"r{i}" for i in range(5000)]), False)]))
    assert len(read_all(client, 5000)) == 5000
    assert seen[0].url.params["limit"] == "5000"


def test_total_count_only_asked_on_the_first_page() -> None:
    client, seen = client_for(listing([(runs("a"), True), (runs("b"), False)]))
    list(client.iter_runs_pages(page_size=1, include_total_count=True))
    assert [r.url.params["include_total_count"] for r in seen] == ["true", "false"]


def test_filters_are_passed() -> None:
    client, seen = client_for(listing([([], False)]))
    list(client.iter_runs_pages(page_size=5, state="running", benchmark_id="bmd_1"))
    assert seen[0].url.params["state"] == "running"
    assert seen[0].url.params["benchmark_id"] == "bmd_1"


def test_cursor_that_does_not_advance_stops() -> None:
    client, seen = client_for(lambda r: httpx.Response(200, json={"runs": runs("a", "b"), "has_more": True}))
    with pytest.raises(PaginationError, match="did not advance"):
        read_all(client, 2)
    assert len(seen) == 2


def test_has_more_with_an_empty_page_stops() -> None:
    client, seen = client_for(lambda r: httpx.Response(200, json={"runs": [], "has_more": True}))
    with pytest.raises(PaginationError, match="no id to continue"):
        read_all(client, 2)
    assert len(seen) == 1


def test_has_more_forever_is_bounded_by_total_count() -> None:
    counter = iter(range(10**6))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"runs": runs(f"r{next(counter)}"), "has_more": True, "total_count": 3}
        )

    client, seen = client_for(handler)
    with pytest.raises(PaginationError, match="more than the listing can hold"):
        list(client.iter_runs_pages(page_size=1, include_total_count=True))
    assert len(seen) == 8  # 2 * ceil(3 / 1) + 2


@pytest.mark.parametrize(
    "total", [10**400, 2**31, True, "3", 1.5], ids=["10**400", "2**31", "true", "str", "float"]
)
def test_a_total_count_no_listing_can_have_is_taken_as_none(total: object) -> None:
    body = {"runs": runs("r1", "r2"), "has_more": False, "total_count": total}
    client, _ = client_for(lambda r: httpx.Response(200, json=body))
    pages = list(client.iter_runs_pages(page_size=2, include_total_count=True))  # no OverflowError
    assert [(len(p.records), p.total_count) for p in pages] == [(2, None)]


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_not_retried(status: int) -> None:
    client, seen = client_for(lambda r: httpx.Response(status, json={"error": "nope"}))
    with pytest.raises(AuthError, match="the API key was refused"):
        client.list_runs(limit=1)
    assert len(seen) == 1


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 504])
def test_transient_statuses_are_retried_then_succeed(status: int) -> None:
    answers = iter(
        [
            httpx.Response(status),
            httpx.Response(status),
            httpx.Response(200, json={"runs": [], "has_more": False}),
        ]
    )
    codes: list[str] = []
    client, seen = client_for(lambda r: next(answers), on_request=lambda e, c: codes.append(c))
    assert client.list_runs(limit=1).records == []
    assert len(seen) == 3
    assert codes == [str(status), str(status), "200"]


def test_retries_are_bounded() -> None:
    client, seen = client_for(lambda r: httpx.Response(503))
    with pytest.raises(TransientError, match="503"):
        client.list_runs(limit=1)
    assert len(seen) == 1 + FAST.max_retries


def test_network_errors_are_retried_and_counted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    codes: list[str] = []
    client, _seen = client_for(handler, on_request=lambda e, c: codes.append(c))
    with pytest.raises(TransientError):
        client.list_runs(limit=1)
    assert codes == ["network_error"] * (1 + FAST.max_retries)


def test_timeouts_are_counted_as_such() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    codes: list[str] = []
    client, _ = client_for(handler, on_request=lambda e, c: codes.append(c))
    with pytest.raises(TransientError, match="timed out"):
        client.list_runs(limit=1)
    assert set(codes) == {"timeout"}


def test_malformed_json_and_wrong_shape() -> None:
    client, _ = client_for(lambda r: httpx.Response(200, content=b'{"runs": [{"id": '))
    with pytest.raises(BadResponseError, match="not valid JSON"):
        client.list_runs(limit=1)
    client, _ = client_for(lambda r: httpx.Response(200, json={"items": []}))
    with pytest.raises(BadResponseError, match="'runs'"):
        client.list_runs(limit=1)
    client, _ = client_for(lambda r: httpx.Response(200, json={"runs": [], "has_more": "no"}))
    with pytest.raises(BadResponseError, match="has_more"):
        client.list_runs(limit=1)


MIB = 1024 * 1024


def test_a_body_past_the_bound_is_refused_counted_and_not_read_whole() -> None:
    sent: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:  # a proxy streaming forever: only counting can stop it
            sent.append(MIB)
            yield b" " * MIB

    codes: list[str] = []
    client, seen = client_for(
        lambda r: httpx.Response(200, content=endless()), on_request=lambda e, c: codes.append(c)
    )
    with pytest.raises(ResponseTooLargeError, match=f"/v1/benchmark_runs: .*larger than {MAX_BODY_BYTES}"):
        client.list_runs(limit=1)
    assert isinstance(ResponseTooLargeError("x"), BadResponseError)  # callers treat it as a wrong answer
    assert len(seen) == 1, "not retried: the same answer would come again"
    assert codes == ["too_large"]
    assert sum(sent) <= MAX_BODY_BYTES + MIB


def test_a_declared_length_past_the_bound_is_refused_before_reading() -> None:
    sent: list[int] = []

    def body() -> Iterator[bytes]:
        sent.append(1)
        yield b"{}"

    headers = {"Content-Length": str(MAX_BODY_BYTES + 1)}
    client, _ = client_for(lambda r: httpx.Response(200, headers=headers, content=body()))
    with pytest.raises(ResponseTooLargeError, match=f"{MAX_BODY_BYTES + 1} bytes"):
        client.list_runs(limit=1)
    assert sent == []


def test_a_gzip_bomb_is_counted_after_decompression() -> None:
    bomb = gzip.compress(b" " * (MAX_BODY_BYTES + MIB), compresslevel=9)
    assert len(bomb) < MIB
    headers = {"Content-Encoding": "gzip"}
    client, _ = client_for(lambda r: httpx.Response(200, headers=headers, content=bomb))
    with pytest.raises(ResponseTooLargeError):
        client.list_runs(limit=1)


def test_a_body_at_the_bound_is_read() -> None:
    page = b'{"runs": [], "has_more": false}'
    body = page + b" " * (MAX_BODY_BYTES - len(page))
    client, _ = client_for(lambda r: httpx.Response(200, content=body))
    assert client.list_runs(limit=1).records == []


def test_other_statuses_are_api_errors() -> None:
    client, seen = client_for(lambda r: httpx.Response(400, json={"error": "bad"}))
    with pytest.raises(ApiError, match="400"):
        client.list_runs(limit=1)
    assert len(seen) == 1


def test_get_run_404_is_none_and_ids_are_escaped() -> None:
    client, seen = client_for(lambda r: httpx.Response(404))
    assert client.get_run("bmr/../x y") is None
    assert seen[0].url.raw_path == b"/v1/benchmark_runs/bmr%2F..%2Fx%20y"


def test_rate_limit_short_retry_after_is_honoured() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "0.2"}),
            httpx.Response(200, json={"runs": [], "has_more": False}),
        ]
    )
    limited: list[int] = []
    client, seen = client_for(lambda r: next(answers), on_rate_limited=lambda: limited.append(1))
    started = time.monotonic()
    client.list_runs(limit=1)
    assert time.monotonic() - started >= 0.2
    assert len(seen) == 2
    assert limited == [1]


def test_rate_limit_long_retry_after_holds_every_request_back() -> None:
    client, seen = client_for(lambda r: httpx.Response(429, headers={"Retry-After": "120"}))
    with pytest.raises(RateLimitedError):
        client.list_runs(limit=1)
    with pytest.raises(RateLimitedError, match="no request for another"):
        client.get_run("x")
    assert len(seen) == 1


def test_rate_limit_http_date() -> None:
    when = email.utils.formatdate(time.time() + 300, usegmt=True)
    client, seen = client_for(lambda r: httpx.Response(429, headers={"Retry-After": when}))
    with pytest.raises(RateLimitedError) as info:
        client.list_runs(limit=1)
    assert info.value.retry_at - time.monotonic() > 290
    assert len(seen) == 1


def test_parse_retry_after_forms() -> None:
    now = 1_000_000.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "7"}), now) == 7.0
    assert parse_retry_after(httpx.Headers({"Retry-After-Ms": "1500"}), now) == 1.5
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(httpx.Headers({"Retry-After": date}), now) == pytest.approx(30, abs=1)
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"}), now) is None
    assert parse_retry_after(httpx.Headers({}), now) is None


def test_stop_interrupts_backoff() -> None:
    stop = threading.Event()
    slow = RetryPolicy(max_retries=5, base_delay_s=30, max_delay_s=30)
    client, seen = client_for(lambda r: httpx.Response(503), retry=slow, stop=stop)
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    with pytest.raises(CancelledError):
        client.list_runs(limit=1)
    assert time.monotonic() - started < 10
    assert len(seen) == 1


def test_deadline_refuses_a_backoff_past_it() -> None:
    slow = RetryPolicy(max_retries=5, base_delay_s=30, max_delay_s=30)
    client, seen = client_for(lambda r: httpx.Response(503), retry=slow)
    with pytest.raises(CancelledError, match="deadline"):
        client.list_runs(limit=1, deadline=time.monotonic() + 5)
    assert len(seen) == 1


def test_a_retry_cut_short_by_the_deadline_still_names_what_was_retried() -> None:
    """The first answer is a 503; the retry then runs past the deadline (a read timeout after it)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if len(seen) == 1:
            return httpx.Response(503)
        time.sleep(max(deadline - time.monotonic(), 0) + 0.01)
        raise httpx.ReadTimeout("read timed out", request=request)

    client, seen = client_for(handler)
    # Counted from here, not before the client is built, with room for the 503 and the short backoff
    # on a busy machine: with 0.2 s from the top the deadline sometimes passed before the first request.
    deadline = time.monotonic() + 1.0
    with pytest.raises(CancelledError) as caught:
        client.list_runs(limit=1, deadline=deadline)
    assert len(seen) == 2
    message = str(caught.value)
    assert "503" in message, message
    assert "timed out" in message, message
    assert "deadline" in message, message


def test_key_is_read_per_request() -> None:
    keys = iter(["k1", "k2"])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, content=json.dumps({"runs": [], "has_more": False}))

    client = RunloopClient("http://127.0.0.1:1", lambda: next(keys), transport=httpx.MockTransport(handler))
    client.list_runs(limit=1)
    client.list_runs(limit=1)
    assert seen == ["Bearer k1", "Bearer k2"]


def test_an_unexpected_error_is_explained_by_its_type_only() -> None:
    """A bug's message may carry record data (an agent name, a value): the page and stderr name the type."""
    text = explain(KeyError("agent-name-from-a-record"), "http://127.0.0.1:1")
    assert "KeyError" in text
    assert "agent-name-from-a-record" not in text
    assert "503" in explain(TransientError("HTTP 503"), "http://127.0.0.1:1")
