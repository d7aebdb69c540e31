"""The hand-written SVG charts: well-formed, UTC time ticks, separators, gaps, downsampling."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

from histetl.quality.charts import MAX_BUCKETS, chart

SVG = "{http://www.w3.org/2000/svg}"
DEC14 = int(dt.datetime(2023, 12, 14, tzinfo=dt.UTC).timestamp()) // 3600  # hours since epoch


def _svg(html: str) -> ET.Element:
    body = html[html.index("<svg") : html.rindex("</svg>") + len("</svg>")]
    return ET.fromstring(body)


def _texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_chart_over_two_days_has_utc_hour_ticks_dates_and_separators() -> None:
    points = {DEC14 + h: 1_000.0 * h for h in range(48)}
    root = _svg(chart("volume", [("records per hour", {"ES.c.0": points})], kind="step"))
    texts = _texts(root)
    assert texts[0] == "volume"
    assert "records per hour" in texts
    assert {"00:00", "06:00", "12:00", "18:00"} <= set(texts)
    assert "Dec 14, 2023" in texts
    assert "Dec 15" in texts
    assert "40,000" in texts  # y ticks with thousands separators
    assert "time (UTC)" in texts
    assert root.find(f"{SVG}title") is not None


def test_chart_with_several_series_has_a_legend_and_one_color_each() -> None:
    series = {"ES.c.0": {DEC14: 1.0, DEC14 + 1: 2.0}, "NQ.c.0": {DEC14: 3.0, DEC14 + 1: 1.0}}
    root = _svg(chart("t", [("p", series)], kind="line"))
    assert {"ES.c.0", "NQ.c.0"} <= set(_texts(root))
    strokes = {p.get("stroke") for p in root.iter(f"{SVG}path") if p.get("stroke-width") == "1.4"}
    assert len(strokes) == 2


def test_step_series_breaks_at_missing_hours_instead_of_bridging_them() -> None:
    points = {DEC14: 5.0, DEC14 + 1: 6.0, DEC14 + 5: 7.0}
    html = chart("t", [("p", {"a": points})], kind="step")
    (line,) = [p for p in _svg(html).iter(f"{SVG}path") if p.get("stroke-width") == "1.4"]
    assert line.get("d", "").count("M") == 2


def test_long_series_is_downsampled_keeping_its_peak() -> None:
    points = {DEC14 + h: float(h % 24) for h in range(24 * 365)}  # a year of hours
    points[DEC14 + 4_000] = 1_000.0
    html = chart("t", [("p", {"a": points})], kind="line")
    (line,) = [p for p in _svg(html).iter(f"{SVG}path") if p.get("stroke-width") == "1.4"]
    coords = re.findall(r"[ML]([\d.]+) ([\d.]+)", line.get("d", ""))
    assert len(coords) <= 2 * MAX_BUCKETS
    top = min(float(y) for _, y in coords)  # SVG y grows downwards
    grid_top = min(float(t.get("y", 0)) for t in _svg(html).iter(f"{SVG}text")
                   if t.text == "1,000") - 4  # fmt: skip
    assert abs(top - grid_top) < 1
    assert len(html) < 60_000


def test_log_axis_ticks_cover_the_values_in_decades() -> None:
    series = {"p50": {DEC14: 28.7, DEC14 + 1: 30.0}, "p99": {DEC14: 393.2, DEC14 + 1: 400.0}}
    texts = _texts(_svg(chart("lat", [("µs", series)], kind="line", log=True)))
    assert {"10", "20", "50", "100", "200", "500", "1,000"} <= set(texts)


def test_chart_of_a_single_hour_spans_hours_not_years() -> None:
    texts = _texts(_svg(chart("t", [("p", {"a": {DEC14 + 10: 1.0}})], kind="step")))
    assert "10:00" in texts
    assert not any(re.fullmatch(r"20\d\d", t) for t in texts)


def test_chart_without_points_is_empty() -> None:
    assert chart("t", [("p", {"a": {}})]) == ""
