"""The status page's sections by benchmark in a real headless Chromium, against the simulator's truth:
failed runs, score histograms, jobs by state, agents and models with their 7-day mean and flag, and
hostile names (benchmark, agent, model, exception type) that stay text while no script runs."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from exporter.simulator import World
from tests.support.browser import dump_dom
from tests.support.dom import Element, parse
from tests.support.exporter_process import Exporter
from tests.support.jobs_oracle import expected_agent_rows
from tests.support.samples import sample
from tests.support.waiting import wait_until

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# Each would retitle the page if it ever ran; Chromium's DOM after load shows whether one did.
EVIL_NAME = "<script>document.title='pwned-name'</script>"
EVIL_AGENT = "<script>document.title='pwned-agent'</script>"
EVIL_MODEL = "<img src=x onerror=\"document.title='pwned-model'\">"
EVIL_TYPE = "<svg onload=\"document.title='pwned-type'\"></svg>Error"
# Durations of alpha's failed runs, and how the page must say them.
FAILED = [45_000, 600_000, 5_400_000, 120_000, 30_000, 3_600_000, 90_000]
RAN_FOR = {45_000: "45 s", 600_000: "10 min", 5_400_000: "1 h 30 min", 120_000: "2 min", 30_000: "30 s",
           3_600_000: "1 h 0 min", 90_000: "1 min"}  # fmt: skip
STATES = ("initializing", "queued", "running", "completed", "failed", "cancelled", "timeout")
AGENTS = [("claude-code", "claude-opus-4"), (EVIL_AGENT, EVIL_MODEL), ("aider", None)]


@pytest.fixture
def world() -> World:
    """alpha: 7 failed runs and agents over 10 days, claude-code worse in the newest job; a hostile
    benchmark with a hostile exception type; a live job; runs of every kind."""
    world = World(order="newest_first", seed=21)
    now = int(time.time() * 1000)
    world.add_benchmark("bmd_alpha", "alpha")
    world.add_benchmark("bmd_evil", EVIL_NAME)
    for i, duration in enumerate(FAILED):
        world.add_run(
            benchmark_id="bmd_alpha", state="failed", start_ms=now - (20 - i) * HOUR_MS, duration_ms=duration
        )
    for i in range(6):
        world.add_run(
            benchmark_id="bmd_alpha",
            state="completed",
            start_ms=now - (i + 2) * HOUR_MS,
            duration_ms=60_000,
            score=0.05 + i * 0.17,
        )
    world.add_run(benchmark_id="bmd_evil", state="failed", start_ms=now - HOUR_MS, duration_ms=1_000)
    world.add_run(
        benchmark_id="bmd_evil", state="completed", start_ms=now - HOUR_MS, duration_ms=1_000, score=1.0
    )
    # Jobs on alpha: one 10 days ago (outside the 7-day window), then one a day; claude-code drops at the end.
    for days, state in [(10, "completed"), (5, "completed"), (4, "failed"), (3, "completed"), (2, "timeout")]:
        world.jobs.add(
            benchmark_id="bmd_alpha",
            agents=AGENTS,
            levels=[0.8, 0.5, 0.6],
            create_ms=now - days * DAY_MS,
            state=state,
            n_scenarios=12,
        )
    world.jobs.add(
        benchmark_id="bmd_alpha",
        agents=AGENTS,
        levels=[0.1, 0.5, 0.6],
        create_ms=now - 2 * HOUR_MS,
        n_scenarios=12,
    )
    world.jobs.add(
        benchmark_id="bmd_alpha", agents=AGENTS, create_ms=now - 10 * 60_000, state="running", started=2
    )
    # A job on the hostile benchmark whose scenarios failed with a hostile exception type.
    job_id = world.jobs.add(
        benchmark_id="bmd_evil",
        agents=[("aider", None)],
        levels=[0.2],
        create_ms=now - HOUR_MS,
        n_scenarios=12,
    )
    (view,) = [v for v in world.jobs.views() if v["id"] == job_id]
    world.jobs.delete(job_id)
    for scenario in view["benchmark_outcomes"][0]["scenario_outcomes"]:
        if scenario.get("failure_reason"):
            scenario["failure_reason"]["exception_type"] = EVIL_TYPE
    world.jobs.add_raw(view)
    return world


def utc(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def by_benchmark(world: World) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for run in world.runs():
        if run["benchmark_id"] is not None:
            runs.setdefault(str(run["benchmark_id"]), []).append(run)
    return runs


def first_token(cell: str) -> str:
    return cell.split(maxsplit=1)[0]


def test_chromium_shows_the_sections_as_the_simulator_has_them(
    start_exporter: Callable[..., Exporter], world: World, tmp_path: Path
) -> None:
    exporter = start_exporter()
    wait_until(
        lambda: sample(exporter.scrape(), "runloop_exporter_jobs_available") == 1, what="a sync with jobs"
    )
    dumped = dump_dom(f"{exporter.url}/", tmp_path)
    synced_s = time.time()
    page = parse(dumped)

    # No hostile string became an element, none ran, every one is shown as text.
    assert page.find("title").text() == "runloop-exporter", "a script ran"
    for tag in ("script", "img"):
        assert not page.find_all(tag), tag
    assert all(svg.attrs.get("class") in ("hist", "spark") for svg in page.find_all("svg"))
    text = page.text()
    for hostile in (EVIL_NAME, EVIL_AGENT, EVIL_MODEL, EVIL_TYPE):
        assert hostile in text, hostile

    runs = by_benchmark(world)
    # Failed runs: the 5 newest by their end, when each ended (to the second) and how long it ran.
    alpha = page.find("section", id="benchmark-bmd_alpha")
    failed = sorted(
        (r for r in runs["bmd_alpha"] if r["state"] == "failed"),
        key=lambda r: (r["start_time_ms"] + r["duration_ms"], r["id"]),
        reverse=True,
    )[:5]
    table = alpha.find("table", cls="failed")
    shown = [(tr.find_all("td")[0].text(), tr.find_all("td")[1].find("span").attrs["title"], tr.find_all("td")[2].text())
             for tr in table.find("tbody").find_all("tr")]  # fmt: skip
    assert shown == [
        (r["id"], utc(r["start_time_ms"] + r["duration_ms"]), RAN_FOR[r["duration_ms"]]) for r in failed
    ]
    evil = page.find("section", id="benchmark-bmd_evil")
    assert [row[0] for row in evil.find("table", cls="failed").cells()] == [
        r["id"] for r in runs["bmd_evil"] if r["state"] == "failed"
    ]

    # Each benchmark's score histogram: completed runs per bucket.
    bounds = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    names = ["0\u20130.1", *(f"{low:g}\u2013{high:g}" for low, high in pairwise(bounds))]
    for bid, label in (("bmd_alpha", "alpha"), ("bmd_evil", EVIL_NAME)):
        scores = [float(r["score"]) for r in runs[bid] if r["state"] == "completed"]
        counts = [
            sum(1 for s in scores if low < s <= high)
            for low, high in zip((-1.0, *bounds), bounds, strict=False)
        ]
        expected = f"{len(scores)} scores: " + ", ".join(
            f"{n}: {c}" for n, c in zip(names, counts, strict=True)
        )
        row = next(
            tr
            for tr in page.find("table").find_all("tr")
            if tr.find_all(cls="name") and tr.find(cls="name").text() == label
        )
        assert row.find("svg", cls="hist").text(titles=True) == expected

    # Jobs by state, as the listing has them.
    states = Counter(str(v["state"]) for v in world.jobs.views())
    line = page.find("p", cls="jobs").text()
    for state in STATES:
        assert f"{state} {states.get(state, 0)}" in line

    # Agents and models: every figure of every row, against the oracle over the job views.
    truth = expected_agent_rows(world.jobs.views(), synced_s)
    assert sum(row["flagged"] for row in truth.values()) == 1, "the test needs one regression to flag"
    for bid, section in (("bmd_alpha", alpha), ("bmd_evil", evil)):
        trs = section.find("table", cls="agents").find("tbody").find_all("tr")
        mine = {key: row for key, row in truth.items() if key[0] == bid}
        assert len(trs) == len(mine)
        if bid == "bmd_alpha":
            assert "flagged" in trs[0].classes, "below its mean comes first"
        for tr in trs:
            check_agent_row(tr, bid, mine)
    listed = page.find("ul", cls="flagged").find_all("li")
    assert [li.text().split(" on ")[0] for li in listed] == ["claude-code with claude-opus-4"]


def check_agent_row(
    tr: Element, bid: str, truth: dict[tuple[str | None, str | None, str | None], dict[str, Any]]
) -> None:
    """One agent row's every figure against the oracle's."""
    cells = tr.find_all("td")
    agent = cells[0].find(cls="name").text()
    model = None if cells[1].text() == "\u2013" else cells[1].text()
    row = truth[(bid, agent, model)]
    assert ("flagged" in tr.classes) == row["flagged"] == ("below mean" in cells[0].text()), agent
    assert first_token(cells[2].text()) == f"{row['last']:.3f}", agent
    (when,) = [span.attrs["title"] for span in cells[2].find_all("span") if "title" in span.attrs]
    assert when == utc(row["last_time_s"] * 1000), agent
    assert cells[3].text() == f"{row['mean']:.3f} {row['count']} outcome" + "s" * (row["count"] != 1), agent
    spark = "last {} scores, oldest first: {}".format(
        len(row["spark"]), " ".join(f"{s:.3f}" for s in row["spark"])
    )
    assert cells[4].find("svg").text(titles=True) == spark, agent
    assert [cells[5].text(), cells[6].text()] == [str(row["runs"]), str(row["in_progress"])], agent
    assert cells[7].text() == " / ".join(map(str, row["scenarios"])), agent
    top = row["exception"]
    assert cells[8].text() == ("\u2013" if top is None else f"{top[0]} \u00d7{top[1]}"), agent
