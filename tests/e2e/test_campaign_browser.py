"""A staff member creates a campaign in Chromium, sends it, and watches the sent count arrive."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import screenshot
from tests.factories import list_with_contacts

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_staff_create_send_and_watch_a_campaign_complete(logged_in_page, live_server, workers, ses):
    list_with_contacts(8, name="Rowing club")
    workers.start(1)
    page = logged_in_page
    page.on("dialog", lambda dialog: dialog.accept())

    page.click("text=Campaigns")
    page.click("text=New campaign")
    page.fill("#id_name", "Spring regatta")
    page.fill("#id_subject", "Regatta news for {{ first_name }}")
    page.locator(".ql-editor").click()  # new campaigns open in the rich-text editor
    page.keyboard.type("Hello {{ first_name }}, the regatta is on Saturday.")
    page.check("text=Rowing club >> nth=0")
    screenshot(page, "campaign-form")
    page.click("button:has-text('Save draft')")

    expect(page.get_by_test_id("audience-count")).to_have_text("8")
    page.click("button:has-text('Send now')")
    expect(page.get_by_test_id("sent-count")).to_have_text("8", timeout=90_000)
    expect(page.get_by_test_id("campaign-status")).to_have_text("Sent")
    screenshot(page, "campaign-sent")
    assert len(ses.sent()) == 8


@pytest.mark.parametrize("width", [1280, 390], ids=["laptop", "phone"])
def test_main_pages_render_for_staff_on_laptop_and_phone(logged_in_page, live_server, width):
    page = logged_in_page
    page.set_viewport_size({"width": width, "height": 900})
    list_with_contacts(3, name="Newsletter")
    for path, name, heading in [
        ("/", "home", "Welcome"),
        ("/campaigns/", "campaigns", "Campaigns"),
        ("/campaigns/new/", "campaign-new", "New campaign"),
        ("/audiences/", "audiences", "Audiences"),
        ("/reports/", "reports", "Reports"),
        ("/settings/", "settings", "Settings"),
    ]:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        expect(page.locator("h1").first).to_contain_text(heading)
        screenshot(page, f"{name}-{width}")


def test_the_login_page_rejects_a_wrong_password_with_a_message(page, live_server, staff_user):
    page.goto(f"{live_server.url}/campaigns/")
    page.fill("#id_username", staff_user.username)
    page.fill("#id_password", "wrong")
    page.click("button[type=submit]")
    expect(page.locator(".notification")).to_contain_text("did not match")
    screenshot(page, "login-error")
