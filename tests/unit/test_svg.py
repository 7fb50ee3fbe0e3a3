"""The status page's pictures: what they draw follows the figures, and their titles say the figures."""

from __future__ import annotations

from exporter.http import svg
from tests.support.dom import parse


def test_a_share_bar_is_filled_to_the_share() -> None:
    bar = parse(svg.share_bar(0.375, "warn")).find("i")
    assert bar.attrs == {"class": "warn", "style": "width:37.5%"}
    assert parse(svg.share_bar(1.7, "bad")).find("i").attrs["style"] == "width:100%"


def test_a_stacked_bar_splits_in_proportion_and_skips_empty_parts() -> None:
    parts = parse(svg.stacked_bar([("good", 6), ("bad", 0), ("warn", 2)])).find_all("i")
    assert [(i.attrs["class"], i.attrs["style"]) for i in parts] == [
        ("good", "width:75%"),
        ("warn", "width:25%"),
    ]
    assert svg.stacked_bar([("good", 0)]) == ""


def test_a_histogram_draws_a_bar_per_bucket_that_holds_something() -> None:
    chart = parse(svg.histogram((0.25, 0.5, 1.0), [4, 0, 2, 0])).find("svg")
    assert chart.text(titles=True) == "6 scores: 0\u20130.25: 4, 0.25\u20130.5: 0, 0.5\u20131: 2"
    rects = chart.find_all("rect")
    assert [(r.attrs["x"], r.attrs["height"]) for r in rects] == [("0", "18"), ("12", "9")]
    assert chart.attrs["width"] == "18", "three buckets: the empty one past 1 is not drawn"
    past = parse(svg.histogram((0.5,), [1, 3])).find("svg")
    assert "over 0.5: 3" in past.text(titles=True)
    assert svg.histogram((0.5,), [0, 0]) == ""


def test_a_sparkline_has_a_point_per_score_and_its_guides() -> None:
    spark = parse(svg.sparkline([0.0, 0.5, 1.0], mean=0.5, floor=0.4)).find("svg")
    points = spark.find("polyline").attrs["points"].split()
    assert len(points) == 3
    ys = [float(p.split(",")[1]) for p in points]
    assert ys[0] > ys[1] > ys[2], "higher scores are drawn higher"
    assert [line.attrs["class"] for line in spark.find_all("line")] == ["mean", "floor"]
    assert spark.text(titles=True) == "last 3 scores, oldest first: 0.000 0.500 1.000"
    assert svg.sparkline([]) == ""
