"""The status page at `/`, seen by a real headless Chromium against the real exporter and simulator."""

from __future__ import annotations

import struct
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.simulator import DEFAULT_API_KEY, Simulator, World
from tests.support.browser import chromium, dump_dom
from tests.support.dom import parse
from tests.support.exporter_process import Exporter

EVIL = "<script>alert(1)</script>"
HOUR_MS = 3_600_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def world() -> World:
    """Three benchmarks, one with a hostile name, and runs in every state."""
    world = World(order="newest_first", seed=3)
    now = int(time.time() * 1000)
    plan = {
        "bmd_alpha": ("alpha", {"completed": 5, "failed": 1, "canceled": 2, "running": 1}),
        "bmd_beta": ("beta", {"completed": 1, "failed": 3, "running": 2}),
        "bmd_evil": (EVIL, {"completed": 2, "canceled": 1}),
    }
    for bid, (name, states) in plan.items():
        world.add_benchmark(bid, name)
        for state, n in states.items():
            for i in range(n):
                start = now - (i + 2) * HOUR_MS
                if state == "running":
                    world.add_run(benchmark_id=bid, start_ms=start)
                else:
                    score = 0.5 + i / 10 if state == "completed" else None
                    world.add_run(
                        benchmark_id=bid, state=state, start_ms=start, duration_ms=600_000, score=score
                    )
    return world


def truth(world: World) -> dict[str, dict[str, int]]:
    """Runs per state of each benchmark's name, straight from the simulator."""
    names = world.benchmark_names()
    counts: dict[str, Counter[str]] = {}
    for run in world.runs():
        counts.setdefault(names[str(run["benchmark_id"])], Counter())[str(run["state"])] += 1
    return {name: dict(c) for name, c in counts.items()}


def test_chromium_shows_the_simulators_figures_and_no_script(
    start_exporter: Callable[..., Exporter], world: World, tmp_path: Path
) -> None:
    exporter = start_exporter()
    exporter.wait_for_sync()
    dumped = dump_dom(f"{exporter.url}/", tmp_path)
    page = parse(dumped)

    assert not page.find_all("script"), "the hostile benchmark name became an element"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dumped, "shown as text"
    table = page.find("table")
    shown = {}
    for tr, cells in zip(table.find("tbody").find_all("tr"), table.cells(), strict=True):
        running, completed, failed, canceled = (int(c.split()[0]) for c in cells[1:5])
        name = tr.find(cls="name").text()
        shown[name] = {"running": running, "completed": completed, "failed": failed, "canceled": canceled}
    expected = {
        name: {state: states.get(state, 0) for state in ("running", "completed", "failed", "canceled")}
        for name, states in truth(world).items()
    }
    assert shown == expected
    # Trouble on top: beta fails 3 of 4 decided runs, alpha 1 of 6, the hostile one none.
    assert [tr.find(cls="name").text() for tr in table.find("tbody").find_all("tr")] == [
        "beta",
        "alpha",
        EVIL,
    ]
    assert table.cells()[0][5] == "75%"
    assert "Last sync" in dumped
    assert "demo" not in dumped.lower().split("<main>", 1)[1].split("</header>", 1)[1][:200]


def test_chromium_takes_a_screenshot(start_exporter: Callable[..., Exporter], tmp_path: Path) -> None:
    exporter = start_exporter()
    exporter.wait_for_sync()
    shot = tmp_path / "status-page.png"
    result = chromium(f"--screenshot={shot}", "--window-size=1280,900", f"{exporter.url}/", tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    assert (width, height) == (1280, 900)
    assert len(data) > 20_000, "a blank page compresses to a few kB"


def test_a_failing_sync_is_shown_with_the_reason_and_no_key(
    start_exporter: Callable[..., Exporter], simulator: Simulator
) -> None:
    exporter = start_exporter()
    exporter.wait_for_sync()
    simulator.faults.fail_next(100_000, 401)

    def failed() -> bool:
        return '<span class="pill bad">failed</span>' in exporter.get("/").text

    exporter.wait_until(failed, timeout=20, what="the page to show the failed sync")
    page = exporter.get("/")
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "the API key was refused" in page.text
    assert "check RUNLOOP_API_KEY" in page.text
    assert "the later one failed" in page.text, "the table of the last good sync stays"
    assert "alpha" in page.text
    assert DEFAULT_API_KEY not in page.text


def test_demo_mode_has_the_banner(tmp_path: Path) -> None:
    exporter = Exporter(["--demo"]).start(tmp_path)
    try:
        exporter.wait_until(lambda: exporter.get("/readyz").status_code == 200, timeout=20, what="the demo")
        page = exporter.get("/").text
        assert "simulated account, no Runloop key used" in page
        assert "<td" in page
    finally:
        assert exporter.stop() == 0
