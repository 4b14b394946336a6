"""The campaign page in Chromium: a long subject keeps the page inside the screen, a refused schedule
keeps what was typed, and a sending campaign shows its rate, time left and the limit in force."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.models import Campaign, Recipient
from campaigns.snapshot import audience_snapshot
from stats.counters import outcomes_add
from tests.conftest import screenshot
from tests.factories import campaign_to, list_with_contacts

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# As long as a subject can be (Campaign.subject holds 255 characters; the form refuses more), with
# words and an address that has no place to break.
LONG_SUBJECT = (
    "Autumn regatta results, the new training times for juniors and seniors, the boat house work party "
    "and the annual general meeting: "
    + "https://rowing.example/news/autumn-regatta-results-and-training-times-for-everyone-"
    * 2
)[:255]


def page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


@pytest.mark.parametrize("width", [1280, 390], ids=["laptop", "phone"])
def test_a_long_subject_keeps_the_campaign_page_inside_the_screen(logged_in_page, live_server, width):
    assert len(LONG_SUBJECT) == Campaign._meta.get_field("subject").max_length
    campaign = campaign_to(list_with_contacts(1), subject=LONG_SUBJECT, name="Autumn regatta newsletter " * 4)
    page = logged_in_page
    page.set_viewport_size({"width": width, "height": 900})

    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")

    expect(page.locator(".page-header .subtitle")).to_contain_text(LONG_SUBJECT[:60])
    assert page_width(page) <= width
    duplicate = page.get_by_role("button", name="Duplicate").bounding_box()
    assert duplicate["x"] >= 0 and duplicate["x"] + duplicate["width"] <= width
    screenshot(page, f"campaign-page-long-subject-{width}")


def test_a_schedule_refused_as_in_the_past_keeps_the_date_time_and_zone_typed(logged_in_page, live_server):
    campaign = campaign_to(list_with_contacts(1), name="Spring regatta")
    page = logged_in_page
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")

    page.fill("#id_send_at", "2021-05-01T09:30")
    page.select_option("#id_time_zone", "Pacific/Auckland")
    page.click("#schedule-form button[type=submit]")

    expect(page.get_by_test_id("schedule-error")).to_contain_text("at least a minute in the future")
    expect(page.locator("#id_send_at")).to_have_value("2021-05-01T09:30")
    expect(page.locator("#id_time_zone")).to_have_value("Pacific/Auckland")
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


def test_the_campaign_page_while_sending_shows_rate_time_left_and_the_limit(logged_in_page, live_server, settings):
    settings.SEND_RATE = 20
    campaign = campaign_to(list_with_contacts(300, name="Rowing club"), name="Autumn regatta")
    Campaign.objects.filter(pk=campaign.pk).update(
        status=Campaign.Status.SENDING, started_at=timezone.now() - dt.timedelta(minutes=40)
    )
    audience_snapshot(campaign_id=campaign.pk)
    # 60 sent before a 30-minute pause, then 2 a second since the resume. The last sends are stamped
    # a few seconds ahead so that a slow machine still finds the stretch fresh when the page loads.
    now = timezone.now()
    stamps = [now - dt.timedelta(minutes=35, seconds=s) for s in range(60)]
    stamps += [now + dt.timedelta(seconds=4) - dt.timedelta(seconds=s // 2) for s in range(48)]
    recipients = list(Recipient.objects.filter(campaign=campaign).order_by("id")[: len(stamps)])
    for recipient, stamp in zip(recipients, sorted(stamps), strict=True):
        recipient.status, recipient.sent_at = Recipient.Status.SENT, stamp
    Recipient.objects.bulk_update(recipients, ["status", "sent_at"])
    outcomes_add(campaign_id=campaign.pk, sent=len(recipients))
    page = logged_in_page

    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")

    expect(page.get_by_test_id("campaign-status")).to_have_text("Sending")
    expect(page.get_by_test_id("sent-count")).to_have_text("108")
    rate = page.get_by_test_id("send-rate")
    expect(rate).to_contain_text("msg/s")
    # 192 left at a little over 2 msg/s (the time since the resume grows while the page loads).
    expect(page.get_by_test_id("time-left")).to_have_text(re.compile(r"^about [12] min left$"))
    expect(page.get_by_test_id("send-limit")).to_have_text("limit 20 msg/s (set by SEND_RATE)")
    assert " s left" not in rate.inner_text()
    screenshot(page, "campaign-page-sending")
