"""The composer in Chromium: the preview sandbox, body modes, and compose -> preview -> test send."""

from __future__ import annotations

import email
import re
from email import policy

import pytest
from playwright.sync_api import expect

from campaigns.models import Campaign
from tests.conftest import screenshot
from tests.factories import CampaignFactory, list_with_contacts

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAYLOAD = (
    "<p id='hello'>Hi {{ first_name }}</p>"
    "<script>document.title = 'pwned-script'; window.parent.__pwned = 'script'; "
    "window.top.document.title = 'pwned-top';</script>"
    "<img id='broken' src='/no-such-image.png' onerror=\"parent.__pwned = 'onerror'; "
    "parent.document.title = 'pwned-onerror'; document.title = 'pwned-frame'\">"
    "<svg><script>parent.__pwned = 'svg'</script></svg>"
)


def test_script_in_campaign_html_does_not_run_in_the_preview(logged_in_page, live_server, page_problems):
    campaign = CampaignFactory(name="Hostile", html_body=PAYLOAD)
    page = logged_in_page
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text))

    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/preview/")
    frame_element = page.locator("#preview-frame")
    assert frame_element.get_attribute("sandbox") == ""
    frame = page.frame_locator("#preview-frame")
    expect(frame.locator("#hello")).to_have_text("Hi Alex")
    expect(frame.locator("#broken")).to_be_attached()
    page.wait_for_timeout(500)  # time for an onerror handler to have fired, had it been allowed

    assert page.title() == "Preview Hostile · Cobalt Mail"
    assert page.evaluate("window.__pwned") is None
    inner = next(f for f in page.frames if f.url.endswith(f"/campaigns/{campaign.pk}/preview/html/"))
    assert inner.evaluate("document.title") == ""
    assert inner.evaluate("typeof window.__pwned") == "undefined"
    assert any("Content Security Policy" in text or "sandboxed" in text for text in blocked)
    # The payload's own doing, and nothing else: its scripts blocked by the sandbox, its broken image.
    problems = page_problems.take()
    assert problems and all("sandboxed" in line or "/no-such-image.png" in line for line in problems), problems
    screenshot(page, "compose-preview-sandbox")


def test_switching_body_modes_keeps_content_or_asks_first(logged_in_page, live_server):
    page = logged_in_page
    page.goto(f"{live_server.url}/campaigns/new/")
    page.click("label.body-mode-choice:has-text('HTML')")  # new campaigns open in rich text
    page.fill("#id_html_body", "<table><tr><td>Cell {{ first_name }}</td></tr></table>")

    dialogs: list[str] = []

    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.click("label.body-mode-choice:has-text('Rich text')")
    expect(page.locator("#body-mode input[value=html]")).to_be_checked()
    assert dialogs and "would be simplified" in dialogs[0]
    expect(page.locator("#id_html_body")).to_have_value("<table><tr><td>Cell {{ first_name }}</td></tr></table>")

    # HTML -> Markdown keeps the HTML as it is; Markdown -> HTML converts it on the server.
    page.click("label.body-mode-choice:has-text('Markdown')")
    expect(page.locator("#id_body_source")).to_have_value("<table><tr><td>Cell {{ first_name }}</td></tr></table>")
    page.fill("#id_body_source", "## Hi {{ first_name }}\n\n*soon*")
    page.click("label.body-mode-choice:has-text('HTML')")
    expect(page.locator("#id_html_body")).to_have_value("<h2>Hi {{ first_name }}</h2>\n<p><em>soon</em></p>")

    # Simple HTML goes into the rich-text editor without a question.
    page.click("label.body-mode-choice:has-text('Rich text')")
    expect(page.locator(".ql-editor h2")).to_have_text("Hi {{ first_name }}")
    assert len(dialogs) == 1
    screenshot(page, "compose-modes")


def test_compose_preview_and_test_send_in_the_browser(logged_in_page, live_server, ses):
    list_with_contacts(2, name="Rowing club", first_name="Grace")
    page = logged_in_page
    page.on("dialog", lambda dialog: dialog.accept())

    page.goto(f"{live_server.url}/campaigns/new/")
    page.fill("#id_name", "Autumn regatta")
    page.fill("#id_subject", "Regatta news for {{ first_name }}")
    page.fill("#id_preheader", "Times and teams inside")
    page.click("label.body-mode-choice:has-text('Rich text')")
    page.locator(".ql-editor").click()
    page.keyboard.type('Hello {{ first_name|default:"rower" }}, the regatta is on Saturday.')
    page.check("text=Rowing club >> nth=0")
    screenshot(page, "compose-form")
    page.click("button:has-text('Save draft')")
    page.wait_for_url(re.compile(r"/campaigns/\d+/$"))
    campaign = Campaign.objects.get(name="Autumn regatta")
    assert campaign.body_mode == "rich"
    assert 'Hello {{ first_name|default:"rower" }}, the regatta is on Saturday.' in campaign.html_body

    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/preview/")
    page.select_option("#preview-contact", index=1)
    page.click("#preview-chooser button[type=submit]")
    expect(page.locator("#inbox-subject")).to_have_text("Regatta news for Grace")
    expect(page.locator("#inbox-preheader")).to_contain_text("Times and teams inside")
    frame = page.frame_locator("#preview-frame")
    expect(frame.locator("body")).to_contain_text("Hello Grace, the regatta is on Saturday.")
    expect(frame.locator("a", has_text="Unsubscribe")).to_be_visible()
    screenshot(page, "compose-preview-desktop")

    page.click("#preview-tabs a:has-text('Mobile')")
    assert page.locator("#preview-frame").bounding_box()["width"] == pytest.approx(375, abs=2)
    screenshot(page, "compose-preview-mobile")
    page.click("#preview-tabs a:has-text('Plain text')")
    expect(page.locator("#preview-text")).to_contain_text("Hello Grace, the regatta is on Saturday.")

    page.fill("#id_addresses", "me@example.org, coach@example.org")
    page.click("#test-send-form button[type=submit]")
    expect(page.locator(".notification.is-success")).to_contain_text("Test sent to me@example.org, coach@example.org")
    screenshot(page, "compose-test-sent")

    received = [email.message_from_string(raw["raw_data"], policy=policy.default) for raw in ses.sent()]
    assert sorted(message["To"] for message in received) == ["coach@example.org", "me@example.org"]
    assert {message["Subject"] for message in received} == {"[TEST] Regatta news for Grace"}
    assert not campaign.recipients.exists()
