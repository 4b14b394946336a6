"""``http_url``: a stored URL that may become an ``href``, or nothing.

Links shown on staff pages come from outside (SES click events, imported contact data). A
``javascript:``, ``data:`` or ``vbscript:`` link in an ``href`` runs in the site's origin when
clicked, and browsers forgive a lot before they parse a URL (upper case, tabs and newlines inside
the scheme, leading spaces and control characters). So a value becomes a link only if it is an
absolute ``http`` / ``https`` URL with a host and holds no whitespace or control character at all;
everything else is shown as text by the template.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django import template

register = template.Library()

SAFE_SCHEMES = frozenset({"http", "https"})
# C0 controls, space and DEL: browsers strip or skip them while parsing ("java\tscript:").
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


def http_url(value: object) -> str:
    """``value`` if it is an absolute http(s) URL that is safe as an ``href``, else ``""``."""
    text = "" if value is None else str(value)
    if not text or _CONTROL_OR_SPACE.search(text) or "\\" in text:
        return ""
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return ""
    if parts.scheme.lower() not in SAFE_SCHEMES or not parts.hostname:
        return ""
    return text


register.filter("http_url", http_url, is_safe=False)
