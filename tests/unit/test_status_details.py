"""The status page's sections by benchmark: failed runs, agents and models worst first and flagged as the
regression alert would be, jobs by state or why there are none, anchors, escaping, and its bounds."""

from __future__ import annotations

from urllib.parse import unquote

from exporter.http import status, status_agents, status_details
from exporter.metrics.agents import (
    AgentCaps,
    AgentKey,
    AgentView,
    JobsSnapshot,
    JobsTotals,
    build_jobs_snapshot,
)
from exporter.metrics.aggregate import (
    DEFAULT_SCORE_BUCKETS,
    GroupKey,
    Histogram,
    RunningRun,
    Snapshot,
    Totals,
    build_snapshot,
)
from exporter.metrics.recent import Window
from exporter.runloop.jobs import Job, Outcome
from exporter.runloop.models import Run
from tests.support.dom import Element, parse

NOW = 1_700_000_000.0
NOW_MS = int(NOW * 1000)
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
EVIL = "<script>alert(1)</script>"
EVIL_MODEL = '<img src=x onerror="alert(2)">'
EVIL_TYPE = "<script>alert(3)</script>Error"


def runs_snapshot() -> Totals:
    totals = Totals(DEFAULT_SCORE_BUCKETS, (60.0, 3600.0))
    # bmd_a: 7 failed runs (the page names the newest 5), 3 completed.
    for i in range(7):
        run = Run(
            f"bmr_a{i}", "bmd_a", "failed", NOW_MS - (10 - i) * HOUR_MS, 45_000 + i * 600_000, None, {}, None
        )
        totals.add(run, GroupKey("bmd_a"))
    for i in range(3):
        totals.add(
            Run(f"bmr_ac{i}", "bmd_a", "completed", NOW_MS - 2 * HOUR_MS, 1000, 0.5, {}, None),
            GroupKey("bmd_a"),
        )
    # calm: nothing failed, no agents: no section, its row is its anchor.
    totals.add(Run("bmr_calm", "calm", "completed", NOW_MS - HOUR_MS, 1000, 0.9, {}, None), GroupKey("calm"))
    # A hostile id and name, one failed run with a hostile id.
    totals.add(Run(EVIL + "run", EVIL, "failed", NOW_MS - HOUR_MS, None, None, {}, None), GroupKey(EVIL))
    return totals


def job(job_id: str, bid: str | None, day: float, outcomes: list[Outcome], state: str = "completed") -> Job:
    return Job(job_id, state, int(NOW_MS - day * DAY_MS), bid, tuple(outcomes), ())


def outcome(
    agent: str, model: str | None, score: float | None, failures: tuple[tuple[str, int], ...] = ()
) -> Outcome:
    failed = sum(n for _, n in failures)
    return Outcome(agent, model, f"bmr_{agent}_{score}", 10, failed, 1, score, failures)


def jobs_snapshot() -> JobsSnapshot:
    caps = AgentCaps()
    totals = JobsTotals(DEFAULT_SCORE_BUCKETS)
    history = [0.8, 0.8, 0.9, 0.7]  # 4 days ago to 1 day ago; 10 days ago is outside the window
    totals.add(job("bmj_old", "bmd_a", 10, [outcome("steady", "m1", 0.1), outcome("worse", "m2", 0.1)]), caps)
    for day, score in zip((4, 3, 2, 1), history, strict=True):
        totals.add(
            job(
                f"bmj_{day}",
                "bmd_a",
                day,
                [
                    outcome("steady", "m1", score),
                    outcome("worse", "m2", score, (("KeyError", 2), ("ZeroDivisionError", 2))),
                ],
            ),
            caps,
        )
    # The newest job: "worse" drops to 0.3 (mean of the window (0.8+0.8+0.9+0.7+0.3)/5 = 0.7, 0.3 < 0.56).
    totals.add(
        job(
            "bmj_0",
            "bmd_a",
            0.5,
            [outcome("steady", "m1", 0.79), outcome("worse", "m2", 0.3, (("KeyError", 1),))],
        ),
        caps,
    )
    totals.add(job("bmj_evil", "bmd_a", 0.2, [outcome(EVIL, EVIL_MODEL, 0.5, ((EVIL_TYPE, 3),))]), caps)
    totals.add(job("bmj_none", None, 0.2, [outcome("loner", None, 0.4)]), caps)  # no benchmark
    live = job("bmj_live", "bmd_jobs_only", 0.1, [], state="running")
    live = Job(
        live.id, live.state, live.create_time_ms, live.benchmark_id, (), (("steady", "m1"), ("steady", "m1"))
    )
    return build_jobs_snapshot(totals, [live], caps, now_s=NOW)


def full_snapshot(*, jobs: bool = True, note: str | None = None) -> Snapshot:
    base = build_snapshot(
        runs_snapshot(), [RunningRun("live", GroupKey("bmd_a"), NOW_MS - 60_000)], {EVIL: EVIL}
    )
    return Snapshot(base.groups, base.benchmark_names, base.runs, jobs_snapshot() if jobs else None, note)


def page_of(snapshot: Snapshot) -> Element:
    return parse(status.render(demo=False, last=None, table=status.render_table(snapshot, NOW)))


def agent_rows(section: Element) -> list[list[str]]:
    return section.find("table", cls="agents").cells()


def test_a_benchmarks_section_names_its_newest_failed_runs() -> None:
    section = page_of(full_snapshot()).find("section", id="benchmark-bmd_a")
    failed = section.find("table", cls="failed")
    rows = failed.cells()
    assert [row[0] for row in rows] == [f"bmr_a{i}" for i in (6, 5, 4, 3, 2)]
    # bmr_a6 started 4 h ago and ran 45 s + 6 x 10 min: it ended 2 h 59 min 15 s ago.
    assert rows[0][1:] == ["2 h 59 min ago", "1 h 0 min"]
    assert rows[4][2] == "20 min"
    ended = failed.find_all("tr")[1].find_all("td")[1].find("span").attrs["title"]
    assert ended == "2023-11-14 19:14:05 UTC"  # NOW (22:13:20) - 4 h + 3645 s
    assert "7 failed of 10 finished (70%), 1 running" in section.text()


def test_a_benchmark_without_a_section_has_its_row_as_anchor_and_others_link_down() -> None:
    page = page_of(full_snapshot())
    assert page.find_all("tr", id="benchmark-calm"), "calm has no section: its row is the anchor"
    assert not page.find_all("section", id="benchmark-calm")
    links = [a.attrs["href"] for a in page.find("table").find_all("a", cls="name")]
    assert "#benchmark-bmd_a" in links
    assert not page.find_all("tr", id="benchmark-bmd_a"), "one element per id"
    for a in page.find_all("a"):
        href = a.attrs["href"]
        if href.startswith("#"):
            assert len(page.find_all(id=unquote(href[1:]))) == 1, href


def test_hostile_names_ids_and_exception_types_stay_text() -> None:
    raw = status.render(demo=False, last=None, table=status.render_table(full_snapshot(), NOW))
    page = parse(raw)
    assert not page.find_all("script")
    assert not page.find_all("img")
    text = page.text()
    for hostile in (EVIL, EVIL_MODEL, EVIL_TYPE, EVIL + "run"):
        assert hostile in text
    assert b"<script>" not in raw
    assert b"<img" not in raw
    section = page.find("section", id="benchmark-" + EVIL)
    hrefs = [
        a.attrs["href"] for a in page.find_all("a") if a.attrs["href"] == "#" + status_details.fragment(EVIL)
    ]
    assert hrefs
    assert unquote(hrefs[0][1:]) == section.attrs["id"], "the link finds the section"


def test_agents_worst_first_flagged_as_the_regression_alert_would_be() -> None:
    section = page_of(full_snapshot()).find("section", id="benchmark-bmd_a")
    rows = agent_rows(section)
    # Flagged first, then by the latest score against the mean: steady at -1%, the hostile one at 0%.
    assert [row[0] for row in rows] == ["worse below mean", "steady", EVIL]
    worse, steady, evil = rows
    # agent, model, latest (change, when), mean (count), sparkline, runs, in progress, scenarios, exception
    assert worse[1] == "m2"
    assert worse[2] == "0.300 \u221257% 12 h 0 min ago"
    assert worse[3] == "0.700 5 outcomes"
    assert worse[5:8] == ["6", "0", "60 / 17 / 6"]  # 4 x (2 + 2) + 1 failed scenarios
    assert worse[8] == "KeyError \u00d79"  # 4 x 2 + 1, against 8 ZeroDivisionError
    assert steady[2] == "0.790 \u22121% 12 h 0 min ago"
    assert steady[3] == "0.798 5 outcomes"
    assert steady[8] == "\u2013"
    assert evil[2].startswith("0.500 \u00b10%")
    assert evil[3] == "0.500 1 outcome"
    assert evil[8] == EVIL_TYPE + " \u00d73"
    flagged = [tr for tr in section.find("table", cls="agents").find_all("tr") if "flagged" in tr.classes]
    assert len(flagged) == 1
    spark = flagged[0].find("svg", cls="spark").text(titles=True)
    assert spark == "last 6 scores, oldest first: 0.100 0.800 0.800 0.900 0.700 0.300"


def test_agents_below_their_mean_are_listed_above_the_sections() -> None:
    page = page_of(full_snapshot())
    listed = page.find("ul", cls="flagged").find_all("li")
    assert [li.text() for li in listed] == [
        "worse with m2 on bmd_a: 0.300 against a mean of 0.700 (\u221257%)"
    ]
    assert listed[0].find("a").attrs["href"] == "#benchmark-bmd_a"


def test_jobs_by_state_come_above_the_tables() -> None:
    page = page_of(full_snapshot())
    line = page.find("p", cls="jobs").text()
    assert "completed 8" in line
    assert "running 1" in line
    assert "timeout 0" in line
    # A live job's runs in progress, on a benchmark with no runs: it has a section of its own.
    section = page.find("section", id="benchmark-bmd_jobs_only")
    assert agent_rows(section) == [
        ["steady", "m1", "\u2013", "\u2013", "\u2013", "0", "2", "0 / 0 / 0", "\u2013"]
    ]
    assert page.find_all("section", id=status_details.NO_BENCHMARK), "jobs without a benchmark"


def test_without_jobs_the_agents_part_is_one_line_saying_why() -> None:
    off = page_of(full_snapshot(jobs=False))
    assert status_agents.OFF in off.text()
    assert not off.find_all("table", cls="agents")
    assert off.find("section", id="benchmark-bmd_a").find("table", cls="failed"), "failed runs stay"
    note = "Benchmark jobs cannot be read with this key (HTTP 403); they are tried again at the reconcile interval."
    refused = page_of(full_snapshot(jobs=False, note=note))
    assert note in refused.text()
    assert status_agents.OFF not in refused.text()
    stale = page_of(
        full_snapshot(note="The last benchmark jobs sync failed: these are the figures of the last good one.")
    )
    assert "figures of the last good one" in stale.text()
    assert stale.find_all("table", cls="agents")


def bounded_snapshot(benchmarks: int, pairs: int) -> Snapshot:
    """`benchmarks` benchmarks with a failed run each, `pairs` agents each with 8 scores, some flagged."""
    totals = Totals(DEFAULT_SCORE_BUCKETS, (60.0,))
    views = []
    recent = (0.6, 0.62, 0.58, 0.61, 0.6, 0.59, 0.6, 0.3)
    hist = Histogram(DEFAULT_SCORE_BUCKETS, 1)
    for score in recent:
        hist.observe(score)
    frozen = hist.freeze()
    for b in range(benchmarks):
        bid = f"bmd_{b:05d}"
        totals.add(Run(f"bmr_{b}", bid, "failed", NOW_MS - HOUR_MS, 1000, None, {}, None), GroupKey(bid))
        totals.add(Run(f"bmr_{b}c", bid, "completed", NOW_MS - HOUR_MS, 1000, 0.5, {}, None), GroupKey(bid))
        for p in range(pairs):
            window = Window(8, sum(recent) / 8)
            last = recent[-1] if p % 10 == 0 else 0.6
            views.append(
                AgentView(
                    AgentKey(bid, f"agent-{p:02d}", "model"),
                    8,
                    0,
                    {"completed": 80, "failed": 5, "timeout": 1},
                    frozen,
                    {"KeyError": 3},
                    last,
                    NOW - HOUR_MS / 1000,
                    recent,
                    window,
                    window.below(last),
                )
            )
    base = build_snapshot(totals, [], {f"bmd_{b:05d}": f"benchmark {b}" for b in range(benchmarks)})
    jobs = JobsSnapshot({None: {"completed": benchmarks * 8}}, tuple(views), benchmarks * 8)
    return Snapshot(base.groups, base.benchmark_names, base.runs, jobs)


def test_the_page_stays_bounded_at_a_thousand_benchmarks_of_fifty_agents() -> None:
    raw = status.render(demo=False, last=None, table=status.render_table(bounded_snapshot(1000, 50), NOW))
    assert len(raw) < 2_000_000
    page = parse(raw)
    assert len(page.find("table").cells()) == status_details.MAX_TABLE_ROWS
    text = page.text()
    assert f"{1000 - status_details.MAX_TABLE_ROWS} more benchmarks are left out here" in text
    sections = page.find_all("section", cls="bench")
    assert len(sections) == status_details.MAX_SECTIONS
    assert f"{1000 - status_details.MAX_SECTIONS} more benchmarks with failed runs or agents" in text
    for section in sections:
        assert len(agent_rows(section)) == status_agents.MAX_PAIRS
        bid = section.attrs["id"].removeprefix("benchmark-")
        more = f'runloop_agent_last_benchmark_run_score{{benchmark_id="{bid}"}}'
        assert f"{50 - status_agents.MAX_PAIRS} more agent and model pairs" in section.text()
        assert more in section.text()
    assert len(page.find("ul", cls="flagged").find_all("li")) == status_agents.MAX_FLAGGED
    assert f"{1000 * 5 - status_agents.MAX_FLAGGED} more below their mean" in text


def test_a_small_account_is_shown_whole() -> None:
    page = page_of(bounded_snapshot(3, 4))
    assert len(page.find("table").cells()) == 3
    assert len(page.find_all("section", cls="bench")) == 3
    assert "left out" not in page.text()


def test_an_agent_below_its_mean_links_to_its_benchmarks_row_when_it_has_no_section() -> None:
    # 40 benchmarks, each with a failed run and one agent below its mean: 25 get a section (by the
    # table's order, i.e. by name: "benchmark 0", "benchmark 1", "benchmark 10", ...), while the list
    # below the mean names the first 20 by id, bmd_00004 to bmd_00009 among them, which have none.
    page = page_of(bounded_snapshot(40, 1))
    targets = [
        unquote(li.find("a").attrs["href"][1:]) for li in page.find("ul", cls="flagged").find_all("li")
    ]
    assert len(targets) == status_agents.MAX_FLAGGED
    found = [page.find(id=target) for target in targets]
    assert {element.tag for element in found} == {"section", "tr"}
    assert page.find(id="benchmark-bmd_00009").tag == "tr"
