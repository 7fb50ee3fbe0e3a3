"""The helpers the tests stand on: a missing tool skips on a laptop but fails under CI; the suite's own
exposition parser reads what prometheus_client's reads; one way to wait."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics.exposition import Rendered, render_registry
from exporter.metrics.telemetry import Telemetry
from tests.support.deploy import check_shape, metric_names
from tests.support.exporter_process import SyncReading
from tests.support.ports import free_port
from tests.support.samples import Samples, parse
from tests.support.tools import require_tool
from tests.support.waiting import Child, NotYet, answers, get_json, wait_until
from tests.unit.test_exposition import rich_snapshot

MISSING = "runloop-no-such-tool"


def test_missing_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"install-test-tools\.sh"):
        require_tool(MISSING)


def test_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"CI=true: {MISSING} is not installed"):
        require_tool(MISSING)


def test_metric_names() -> None:
    expr = 'sum(rate(runloop_exporter_api_requests_total{code!~"2.."}[5m])) / up{job="x"} + runloop_up'
    assert metric_names(expr) == {"runloop_exporter_api_requests_total", "runloop_up"}


def test_check_shape() -> None:
    shape = {"a": int, "b?": [str], "c?": {"d": bool}}
    assert check_shape({"a": 1, "b": ["x"], "c": {"d": True}}, shape) == []
    assert check_shape({"a": True}, shape) == ["$.a: expected <class 'int'>, got True"]
    assert check_shape({"b": [1], "e": 0}, shape) == [
        "$.e: unknown field",
        "$.a: missing",
        "$.b[0]: expected <class 'str'>, got 1",
    ]
    assert check_shape({"a": 1, "c": []}, shape) == ["$.c: expected a mapping, got list"]


# --- samples ------------------------------------------------------------------------------------


def _upstream(text: str) -> Samples:
    """What prometheus_client's own parser reads (the parse the suite used before its own)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            samples[(found.name, frozenset(found.labels.items()))] = found.value
    return samples


def _same(ours: Samples, theirs: Samples) -> bool:
    return ours.keys() == theirs.keys() and all(
        ours[key] == theirs[key] or (ours[key] != ours[key] and theirs[key] != theirs[key])  # NaN is NaN
        for key in ours
    )


def test_parse_reads_what_prometheus_clients_parser_reads() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("runloop_odd", "odd label values", ["a", "b"], registry=registry)
    gauge.labels('x"y\\z\nw', "").set(1.5)
    gauge.labels("t\\n", "}} 5 {").set(float("nan"))
    gauge.labels("+Inf", ",").set(float("-inf"))
    gauge.labels("\\", 'a",b="c').set(-2e-300)
    Counter("runloop_c", "help with \\ and \n", registry=registry).inc(3)
    Histogram("runloop_h", "h", ["q"], registry=registry).labels("v").observe(0.3)
    telemetry = Telemetry()
    telemetry.count_request("/v1/benchmark_runs", "200")
    exporter_body = Rendered.of(rich_snapshot()).body(render_registry(telemetry.registry), gzip=False)
    for text in (generate_latest(registry).decode(), exporter_body.decode()):
        ours = parse(text)
        assert len(ours) > 10
        assert _same(ours, _upstream(text))
    assert parse("# HELP x y\n\nx 1 1700000000000\n") == {("x", frozenset()): 1.0}  # a timestamp is dropped


@pytest.mark.parametrize(
    "line",
    ['x{a="1"', 'x{a="1"} ', "x 1 2 3", 'x{a="1} 2', 'x{a="1",,b="2"} 3', "x{} ", "1x 2", "x{a=1} 2"],
)
def test_parse_refuses_a_line_that_is_not_a_whole_sample(line: str) -> None:
    with pytest.raises(ValueError, match="not a sample line"):
        parse(f"ok 1\n{line}\n")


# --- a sync that started after now ----------------------------------------------------------------

NOW = 1_800_000_000.0
BEFORE = SyncReading(successes=3, failures=1, last_success=NOW - 0.5, count=4, total_s=2.0)


@pytest.mark.parametrize(
    ("after", "attributed"),
    [
        # one success, 0.25 s long, that ended 0.5 s after now: it started 0.25 s after now
        (SyncReading(4, 1, NOW + 0.5, 5, 2.25), True),
        # one success that ended after now but started before it (under way when the wait began)
        (SyncReading(4, 1, NOW + 0.5, 5, 2.75), False),
        # two syncs between the polls: whose duration is which is not known
        (SyncReading(5, 1, NOW + 0.9, 6, 2.3), False),
        # a failure, and a success whose result is not counted yet (scraped mid-record)
        (SyncReading(3, 2, NOW - 0.5, 5, 2.1), False),
        (SyncReading(3, 1, NOW - 0.5, 5, 2.1), False),
        # counted, but its end not yet set: the last success has not moved
        (SyncReading(4, 1, NOW - 0.5, 5, 2.1), False),
    ],
)
def test_a_sync_is_known_to_have_started_after_now_only_when_it_is_the_one_recorded_since(
    after: SyncReading, attributed: bool
) -> None:
    assert after.one_success_since(BEFORE, started_after=NOW) is attributed
    assert not BEFORE.one_success_since(after, started_after=NOW)  # never backwards


def test_no_attribution_from_a_reading_taken_mid_record() -> None:
    mid = SyncReading(3, 1, NOW - 0.5, 5, 2.1)  # a duration counted, not yet its result
    assert not mid.settled
    assert not SyncReading(4, 1, NOW + 0.5, 5, 2.1).one_success_since(mid, started_after=NOW)


# --- waiting -----------------------------------------------------------------------------------


class _Proc:
    """A stand-in child process that exits when told to."""

    def __init__(self) -> None:
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


def _child(tmp_path: Path, lines: int = 100) -> Child:
    log = tmp_path / "child.log"
    log.write_text("".join(f"line {n}\n" for n in range(lines)))
    return Child("child", _Proc(), log)


def test_not_yet_is_polled_again_and_a_truthy_check_ends_the_wait() -> None:
    answers: list[object] = [NotYet("503"), False, NotYet("not JSON"), "ready"]

    def check() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    wait_until(check, 5, "readiness", interval=0.01)
    assert answers == []


def test_any_other_error_ends_the_wait_at_once() -> None:
    calls: list[int] = []

    def check() -> bool:
        calls.append(1)
        raise KeyError("data")

    with pytest.raises(KeyError):
        wait_until(check, 5, "readiness")
    assert len(calls) == 1


def test_a_child_that_exits_fails_the_wait_at_once_with_its_log_tail(tmp_path: Path) -> None:
    child = _child(tmp_path)
    assert isinstance(child.proc, _Proc)
    child.proc.returncode = 3
    with pytest.raises(AssertionError) as failure:
        wait_until(lambda: False, 60, "readiness", watch=child)
    message = str(failure.value)
    assert "while waiting for readiness: child exited with 3" in message
    assert "line 99" in message
    assert "line 59\n" not in message  # only the tail


def test_a_timeout_names_what_and_shows_the_last_answer_and_the_log_tail(tmp_path: Path) -> None:
    def check() -> bool:
        raise NotYet("GET /-/ready: 503")

    with pytest.raises(AssertionError) as failure:
        wait_until(check, 0.05, "Prometheus", watch=[_child(tmp_path, 3)], on_timeout=lambda: "context")
    message = str(failure.value)
    assert message.startswith("timed out after 0.05 s waiting for Prometheus")
    assert "last answer: GET /-/ready: 503" in message
    assert "context" in message
    assert "line 2" in message


def test_a_refused_connection_a_503_and_a_body_that_is_not_json_are_not_yet() -> None:
    replies = {"/starting": (503, b"Service Unavailable"), "/text": (200, b"Service Unavailable")}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = replies.get(self.path, (400, b'{"status": "error"}'))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            for path in ("/starting", "/text"):
                with pytest.raises(NotYet):
                    get_json(url + path)
            assert get_json(url + "/bad-query") == {"status": "error"}  # an answer, even if an error
            assert not answers(url + "/bad-query")
        finally:
            server.shutdown()
    with pytest.raises(NotYet):
        get_json(f"http://127.0.0.1:{free_port()}/")
