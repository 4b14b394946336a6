"""Server-side SVG charts: no JavaScript chart library, nothing to vendor, works in every browser.

Each function returns a ``SafeString`` of SVG markup; every label is escaped. Charts scale with
their container (``viewBox`` + ``width: 100%``) so they read on a laptop and on a phone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2")


def _nice_max(value: float) -> float:
    """The smallest 1/2/5 × 10^n at or above ``value`` (so axis ticks are round numbers)."""
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def line_chart(
    times: Sequence[datetime],
    series: dict[str, Sequence[int]],
    *,
    title: str,
    time_format: str = "%d %b %H:%M",
) -> SafeString:
    """Lines over time, one per series (e.g. opens and clicks per hour)."""
    width, height, left, bottom, top, right = 1000, 260, 44, 28, 22, 12
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_max(max((max(values, default=0) for values in series.values()), default=0))
    count = len(times)
    parts = [_svg_open(width, height, title)]
    for tick in range(5):
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_short(peak * tick / 4)}</text>')
    if count == 0:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">No data yet</text>')
    for index, (name, values) in enumerate(series.items()):
        color = PALETTE[index % len(PALETTE)]
        points = " ".join(
            f"{left + (plot_w * i / max(count - 1, 1)):.1f},{top + plot_h - plot_h * v / peak:.1f}"
            for i, v in enumerate(values)
        )
        if points:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        if count <= 60:  # dots make single points (the first hour) and sparse data visible
            parts.extend(
                f'<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>' for x, y in (p.split(",") for p in points.split())
            )
        parts.append(
            f'<rect x="{left + 8 + index * 130}" y="4" width="10" height="10" fill="{color}"/>'
            f'<text x="{left + 22 + index * 130}" y="13">{escape(name)}</text>'
        )
    for i in sorted({0, count // 2, count - 1}) if count else []:
        x = left + plot_w * i / max(count - 1, 1)
        anchor = "start" if i == 0 else ("end" if i == count - 1 else "middle")
        parts.append(
            f'<text x="{x:.1f}" y="{height - 8}" text-anchor="{anchor}">{escape(times[i].strftime(time_format))}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def bar_chart(rows: Sequence[tuple[str, int]], *, title: str, color: str = PALETTE[0]) -> SafeString:
    """Horizontal bars with labels and values (funnel, bounce reasons, top links, domains)."""
    row_h, label_w, width = 24, 150, 420
    height = max(1, len(rows)) * row_h + 8
    peak = max((value for _, value in rows), default=0) or 1
    parts = [_svg_open(width, height, title)]
    if not rows:
        parts.append(f'<text x="{width / 2}" y="18" text-anchor="middle">No data yet</text>')
    for index, (label, value) in enumerate(rows):
        y = 4 + index * row_h
        bar = (width - label_w - 60) * value / peak
        shown = label if len(label) <= 24 else label[:23] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{bar:.1f}" height="{row_h - 8}" rx="3" fill="{color}"/>'
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
