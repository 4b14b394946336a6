"""'Opened' has one definition (reports.selectors.opened) and every page shows the same headline."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from reports.selectors import clicked, opened
from stats.models import CampaignStats
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def campaign_with(**stats) -> Campaign:
    now = timezone.now()
    campaign = CampaignFactory(status=Campaign.Status.SENT, started_at=now, finished_at=now, snapshot_at=now)
    CampaignStats.objects.create(campaign=campaign, recipients=stats.get("sent", 0), **stats)
    return campaign


def headline_on(html: str, testid: str) -> str:
    found = re.findall(rf'data-testid="{re.escape(testid)}"[^>]*>([^<]*)<', html)
    assert len(found) == 1, f"{testid}: {found}"
    return found[0].strip()


def test_opened_is_people_with_a_human_open_and_the_raw_figure_is_labelled_beside_it():
    stats = CampaignStats(unique_human_opens=198, unique_opens=237, opens=412)
    figure = opened(stats)
    assert figure.people == 198
    assert figure.caption == "198 opened · 237 incl. automatic opens"
    assert "412 opens were recorded in all" in figure.explanation
    assert clicked(CampaignStats(unique_human_clicks=3, unique_clicks=5, clicks=9)).caption == (
        "3 clicked · 5 incl. automatic clicks"
    )


def test_every_page_shows_the_same_opened_headline_for_the_same_data(staff_client):
    figures = {"sent": 1500, "delivered": 1400, "opens": 4120, "unique_opens": 1237, "unique_human_opens": 1198}
    campaign = campaign_with(**figures, clicks=90, unique_clicks=70, unique_human_clicks=61)
    other = campaign_with(sent=10, delivered=10, unique_opens=4, unique_human_opens=3, opens=6)

    pages = {
        "campaign page": (f"/campaigns/{campaign.pk}/", "opened-headline"),
        "report": (f"/reports/campaigns/{campaign.pk}/", "opened-headline"),
        "reports index": ("/reports/", f"opened-headline-{campaign.pk}"),
        "compare": (f"/reports/compare/?ids={campaign.pk}&ids={other.pk}", f"opened-headline-{campaign.pk}"),
    }
    shown = {}
    for name, (url, testid) in pages.items():
        response = staff_client.get(url)
        assert response.status_code == 200, name
        html = response.content.decode()
        shown[name] = headline_on(html, testid)
        if name != "reports index":  # the index has room for the headline and the open rate only
            assert "1,198 opened · 1,237 incl. automatic opens" in html, name
    assert set(shown.values()) == {"1,198"}, shown

    campaign_page = staff_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    report = staff_client.get(f"/reports/campaigns/{campaign.pk}/").content.decode()
    assert headline_on(campaign_page, "clicked-headline") == headline_on(report, "clicked-headline") == "61"
