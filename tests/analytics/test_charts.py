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


def test_stacked_bars_split_into_parts_with_totals_and_links():
    from analytics.charts import StackedBar, stacked_bar_chart

    svg = stacked_bar_chart(
        bars=[StackedBar("Ada", [3, 1], href="/x/#turns"), StackedBar("Grace & co", [0, 2])],
        part_names=["Text", "Speech"], title="Turns",
    )
    root = ET.fromstring(str(svg))  # noqa: S314 (our own output)
    bars = [r for r in root.iter(f"{SVG}rect") if "chart-bar" in (r.get("class") or "")]
    assert len(bars) == 3  # Grace has no text part
    assert float(bars[0].get("width")) == 3 * float(bars[1].get("width"))
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "Ada, Text: 3" in titles and "Grace & co, Speech: 2" in titles
    values = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "chart-value"]
    assert values == ["4", "2"]
    assert root.find(f"{SVG}a").get("href") == "/x/#turns"
    assert "No data yet" in str(stacked_bar_chart(bars=[], part_names=["A"], title="Empty"))
