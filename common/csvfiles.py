"""CSV helpers: cells a spreadsheet will not run as formulas, and lines for a streamed response."""

from __future__ import annotations

# Cells a spreadsheet would evaluate as a formula (OWASP "CSV injection"); tab and CR also
# start formulas in some programs.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_escape(value: object) -> str:
    """The cell as text, prefixed with an apostrophe if a spreadsheet would run it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class Echo:
    """A file-like object whose write returns the line instead of storing it."""

    def write(self, value: str) -> str:
        return value
