"""The status page: figures per benchmark, trouble first, every user string escaped, no secret shown."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
from pydantic import SecretStr

from exporter.app import runs_cycle
from exporter.http import status
from exporter.http.state import State
from exporter.metrics.aggregate import GroupKey, RunningRun, Snapshot, Totals, build_snapshot
from exporter.metrics.telemetry import Telemetry
from exporter.publisher import StatePublisher
from exporter.runloop.apikey import ApiKey
from exporter.runloop.client import RunloopClient
from exporter.runloop.errors import TransientError
from exporter.runloop.models import Run
from tests.support.dom import parse

NOW = 1_700_000_000.0
HOUR_MS = 3_600_000
NOW_MS = int(NOW * 1000)
EVIL = "<script>alert(1)</script>"


def finished(state: str, bid: str | None, end_ms: int, score: float | None = None) -> Run:
    return Run("r", bid, state, end_ms - 60_000, 60_000, score, {}, None)


def snapshot() -> Snapshot:
    totals = Totals((0.5, 1.0), (60.0, 3600.0))
    # calm: 4 completed, 0 failed; its last completed run scored 0.9 an hour ago.
    for i in range(4):
        totals.add(finished("completed", "calm", NOW_MS - (4 - i) * HOUR_MS, 0.6 + i * 0.1), GroupKey("calm"))
    # bad: split across two label groups (metadata labels): 1 completed + 3 failed = 75 % failed.
    totals.add(finished("completed", "bad", NOW_MS - HOUR_MS, 0.2), GroupKey("bad", (("team", "a"),)))
    for _ in range(3):
        totals.add(finished("failed", "bad", NOW_MS - HOUR_MS), GroupKey("bad", (("team", "b"),)))
    # evil: a hostile name and id, 1 failed of 2 (50 %), one canceled that does not count.
    totals.add(finished("completed", EVIL, NOW_MS - HOUR_MS, 0.5), GroupKey(EVIL))
    totals.add(finished("failed", EVIL, NOW_MS - HOUR_MS), GroupKey(EVIL))
    totals.add(finished("canceled", EVIL, NOW_MS - HOUR_MS), GroupKey(EVIL))
    running = [
        RunningRun("s1", GroupKey("stuck"), NOW_MS - 7 * HOUR_MS),  # past the 6 h of the alert
        RunningRun("s2", GroupKey("stuck"), NOW_MS - 60_000),
        RunningRun("y1", GroupKey("young"), NOW_MS - 60_000),
        RunningRun("q1", GroupKey("young"), NOW_MS - 60_000, state="queued"),
    ]
    names = {"calm": "Calm", "bad": "Bad", EVIL: EVIL, "stuck": "Stuck", "young": "Young"}
    return build_snapshot(totals, running, names)


def test_rows_add_label_groups_together() -> None:
    by_id = {row.benchmark_id: row for row in status.rows(snapshot())}
    bad = by_id["bad"]
    assert (bad.completed, bad.failed, bad.running) == (1, 3, 0)
    assert bad.failure_share == 0.75
    assert bad.name == "Bad"
    calm = by_id["calm"]
    assert calm.failure_share == 0.0
    assert calm.last_score == pytest.approx(0.9)
    assert calm.last_completed_s == NOW - 3600
    young = by_id["young"]
    assert (young.running, young.other, young.failure_share) == (1, 1, None)
    assert by_id[EVIL].failure_share == 0.5, "canceled runs do not count"


def test_trouble_is_on_top() -> None:
    order = [row.benchmark_id for row in status.trouble_first(status.rows(snapshot()), NOW)]
    # Failure share first; among the rest the stuck run, then the longest running, then by name.
    assert order == ["bad", EVIL, "stuck", "young", "calm"]


class _Dom(HTMLParser):
    """Elements and text of a page, as a browser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def dom(page: bytes) -> _Dom:
    parser = _Dom()
    parser.feed(page.decode())
    return parser


def test_page_escapes_names_and_ids() -> None:
    table = status.render_table(snapshot(), NOW)
    page = status.render(demo=False, last=None, table=table)
    parsed = dom(page)
    assert "script" not in parsed.tags
    assert EVIL in "".join(parsed.text), "shown as text"
    assert b"<script>" not in page


def test_page_shows_each_benchmark_with_its_figures() -> None:
    page = parse(status.render(demo=False, last=None, table=status.render_table(snapshot(), NOW)))
    table = page.find("table")
    rows = table.cells()
    first = table.find_all("tr")[1]
    assert (first.find(cls="name").text(), first.find(cls="id").text()) == ("Bad", "bad")
    assert rows[0][1:6] == ["0", "1", "3", "0", "75%"]
    assert "stuck?" in rows[2][9]
    assert rows[4][8] == "1 h 0 min ago"
    assert rows[4][7] == "0.900"


def test_a_row_has_a_bar_for_its_failure_share_and_a_histogram_of_its_scores() -> None:
    page = parse(status.render_table(snapshot(), NOW).html)
    bad = page.find("table").find_all("tr")[1]
    assert bad.find("i").attrs["style"] == "width:75%"
    calm = page.find("table").find_all("tr")[5]
    assert calm.find("svg", cls="hist").text(titles=True) == "4 scores: 0\u20130.5: 0, 0.5\u20131: 4"
    assert len(calm.find_all("rect")) == 1, "one bar per bucket that holds something"
    assert not page.find_all("tr", id="benchmark-young")[0].find_all("svg"), "no completed run: no chart"


def test_demo_banner_only_in_demo_mode() -> None:
    assert b"no Runloop key used" in status.render(demo=True, last=None, table=None)
    assert b"no Runloop key used" not in status.render(demo=False, last=None, table=None)


def test_before_the_first_sync() -> None:
    text = "".join(dom(status.render(demo=False, last=None, table=None)).text)
    assert "No sync has finished yet" in text
    assert "Waiting for the first successful sync" in text


def test_a_failed_sync_keeps_the_table_and_says_why() -> None:
    table = status.render_table(snapshot(), NOW)
    last = status.LastSync(NOW + 60, 1.5, 7, ok=False, error="cannot reach <http://x>")
    text = "".join(dom(status.render(demo=False, last=last, table=table)).text)
    assert "failed" in text
    assert "cannot reach <http://x>" in text
    assert "the later one failed" in text
    assert "Bad" in text
    assert "7" in text


def test_links_to_the_endpoints() -> None:
    page = status.render(demo=False, last=None, table=None).decode()
    for path in ("/metrics", "/healthz", "/readyz"):
        assert f'href="{path}"' in page
    assert "<script" not in page
    assert "http" not in re.sub(r'href="/\w+"', "", page).replace("http://www.w3.org", ""), (
        "nothing from elsewhere"
    )


class _Failing:
    """A Sync whose error message carries the key, as a careless error message might."""

    def __init__(self, key: str) -> None:
        self.key = key

    def run(self, deadline: float | None = None) -> Snapshot:
        raise TransientError(f"proxy said: bad token {self.key}")


def test_a_failed_cycle_shows_its_failure_without_the_key() -> None:
    key = "sk-very-secret-key-123"
    client = RunloopClient(
        "http://runloop.invalid",
        ApiKey(SecretStr(key)),
        transport=httpx.MockTransport(lambda request: httpx.Response(500)),
    )
    state = State(lambda: b"", demo=False)
    publish = StatePublisher(state, base_url="http://runloop.invalid")
    job = runs_cycle(_Failing(key), [client], Telemetry(), publish, deadline_s=5)
    assert isinstance(job().error, TransientError)
    text = "".join(dom(state.page).text)
    assert "cannot reach http://runloop.invalid" in text
    assert "bad token" in text
    assert key not in state.page.decode()
    assert "[REDACTED]" in text
