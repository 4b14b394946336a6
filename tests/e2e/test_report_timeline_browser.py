"""In Chromium: a recipient's events open under their own row, chart labels are never cut off,
and the campaign report as a club secretary sees it (tests/artifacts/campaign-report.png)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.composer.rendering import recipient_links
from campaigns.models import Campaign
from campaigns.snapshot import recipient_domains
from stats.counters import snapshot_recorded
from tests.conftest import screenshot
from tests.sns import campaign_with_recipients, new_id, notify, post, signed  # noqa: F401
from tests.tracking.records import event, iso

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HUMAN = {"userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36"}
LONG_LINK = "https://club.example/news/autumn-fixtures-and-results-for-every-team-in-the-league-2026"


@pytest.fixture
def reported_campaign(notify, settings, live_server):  # noqa: F811
    """12 recipients of a campaign started 25 minutes ago: deliveries, opens and clicks over its
    first minutes, personal unsubscribe clicks, and three bounces with long reasons."""
    settings.SITE_URL = live_server.url
    campaign, recipients = campaign_with_recipients(12, status=Campaign.Status.SENT)
    started = timezone.now() - timedelta(minutes=25)
    Campaign.objects.filter(pk=campaign.pk).update(started_at=started, finished_at=started, snapshot_at=started)
    snapshot_recorded(campaign_id=campaign.pk, recipients=12, domains=recipient_domains(campaign_id=campaign.pk))

    def send(kind, recipient, minute=None, **detail):
        if minute is not None:
            detail["timestamp"] = iso(started + timedelta(minutes=minute, seconds=20))
        record = event(kind, address=recipient.email, message_id=recipient.ses_message_id, campaign=campaign.pk,
                       recipient=recipient.pk, **detail)  # fmt: skip
        assert notify(record, message_id=new_id()).status_code == 200

    for index, recipient in enumerate(recipients[:9]):
        send("Delivery", recipient, minute=1)
        send("Open", recipient, minute=2 + index * 2, **HUMAN)
    for index, recipient in enumerate(recipients[:5]):
        send("Click", recipient, minute=4 + index * 3, link=LONG_LINK, **HUMAN)
    for recipient in recipients[5:8]:
        send("Click", recipient, minute=12, link=recipient_links(recipient.pk)["unsubscribe_url"], **HUMAN)
    send("Bounce", recipients[9], minute=1, bounceType="Undetermined", bounceSubType="Undetermined")
    send("Bounce", recipients[10], minute=1, bounceType="Transient", bounceSubType="AttachmentRejected")
    send("Bounce", recipients[11], minute=1, bounceType="Permanent", bounceSubType="UnsubscribedRecipient")
    campaign.refresh_from_db()
    return campaign, recipients


def recipient_row(page, email: str):
    link = page.get_by_role("link", name=email, exact=True)
    return page.locator("#recipients tbody tr:not(.timeline-row)").filter(has=link)


def test_a_recipients_events_open_under_their_own_row(logged_in_page, live_server, reported_campaign):
    campaign, recipients = reported_campaign
    page = logged_in_page
    page.goto(f"{live_server.url}/reports/campaigns/{campaign.pk}/recipients/")
    rows = page.locator("#recipients tbody tr")
    expect(rows).to_have_count(12)
    bounced = recipients[10]
    row = recipient_row(page, bounced.email)
    row.get_by_role("link", name=bounced.email, exact=True).click()

    timeline = page.locator("#recipients tbody tr.timeline-row")
    expect(timeline).to_have_count(1)
    expect(timeline).to_contain_text(f"Events for {bounced.email}")
    expect(timeline).to_contain_text("Transient/AttachmentRejected")
    # Right under the clicked row, not under the table.
    assert row.evaluate("tr => tr.nextElementSibling.classList.contains('timeline-row')")
    row_box, timeline_box = row.bounding_box(), timeline.bounding_box()
    assert abs(timeline_box["y"] - (row_box["y"] + row_box["height"])) < 2
    assert row.get_by_role("link", name=bounced.email, exact=True).get_attribute("aria-expanded") == "true"
    screenshot(page, "report-recipient-timeline")

    # Another recipient's events open under theirs; a second click closes them.
    other = recipients[2]
    other_row = recipient_row(page, other.email)
    other_row.get_by_role("link", name=other.email, exact=True).click()
    expect(timeline).to_have_count(2)
    under_other = other_row.locator("xpath=following-sibling::tr[1]")
    expect(under_other).to_have_class("timeline-row")
    expect(under_other).to_contain_text(f"Events for {other.email}")
    expect(under_other).to_contain_text("Open")
    row.get_by_role("link", name=bounced.email, exact=True).click()
    expect(timeline).to_have_count(1)
    expect(timeline).to_contain_text(f"Events for {other.email}")


# Every <text> of every chart, measured by the browser, against its svg's viewBox.
CLIPPED_LABELS = """
() => [...document.querySelectorAll("svg.chart")].flatMap((svg) => {
  const view = svg.viewBox.baseVal;
  return [...svg.querySelectorAll("text")].map((text) => {
    const box = text.getBBox();
    return {text: text.textContent, left: box.x, right: box.x + box.width, top: box.y, bottom: box.y + box.height,
            width: view.width, height: view.height};
  }).filter((b) => b.left < -0.5 || b.top < -0.5 || b.right > b.width + 0.5 || b.bottom > b.height + 0.5);
})
"""


@pytest.mark.parametrize("width", [1280, 390], ids=["laptop", "phone"])
def test_the_report_draws_a_fresh_campaign_per_minute_and_cuts_no_label(
    logged_in_page, live_server, reported_campaign, width
):
    campaign, _ = reported_campaign
    page = logged_in_page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{live_server.url}/reports/campaigns/{campaign.pk}/")
    expect(page.get_by_test_id("opened-headline")).to_have_text("9")
    expect(page.locator("h2", has_text="Opens and clicks per minute")).to_have_count(1)
    # 26 minutes from the start to now, one point each: not one hourly column of dots.
    points = page.locator("svg.chart polyline").first.get_attribute("points").split()
    assert len(points) >= 26
    bounce_chart = page.locator(".box", has=page.locator("h2", has_text="Bounce reasons")).locator("svg")
    for reason in ("Undetermined/Undetermined", "Transient/AttachmentRejected", "Permanent/UnsubscribedRecipient"):
        expect(bounce_chart).to_contain_text(reason)
    links_chart = page.locator(".box", has=page.locator("h2", has_text="Top links")).locator("svg")
    expect(links_chart).to_contain_text("Unsubscribe links")
    assert page.evaluate(CLIPPED_LABELS) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    if width == 1280:
        screenshot(page, "campaign-report")
