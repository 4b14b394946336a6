"""Every staff page and recipient page fits a phone screen (390 × 844): tables scroll inside their
card, never the page, and the open menu and primary buttons read at WCAG AA contrast."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.cobalt_mail.test_access import app_urls
from tests.conftest import screenshot
from tests.e2e.conftest import NOT_STAFF_PAGES, STAFF_PAGES, serve_logo

PHONE = {"width": 390, "height": 844}
# Widest element first: what sticks out past the right edge of the screen, for the failure message.
OVERFLOW_REPORT = """() => {
  const width = document.documentElement.clientWidth;
  const clipped = (element) => {
    for (let node = element.parentElement; node && node !== document.body; node = node.parentElement) {
      if (getComputedStyle(node).overflowX !== "visible") return true;
    }
    return false;
  };
  const describe = (element) =>
    `${element.tagName.toLowerCase()}${element.id ? "#" + element.id : ""}.${[...element.classList].join(".")}` +
    ` right=${Math.round(element.getBoundingClientRect().right)}`;
  return [...document.querySelectorAll("body *")]
    .filter((element) => element.getBoundingClientRect().right > width + 1 && !clipped(element))
    .map(describe)
    .slice(0, 8);
}"""


def test_the_staff_page_list_matches_the_url_resolver():
    names = {name for name, _ in app_urls()}

    # A new URL is a page (STAFF_PAGES, with its arguments) or not (NOT_PAGES, PARTIALS).
    assert names - NOT_STAFF_PAGES - set(STAFF_PAGES) == set()
    assert set(STAFF_PAGES) - names == set()  # no page left over from a removed URL


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_no_staff_page_is_wider_than_a_phone(logged_in_page, live_server, site_pages):
    page = logged_in_page
    serve_logo(page)
    page.set_viewport_size(PHONE)
    too_wide = {}
    for name, path in site_pages.staff.items():
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == (404 if name == "not-found" else 200), (name, path, response.status)
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            too_wide[f"{name} {path}"] = (width, page.evaluate(OVERFLOW_REPORT))
            screenshot(page, f"phone-too-wide-{name.replace(':', '-')}")
    assert too_wide == {}, "\n".join(f"{page}: {width} px, {items}" for page, (width, items) in too_wide.items())


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_no_recipient_page_is_wider_than_a_phone(page, live_server, site_pages):
    serve_logo(page)
    page.set_viewport_size(PHONE)
    for name, path in site_pages.recipient.items():
        page.goto(f"{live_server.url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_wide_tables_scroll_inside_their_card_on_a_phone(logged_in_page, live_server, site_pages):
    page = logged_in_page
    serve_logo(page)
    page.set_viewport_size(PHONE)
    for name in ("audiences:contacts", "audiences:import_detail", "tracking:events"):
        page.goto(f"{live_server.url}{site_pages.staff[name]}")
        table = page.locator("main table").first
        expect(table).to_be_visible()
        container = table.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' table-container ')][1]")
        assert container.evaluate("element => getComputedStyle(element).overflowX") == "auto", name
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
        screenshot(page, f"phone-{name.split(':')[1].replace('_', '-')}")


# WCAG contrast of an element's text on what is behind it (see-through backgrounds blended in).
CONTRAST = """(element) => {
  const parse = (colour) => { const [r, g, b, a = 1] = colour.match(/[\\d.]+/g).map(Number); return [r, g, b, a]; };
  const luminance = ([r, g, b]) => {
    const linear = [r, g, b].map((c) => { c /= 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2];
  };
  const layers = [];
  for (let node = element; node; node = node.parentElement) {
    const layer = parse(getComputedStyle(node).backgroundColor);
    if (layer[3] > 0) layers.push(layer);
    if (layer[3] === 1) break;
  }
  let behind = [255, 255, 255];
  for (const [r, g, b, a] of layers.reverse()) behind = [r, g, b].map((c, i) => c * a + behind[i] * (1 - a));
  const [light, dark] = [luminance(parse(getComputedStyle(element).color)), luminance(behind)].sort((x, y) => y - x);
  return (light + 0.05) / (dark + 0.05);
}"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_open_menu_and_primary_buttons_read_at_wcag_aa_on_a_phone(logged_in_page, live_server):
    page = logged_in_page
    serve_logo(page)
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/campaigns/")

    page.locator(".navbar-burger").click()
    expect(page.locator("#main-menu")).to_be_visible()
    screenshot(page, "phone-menu-open")
    for item in page.locator("#main-menu .navbar-item:visible").all():
        if item.inner_text().strip():
            assert item.evaluate(CONTRAST) >= 4.5, item.inner_text()
    button = page.locator(".button.is-primary").first
    assert button.evaluate(CONTRAST) >= 4.5
