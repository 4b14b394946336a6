"""Top links: each recipient's personal unsubscribe, preferences and view-online links are one row each."""

from __future__ import annotations

import pytest

from campaigns.composer.rendering import recipient_links
from reports.selectors import top_links
from tests.sns import campaign_with_recipients, new_id
from tests.tracking.records import event
from tracking.recount import breakdown_repair

pytestmark = pytest.mark.django_db

HUMAN = {"userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36"}


def click(notify, campaign, recipient, link: str) -> None:
    record = event(
        "Click",
        address=recipient.email,
        message_id=recipient.ses_message_id,
        campaign=campaign.pk,
        recipient=recipient.pk,
        link=link,
        **HUMAN,
    )
    response = notify(record, message_id=new_id())
    assert response.status_code == 200, response.content


def test_personal_system_links_are_grouped_into_one_row_each(notify, settings):
    settings.SITE_URL = "https://club.example"
    campaign, recipients = campaign_with_recipients(4)
    for recipient in recipients:
        links = recipient_links(recipient.pk)
        click(notify, campaign, recipient, links["unsubscribe_url"])
        click(notify, campaign, recipient, links["view_online_url"])
    click(notify, campaign, recipients[0], recipient_links(recipients[0].pk)["preferences_url"])
    click(notify, campaign, recipients[1], "https://club.example/fixtures/?season=2027")
    click(notify, campaign, recipients[2], "https://club.example/fixtures/?season=2027")
    click(notify, campaign, recipients[3], "https://elsewhere.example/u/not-ours/")

    assert top_links(campaign) == [
        ("Unsubscribe links", 4),
        ("View-online links", 4),
        ("https://club.example/fixtures/?season=2027", 2),
        ("https://elsewhere.example/u/not-ours/", 1),
        ("Preferences links", 1),
    ]
    # The recount (tracking_recount) groups them by the same rule.
    assert breakdown_repair(campaign_id=campaign.pk) == {}


def test_the_report_page_shows_one_unsubscribe_row_not_one_per_recipient(notify, settings, staff_client):
    settings.SITE_URL = "https://club.example"
    campaign, recipients = campaign_with_recipients(3)
    for recipient in recipients:
        click(notify, campaign, recipient, recipient_links(recipient.pk)["unsubscribe_url"])
    html = staff_client.get(f"/reports/campaigns/{campaign.pk}/").content.decode()
    assert html.count("Unsubscribe links</text>") == 1
    assert "https://club.example/u/" not in html
