"""Server-rendered SVG charts: valid markup, escaped labels, proportional bars, evidence links."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from analytics.charts import Bar, Series, bar_chart, line_chart

SVG = "{http://www.w3.org/2000/svg}"


def test_bars_are_proportional_escaped_and_link_to_their_evidence():
    svg = bar_chart(
        bars=[Bar("Ada <script>", 10, href="/rooms/1/#seq-4"), Bar("Grace", 5)], title="Turns & talk"
    )
    root = ET.fromstring(str(svg))  # noqa: S314 (our own output)  # well-formed XML: labels were escaped
    assert root.get("aria-label") == "Turns & talk"
    rects = root.findall(f".//{SVG}rect")
    widths = [float(r.get("width")) for r in rects]
    assert widths[0] == 2 * widths[1]
    link = root.find(f"{SVG}a")
    assert link is not None and link.get("href") == "/rooms/1/#seq-4"
    labels = [t.text for t in root.findall(f"{SVG}text")]
    assert "Ada <script>" in labels


def test_line_chart_draws_one_path_per_series_and_skips_missing_points():
    svg = line_chart(
        series=[Series("Ada", [10, None, 30]), Series("Grace", [5, 6, 7])],
        x_labels=["W1", "W2", "W3"], title="Engagement by week",
    )
    root = ET.fromstring(str(svg))  # noqa: S314 (our own output)
    paths = root.findall(f"{SVG}path")
    assert len(paths) == 2
    assert paths[1].get("d").count("L") == 1  # Ada: two points, one segment
    assert len(root.findall(f"{SVG}circle")) == 5


def test_no_data_says_so():
    assert "No data yet" in str(bar_chart(bars=[], title="Empty"))
    assert "No data yet" in str(line_chart(series=[Series("a", [None])], x_labels=["x"], title="Empty"))
