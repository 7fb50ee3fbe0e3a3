"""Progress of long reads: logged every PROGRESS_EVERY_S, shown while it lasts, gone when it ends."""

from __future__ import annotations

from structlog.testing import capture_logs

from exporter.http.parts import PartView, render_parts
from exporter.sync.progress import PROGRESS_EVERY_S, ReadBoard


def test_a_read_shows_its_ratio_while_it_lasts_and_logs_every_ten_seconds() -> None:
    shown: list[tuple[str, str, float | None]] = []
    board = ReadBoard(lambda part, reason, ratio: shown.append((part, reason, ratio)))
    now = [0.0]
    with capture_logs() as logs:
        progress = board.start("jobs", "backfill", lambda: now[0])
        for _ in range(10):
            now[0] += 4.0
            progress.page(100, total_count=2000)
        [status] = board.current()
        assert (status.records, status.total, status.pages) == (1000, 2000, 10)
        assert status.ratio == 0.5
        assert status.eta_s == 40.0  # 1,000 left at 25 a second
        progress.done()
    assert board.current() == []
    assert shown[0] == ("jobs", "backfill", 0.0)
    assert shown[-2] == ("jobs", "backfill", 0.5)
    assert shown[-1] == ("jobs", "backfill", None)  # the gauge's series is removed
    lines = [e for e in logs if e["event"] == "read in progress"]
    assert PROGRESS_EVERY_S == 10.0
    assert [e["pages"] for e in lines] == [3, 6, 9]  # at 12, 24 and 36 s: at least 10 s apart
    assert {"part", "reason", "pages", "records", "total_count", "records_per_s", "eta_s"} <= set(lines[0])
    assert [e["event"] for e in logs][-1] == "read finished"


def test_the_freshness_section_shows_each_part_its_age_and_reads_in_progress() -> None:
    board = ReadBoard()
    now = [0.0]
    progress = board.start("jobs", "backfill", lambda: now[0])
    now[0] = 10.0
    progress.page(250, total_count=1000)
    html = render_parts(
        [
            PartView("runs", published_at=1_000.0, ok=True, error=None, reads=()),
            PartView("jobs", published_at=None, ok=None, error=None, reads=tuple(board.current())),
        ],
        now=1_030.0,
    )
    assert '<li data-part="runs">' in html
    assert "30 s</span> old" in html
    assert '<progress max="1" value="0.250">' in html
    assert "250 of 1,000 read in 1 pages" in html
    assert "about 30 s left" in html
    assert "nothing yet" in html
    escaped = render_parts([PartView("runs", None, False, "<script>x</script>", ())], now=0.0)
    assert "<script>" not in escaped
