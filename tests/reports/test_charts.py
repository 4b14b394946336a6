from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reports.charts import bar_chart, line_chart


def test_bar_chart_escapes_labels_and_shows_values():
    svg = bar_chart([("<script>alert(1)</script>", 12), ("gmail.com", 3_400)], title="Domains & more")
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "3,400" in svg
    assert "<title>Domains &amp; more</title>" in svg


def test_line_chart_draws_one_line_per_series_with_a_legend():
    start = datetime(2026, 11, 27, 10, tzinfo=UTC)
    times = [start + timedelta(hours=h) for h in range(4)]
    svg = line_chart(times, {"Opens": [1, 5, 2, 0], "Clicks": [0, 1, 1, 0]}, title="Activity")
    assert svg.count("<polyline") == 2
    assert "Opens" in svg and "Clicks" in svg
    assert "27 Nov 10:00" in svg


def test_empty_charts_say_there_is_no_data_yet():
    assert "No data yet" in bar_chart([], title="Bounces")
    assert "No data yet" in line_chart([], {}, title="Activity")
