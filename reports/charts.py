"""Server-side SVG charts: no JavaScript chart library, nothing to vendor, works in every browser.

Each function returns a ``SafeString`` of SVG markup; every label is escaped. Charts scale with
their container (``viewBox`` + ``width: 100%``) so they read on a laptop and on a phone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import localtime

PALETTE = ("#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2")


FONT_SIZE = 11  # user units; static/css/app.css sets svg.chart's font to match
_NARROW = set("ijlIJ',. ·/:;\\|f-t()[]!r")
_WIDE = set("mwMW@%…#+<=>^~&")


def text_width(text: str, size: float = FONT_SIZE) -> float:
    """A generous estimate of ``text``'s width in user units: a little wider than DejaVu Sans (the
    widest common sans-serif, the Linux default), so a label laid out with it is never cut off."""
    width = 0.0
    for char in text:
        if char in _NARROW:
            width += 0.42
        elif char in _WIDE or ord(char) > 0x2FF:
            width += 1.0
        elif char.isupper() or char.isdigit():
            width += 0.8
        else:
            width += 0.66
    return width * size


def _fit(text: str, room: float) -> str:
    """``text``, shortened with "…" until it fits in ``room`` user units."""
    if text_width(text) <= room:
        return text
    while text and text_width(text + "…") > room:
        text = text[:-1]
    return text + "…"


def _nice_step(peak: float, ticks: int) -> int:
    """A whole 1/2/5 × 10^n step such that ``ticks`` steps reach ``peak`` (counts are integers)."""
    rough = max(peak / ticks, 1)
    magnitude = 10 ** (len(str(int(rough))) - 1)
    for step in (1, 2, 5, 10):
        if rough <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def line_chart(
    times: Sequence[datetime],
    series: dict[str, Sequence[int]],
    *,
    title: str,
    time_format: str = "%d %b %H:%M",
    styles: dict[str, tuple[str, bool]] | None = None,
) -> SafeString:
    """Lines over time, one per series (e.g. opens and clicks per minute, hour or day).

    ``styles`` gives a series its (colour, dashed); the palette's next colour, solid, otherwise.
    A dot marks every point while there are few (a fresh campaign's first minutes), and up to six
    times are written under the axis, in the site's time zone.
    """
    width, height, bottom, top, right = 1000, 260, 28, 26, 16
    ticks = 4
    step = _nice_step(max((max(values, default=0) for values in series.values()), default=0), ticks)
    peak = step * ticks
    left = 10 + max(text_width(_short(step * tick)) for tick in range(ticks + 1))
    plot_w, plot_h = width - left - right, height - top - bottom
    count = len(times)
    parts = [_svg_open(width, height, title)]
    for tick in range(ticks + 1):
        y = top + plot_h - plot_h * tick / ticks
        parts.append(f'<line x1="{left:.1f}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(f'<text x="{left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end">{_short(step * tick)}</text>')
    if count == 0:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">No data yet</text>')

    def x_of(i: int) -> float:
        return left + plot_w / 2 if count == 1 else left + plot_w * i / (count - 1)

    legend_x = left + 8
    for index, (name, values) in enumerate(series.items()):
        color, dashed = (styles or {}).get(name, (PALETTE[index % len(PALETTE)], False))
        line = ' stroke-dasharray="6 4" stroke-width="1.5"' if dashed else ' stroke-width="2.5"'
        points = [(x_of(i), top + plot_h - plot_h * v / peak) for i, v in enumerate(values)]
        if len(points) > 1:
            joined = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline fill="none" stroke="{color}"{line} points="{joined}"/>')
        if count <= 72 and not dashed:  # dots make single points and sparse data visible
            parts.extend(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in points if y < top + plot_h
            )
        parts.append(
            f'<line x1="{legend_x:.1f}" x2="{legend_x + 16:.1f}" y1="11" y2="11" stroke="{color}"{line}/>'
            f'<text x="{legend_x + 20:.1f}" y="15">{escape(name)}</text>'
        )
        legend_x += 20 + text_width(name) + 20
    labels = sorted({round(i * (count - 1) / 5) for i in range(6)}) if count > 1 else ([0] if count else [])
    for i in labels:
        label = localtime(times[i]).strftime(time_format)
        x = x_of(i)
        # Anchored so that the first and last labels stay inside the chart.
        anchor = "middle"
        if x - text_width(label) / 2 < 0:
            anchor = "start"
        elif x + text_width(label) / 2 > width:
            anchor = "end"
        parts.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="{anchor}">{escape(label)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))


def bar_chart(rows: Sequence[tuple[str, int]], *, title: str, color: str = PALETTE[0]) -> SafeString:
    """Horizontal bars with labels and values (funnel, bounce reasons, top links, domains).

    The label column is as wide as the longest label needs (at most ~45% of the chart: longer
    labels are shortened with "…" and the full text is the label's tooltip); the values get the
    room their widest figure needs on the right. No label or value can reach past the edges.
    """
    row_h, width, gap = 24, 420, 8
    height = max(1, len(rows)) * row_h + 8
    peak = max((value for _, value in rows), default=0) or 1
    shown = [_fit(label, width * 0.45) for label, _ in rows]
    label_w = gap + max((text_width(label) for label in shown), default=0) + gap
    value_w = 6 + max((text_width(f"{value:,}") for _, value in rows), default=0) + 4
    parts = [_svg_open(width, height, title)]
    if not rows:
        parts.append(f'<text x="{width / 2}" y="18" text-anchor="middle">No data yet</text>')
    for index, ((label, value), short) in enumerate(zip(rows, shown, strict=True)):
        y = 4 + index * row_h
        bar = (width - label_w - value_w) * value / peak
        parts.append(
            f'<text x="{label_w - gap:.1f}" y="{y + 16}" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(short)}</text>"
            f'<rect x="{label_w:.1f}" y="{y + 3}" width="{bar:.1f}" height="{row_h - 8}" rx="3" fill="{color}"/>'
            f'<text x="{label_w + bar + 6:.1f}" y="{y + 16}">{value:,}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def _svg_open(width: int, height: int, title: str) -> str:
    return (
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" preserveAspectRatio="xMidYMid meet" '
        # Sized by static/css/app.css (svg.chart): the Content-Security-Policy refuses style attributes.
        f'xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>"
    )


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"
