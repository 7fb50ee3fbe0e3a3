"""The status page at `/`, seen by a real headless Chromium against the real exporter and simulator."""

from __future__ import annotations

import struct
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

from exporter.simulator import DEFAULT_API_KEY, Simulator, World
from tests.support.exporter_process import Exporter
from tests.support.tools import require_tool

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


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Debian's chromium, headless, with a profile of its own (root in a container needs no sandbox)."""
    binary = require_tool("chromium")
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Table(HTMLParser):
    """The body rows of the page's table as cell texts, and every element name in the document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.rows: list[list[str]] = []
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body:
            self._cell = []
        elif tag == "span" and self._cell is not None and ("class", "id") in attrs:
            self._cell.append("\n")  # the id under the name

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


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
    result = chromium("--dump-dom", f"{exporter.url}/", tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    page = Table()
    page.feed(result.stdout)

    assert "script" not in page.tags, "the hostile benchmark name became an element"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in result.stdout, "shown as text"
    shown = {}
    for cells in page.rows:
        name = cells[0].split("\n", 1)[0]
        running, completed, failed, canceled = (int(c.split()[0]) for c in cells[1:5])
        shown[name] = {"running": running, "completed": completed, "failed": failed, "canceled": canceled}
    expected = {
        name: {state: states.get(state, 0) for state in ("running", "completed", "failed", "canceled")}
        for name, states in truth(world).items()
    }
    assert shown == expected
    # Trouble on top: beta fails 3 of 4 decided runs, alpha 1 of 6, the hostile one none.
    assert [cells[0].split("\n", 1)[0] for cells in page.rows] == ["beta", "alpha", EVIL]
    assert page.rows[0][5].strip() == "75%"
    assert "Last sync" in result.stdout
    assert "demo" not in result.stdout.lower().split("<main>", 1)[1].split("</header>", 1)[1][:200]


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
