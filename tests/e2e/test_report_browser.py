"""In Chromium, a campaign's report updates by itself while the SES simulator delivers events."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from audiences.models import Subscription
from campaigns.delivery.engine import campaign_dispatch
from campaigns.services import campaign_send_now
from campaigns.snapshot import audience_snapshot
from tests.conftest import screenshot
from tests.factories import ContactFactory, ContactListFactory, campaign_to
from tests.sns import TOPIC_ARN
from tracking.simulator import Rates, Simulator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

READERS = [f"reader{n}@example.org" for n in range(6)]
ADDRESSES = [*READERS, "bounce@simulator.amazonses.com", "complaint@simulator.amazonses.com"]


def test_the_report_page_updates_itself_as_events_arrive(
    logged_in_page, live_server, ses, signing, cert_server, tmp_path
):
    contact_list = ContactListFactory()
    for address in ADDRESSES:
        Subscription.objects.create(contact=ContactFactory(email=address), contact_list=contact_list)
    campaign = campaign_to(contact_list, name="Live report")
    campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=60) == "finished"

    page = logged_in_page
    page.goto(f"{live_server.url}/reports/campaigns/{campaign.pk}/")
    expect(page.get_by_test_id("fig-sent")).to_have_text("8")
    expect(page.get_by_test_id("fig-delivered")).to_have_text("0")

    simulator = Simulator(
        webhook_url=f"{live_server.url}/tracking/ses/",
        ses_endpoint=ses.url,
        identity=signing,
        cert_url=cert_server.cert_url,
        topic_arn=TOPIC_ARN,
        rates=Rates(
            bounce_rate=0, soft_bounce_rate=0, complaint_rate=0, open_rate=1, machine_open_share=0, click_rate=0.5
        ),
    )
    simulator.run_once()

    # No reload: the htmx partial polls and swaps the new figures in.
    expect(page.get_by_test_id("fig-delivered")).to_have_text("7", timeout=20_000)
    expect(page.get_by_test_id("fig-bounced")).to_have_text("1")
    expect(page.get_by_test_id("fig-complained")).to_have_text("1")
    expect(page.get_by_test_id("opened-headline")).to_have_text("6")
    # Drawn per minute: a line once the opens span two minutes, a dot per point before that.
    assert page.locator("svg.chart polyline, svg.chart circle").count() >= 1
    screenshot(page, "report-live")

    page.click("text=Recipients")
    # The filter is an htmx form: choose only once the page has loaded (htmx has bound it then).
    page.wait_for_url(re.compile(r"/recipients/$"))
    page.wait_for_load_state("load")
    page.select_option("select[name=outcome]", "bounced")
    expect(page.locator("#recipients tbody tr")).to_have_count(1)
    expect(page.locator("#recipients tbody")).to_contain_text("bounce@simulator.amazonses.com")
    page.click("#recipients tbody a")
    expect(page.locator("#recipients tr.timeline-row")).to_contain_text("Bounce")
    screenshot(page, "report-recipients")
