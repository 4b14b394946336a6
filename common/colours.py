"""Colour contrast by WCAG 2: pages in a layout's colours must stay readable."""

from __future__ import annotations

WCAG_AA = 4.5


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def readable_on(background: str, colour: str) -> str:
    """``colour``, darkened in small steps until it reaches WCAG AA contrast on ``background``."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    while contrast_ratio(colour, background) < WCAG_AA and (red or green or blue):
        red, green, blue = (int(channel * 0.9) for channel in (red, green, blue))
        colour = f"#{red:02x}{green:02x}{blue:02x}"
    return colour
