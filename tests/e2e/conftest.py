"""Browser-test fixtures: every Chromium test here fails on any Content-Security-Policy violation.

The ``page`` fixture of tests/conftest.py is wrapped so that a test which makes the browser block
or report anything under a policy (an inline script, a style attribute, an eval, a stray origin)
fails at teardown with the browser's own words. Two sources, because neither sees everything:
the ``securitypolicyviolation`` event (directive, source line and a sample; in every frame that
can run script) and Chromium's console message (also from sandboxed frames, where no script runs).
A test that provokes a violation on purpose takes it with ``csp_violations.take()``.
"""

from __future__ import annotations

import pytest

# Signed-SNS fixtures of the tracking tests, for browser tests that feed the webhook.
from tests.tracking.conftest import cert_server, signing, sns_settings  # noqa: F401

REPORT_BINDING = "__cobaltReportCspViolation"
# Runs before any script of every document (Playwright injects it outside the page's policy).
LISTENER = f"""
document.addEventListener("securitypolicyviolation", (event) => {{
  window.{REPORT_BINDING}({{
    directive: event.effectiveDirective, blocked: event.blockedURI, disposition: event.disposition,
    source: event.sourceFile, line: event.lineNumber, sample: event.sample, document: event.documentURI,
  }});
}});
"""


class CspViolations:
    """What the browser reported on one page, as readable lines."""

    def __init__(self) -> None:
        self.reports: list[str] = []

    def attach(self, page) -> None:
        page.expose_binding(REPORT_BINDING, lambda _source, violation: self._event(violation))
        page.add_init_script(LISTENER)
        page.on("console", self._console)

    def _event(self, violation: dict) -> None:
        self.reports.append(
            f"{violation['disposition']} {violation['directive']} blocked {violation['blocked'] or '?'} "
            f"on {violation['document']} at {violation['source']}:{violation['line']} {violation['sample']!r}"
        )

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.reports.append(f"console: {message.text} ({message.location.get('url', '')})")

    def settle(self, page) -> None:
        """Let reports already sent by the page reach us: any round trip delivers them first."""
        if not page.is_closed():
            try:
                page.evaluate("0")
            except Exception:  # the page may be navigating or its context gone; nothing left to flush
                pass

    def take(self) -> list[str]:
        """The reports so far, which the test then owns (teardown will not fail on them)."""
        taken, self.reports = self.reports, []
        return taken


@pytest.fixture
def csp_violations() -> CspViolations:
    return CspViolations()


@pytest.fixture
def page(page, csp_violations):
    csp_violations.attach(page)
    yield page
    csp_violations.settle(page)
    if csp_violations.reports:
        pytest.fail(
            "Content-Security-Policy violations in the browser:\n  " + "\n  ".join(csp_violations.reports),
            pytrace=False,
        )
