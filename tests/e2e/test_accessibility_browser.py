"""axe-core finds no serious or critical accessibility problem on any staff or recipient page.

axe-core is vendored for these tests only (tests/e2e/vendor/axe-core/, refreshed by `make vendor`),
never served to users. It is evaluated through the DevTools protocol (``page.evaluate``), which the
pages' Content-Security-Policy does not govern: the tests run under the real policy, unchanged
(no ``bypass_csp``), so they also see what the policy would block.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import screenshot
from tests.e2e.conftest import serve_logo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
# The campaign's own HTML (the preview's frame) is what staff wrote, not our page: it is not checked.
RUN_AXE = """async () => {
  const results = await axe.run(document, { iframes: false, resultTypes: ["violations"] });
  return results.violations
    .filter((violation) => ["serious", "critical"].includes(violation.impact))
    .map((violation) => `${violation.impact} ${violation.id}: ${violation.help} at ` +
      violation.nodes.slice(0, 3).map((node) => node.target.join(" ")).join(", "));
}"""


def serious_violations(page) -> list[str]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)
    return page.evaluate(RUN_AXE)


def test_axe_finds_nothing_serious_on_any_staff_page(logged_in_page, live_server, site_pages):
    page = logged_in_page
    serve_logo(page)
    found = {}
    for name, path in site_pages.staff.items():
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        violations = serious_violations(page)
        if violations:
            found[f"{name} {path}"] = violations
    # The open menu on a phone, over the page.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/campaigns/")
    page.locator(".navbar-burger").click()
    expect(page.locator("#main-menu")).to_be_visible()
    if violations := serious_violations(page):
        found["phone menu"] = violations

    assert found == {}, "\n".join(f"{page}:\n  " + "\n  ".join(lines) for page, lines in found.items())


def test_axe_finds_nothing_serious_on_the_recipient_pages_and_they_are_saved(page, live_server, site_pages):
    serve_logo(page)
    found = {}
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900 if width > 400 else 844})
        for name, path in site_pages.recipient.items():
            response = page.goto(f"{live_server.url}{path}")
            assert response.status == (404 if name == "link-invalid" else 200), name
            if violations := serious_violations(page):
                found[f"{name} at {width} px"] = violations
            if name in {"unsubscribe", "preferences", "view-online"}:
                screenshot(page, f"recipient-{name}" + ("-phone" if width < 400 else ""))

    assert found == {}, "\n".join(f"{page}:\n  " + "\n  ".join(lines) for page, lines in found.items())


def test_the_axe_check_catches_a_missing_label(page, live_server):
    page.goto(f"{live_server.url}/login/")
    page.evaluate("document.querySelector('label[for=id_username]').remove()")

    assert any("label" in line for line in serious_violations(page))


def test_every_browser_test_fails_on_a_failed_request_or_a_console_error(page, live_server, page_problems):
    def inject(route):
        response = route.fetch()
        broken = '<img src="/static/missing.png" alt="missing"><script src="/static/js/missing.js"></script>'
        route.fulfill(response=response, body=response.text().replace("</body>", f"{broken}</body>"))

    page.route(f"{live_server.url}/login/", inject)
    page.goto(f"{live_server.url}/login/")
    page.evaluate("setTimeout(() => { throw new Error('boom from a script'); }, 0); console.error('said in red')")
    page.wait_for_timeout(300)

    problems = "\n".join(page_problems.take())
    assert "/static/missing.png answered 404 (image)" in problems
    assert "/static/js/missing.js answered 404 (script)" in problems
    assert "uncaught exception: boom from a script" in problems
    assert "console error: said in red" in problems


def test_browsers_get_the_favicon_at_favicon_ico(page, live_server):
    response = page.goto(f"{live_server.url}/favicon.ico")

    assert response.status == 200 and response.headers["content-type"] in {"image/x-icon", "image/vnd.microsoft.icon"}
    page.goto(f"{live_server.url}/login/")
    icons = page.locator("link[rel=icon]")
    for href in icons.evaluate_all("links => links.map((link) => link.href)"):
        assert page.request.get(href).ok, href
