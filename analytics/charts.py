"""Charts drawn on the server as inline SVG: no JavaScript, no CDN, printable, and testable by
parsing the markup.

Each function takes plain numbers and labels and returns a `SafeString` ready for a template.
Text is escaped here, so callers pass raw labels. The SVG scales to its container (`viewBox`),
carries a `<title>` and `aria-label` for screen readers, and uses CSS classes (`chart-bar`,
`chart-line-<n>`, ...) that static/css styles, so print and dark mode need no extra markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from django.utils.safestring import SafeString, mark_safe

LABEL_WIDTH = 150
BAR_HEIGHT = 22
BAR_GAP = 6
VALUE_WIDTH = 70
SERIES_LIMIT = 8  # chart-line-0 .. chart-line-7 have colours in the stylesheet


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its label, value, and optionally where clicking it leads (the evidence)."""

    label: str
    value: float
    href: str = ""
    note: str = ""  # shown as the bar's tooltip


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a line chart: a value per x label (None: no data at that point)."""

    name: str
    values: Sequence[float | None]


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _svg(*, width: int, height: int, title: str, body: list[str], css_class: str) -> SafeString:
    title = escape(title)
    return mark_safe(  # noqa: S308 (every text and attribute above went through escape)
        f'<svg class="chart {css_class}" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{title}</title>{''.join(body)}</svg>"
    )


def _empty(title: str, width: int) -> SafeString:
    return _svg(
        width=width, height=40, title=title, css_class="chart-empty",
        body=[f'<text x="{width / 2}" y="24" text-anchor="middle" class="chart-note">No data yet</text>'],
    )


def bar_chart(*, bars: Sequence[Bar], title: str, unit: str = "", width: int = 640, max_value: float | None = None) -> SafeString:
    """Horizontal bars, one row per item, in the order given; values labelled at the bar's end."""
    if not bars:
        return _empty(title, width)
    top = max_value if max_value is not None else max((bar.value for bar in bars), default=0)
    top = top or 1
    plot_width = width - LABEL_WIDTH - VALUE_WIDTH
    height = len(bars) * (BAR_HEIGHT + BAR_GAP) + BAR_GAP
    body: list[str] = []
    for index, bar in enumerate(bars):
        y = BAR_GAP + index * (BAR_HEIGHT + BAR_GAP)
        length = max(0.0, min(1.0, bar.value / top)) * plot_width
        label = escape(bar.label if len(bar.label) <= 22 else bar.label[:21] + "…")
        value = escape(f"{_number(bar.value)}{unit}")
        tooltip = escape(bar.note or f"{bar.label}: {_number(bar.value)}{unit}")
        rect = (
            f'<rect class="chart-bar" x="{LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{BAR_HEIGHT}" rx="3">'
            f"<title>{tooltip}</title></rect>"
        )
        if bar.href:
            rect = f'<a href="{escape(bar.href)}">{rect}</a>'
        body.append(
            f'<text class="chart-label" x="{LABEL_WIDTH - 8}" y="{y + BAR_HEIGHT * 0.7:.1f}" text-anchor="end">{label}</text>'
            f"{rect}"
            f'<text class="chart-value" x="{LABEL_WIDTH + length + 6:.1f}" y="{y + BAR_HEIGHT * 0.7:.1f}">{value}</text>'
        )
    return _svg(width=width, height=height, title=title, body=body, css_class="chart-bars")


def line_chart(
    *, series: Sequence[Series], x_labels: Sequence[str], title: str, unit: str = "",
    width: int = 640, height: int = 220, max_value: float | None = None,
) -> SafeString:
    """Lines over shared x labels (sessions, weeks, minutes), with a legend and dots per point."""
    points_count = len(x_labels)
    values = [v for s in series for v in s.values if v is not None]
    if not series or points_count == 0 or not values:
        return _empty(title, width)
    left, right, top_pad, bottom = 44, 12, 12, 40
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    top = max_value if max_value is not None else max(values)
    top = top or 1

    def x_at(i: int) -> float:
        return left + (plot_w * i / (points_count - 1) if points_count > 1 else plot_w / 2)

    def y_at(v: float) -> float:
        return top_pad + plot_h * (1 - max(0.0, min(1.0, v / top)))

    body = [
        f'<line class="chart-axis" x1="{left}" y1="{top_pad + plot_h}" x2="{width - right}" y2="{top_pad + plot_h}"/>',
        f'<text class="chart-note" x="{left - 6}" y="{top_pad + 4}" text-anchor="end">{escape(_number(top) + unit)}</text>',
        f'<text class="chart-note" x="{left - 6}" y="{top_pad + plot_h}" text-anchor="end">0</text>',
    ]
    step = max(1, points_count // 8)  # at most ~8 x labels
    for i in range(0, points_count, step):
        body.append(
            f'<text class="chart-note" x="{x_at(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">{escape(x_labels[i])}</text>'
        )
    for n, line in enumerate(series):
        css = f"chart-line-{n % SERIES_LIMIT}"
        path: list[str] = []
        for i, v in enumerate(line.values[:points_count]):
            if v is None:
                continue
            path.append(f"{'M' if not path else 'L'}{x_at(i):.1f},{y_at(v):.1f}")
            body.append(
                f'<circle class="chart-dot {css}" cx="{x_at(i):.1f}" cy="{y_at(v):.1f}" r="3">'
                f"<title>{escape(f'{line.name}, {x_labels[i]}: {_number(v)}{unit}')}</title></circle>"
            )
        if path:
            body.insert(3, f'<path class="chart-line {css}" d="{" ".join(path)}" fill="none"/>')
        body.append(
            f'<text class="chart-legend {css}" x="{left + 120 * n}" y="{height - 6}">{escape(line.name[:18])}</text>'
        )
    return _svg(width=width, height=height, title=title, body=body, css_class="chart-lines")


@dataclass(frozen=True, slots=True)
class StackedBar:
    """One row of a stacked bar chart: parts in legend order (text turns, speech turns, ...)."""

    label: str
    parts: Sequence[float]
    href: str = ""


def stacked_bar_chart(
    *, bars: Sequence[StackedBar], part_names: Sequence[str], title: str, unit: str = "", width: int = 640,
) -> SafeString:
    """Horizontal bars split into coloured parts (`chart-part-<n>`), the total at the bar's end,
    a legend below; each part's tooltip names it with its value."""
    if not bars:
        return _empty(title, width)
    top = max((sum(bar.parts) for bar in bars), default=0) or 1
    plot_width = width - LABEL_WIDTH - VALUE_WIDTH
    legend_height = 24
    height = len(bars) * (BAR_HEIGHT + BAR_GAP) + BAR_GAP + legend_height
    body: list[str] = []
    for index, bar in enumerate(bars):
        y = BAR_GAP + index * (BAR_HEIGHT + BAR_GAP)
        label = escape(bar.label if len(bar.label) <= 22 else bar.label[:21] + "…")
        x = float(LABEL_WIDTH)
        rects: list[str] = []
        for n, value in enumerate(bar.parts):
            length = max(0.0, value / top) * plot_width
            if length <= 0:
                continue
            name = part_names[n] if n < len(part_names) else f"Part {n + 1}"
            tooltip = escape(f"{bar.label}, {name}: {_number(value)}{unit}")
            rects.append(
                f'<rect class="chart-bar chart-part-{n % SERIES_LIMIT}" x="{x:.1f}" y="{y}" '
                f'width="{length:.1f}" height="{BAR_HEIGHT}"><title>{tooltip}</title></rect>'
            )
            x += length
        group = f'<g class="chart-stack">{"".join(rects)}</g>'
        if bar.href:
            group = f'<a href="{escape(bar.href)}">{group}</a>'
        total = escape(f"{_number(sum(bar.parts))}{unit}")
        body.append(
            f'<text class="chart-label" x="{LABEL_WIDTH - 8}" y="{y + BAR_HEIGHT * 0.7:.1f}" text-anchor="end">{label}</text>'
            f"{group}"
            f'<text class="chart-value" x="{x + 6:.1f}" y="{y + BAR_HEIGHT * 0.7:.1f}">{total}</text>'
        )
    legend_y = height - 8
    for n, name in enumerate(part_names):
        lx = LABEL_WIDTH + 130 * n
        body.append(
            f'<rect class="chart-part-{n % SERIES_LIMIT}" x="{lx}" y="{legend_y - 10}" width="12" height="12"/>'
            f'<text class="chart-legend" x="{lx + 16}" y="{legend_y}">{escape(name[:18])}</text>'
        )
    return _svg(width=width, height=height, title=title, body=body, css_class="chart-stacked")
