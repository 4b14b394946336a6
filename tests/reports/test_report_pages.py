"""Report pages read counters and breakdown rows; figures and rates come out as defined."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from campaigns.models import Campaign
from reports.selectors import headline, refresh_interval
from stats.breakdowns import breakdown_bump, breakdown_rows
from stats.models import CampaignStats
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def sent_campaign(**stats) -> Campaign:
    now = timezone.now()
    campaign = CampaignFactory(status=Campaign.Status.SENT, started_at=now, finished_at=now, snapshot_at=now)
    CampaignStats.objects.create(campaign=campaign, recipients=stats.get("sent", 0), **stats)
    return campaign


def test_headline_rates_follow_their_definitions():
    campaign = sent_campaign(
        sent=1000,
        delivered=950,
        bounced_hard=30,
        bounced_soft=20,
        complained=1,
        unique_opens=500,
        unique_human_opens=400,
        unique_clicks=120,
        unique_human_clicks=100,
        unique_human_engaged=400,
        unsubscribed=5,
    )
    figures = headline(campaign)
    rates = {rate.label: rate.percent for rate in figures["rates"]}
    assert figures["recipients"] == 1000
    assert rates["Delivery rate"] == "95.0%"
    assert rates["Bounce rate (hard)"] == "3.0%"
    assert rates["Soft bounce rate"] == "2.0%"
    assert rates["Complaint rate"] == "0.1%"
    assert rates["Open rate (human)"] == "42.1%"
    assert rates["Open rate (all)"] == "52.6%"
    assert rates["Click-to-open rate"] == "25.0%"
    assert rates["Unsubscribe rate"] == "0.5%"


def test_rates_without_a_denominator_show_a_dash_not_an_error():
    figures = headline(sent_campaign())
    assert {rate.percent for rate in figures["rates"]} == {"–"}


def test_breakdown_upserts_add_up_and_sort_by_count():
    campaign = sent_campaign(sent=10)
    breakdown_bump(
        campaign_id=campaign.pk, items=[("link:click", "https://a.example", 2), ("link:click", "https://b", 1)]
    )
    breakdown_bump(campaign_id=campaign.pk, items=[("link:click", "https://b", 3)])
    assert breakdown_rows(campaign_id=campaign.pk, kind="link:click") == [("https://b", 4), ("https://a.example", 2)]


def test_live_refresh_slows_down_as_activity_falls_and_stops_after_48_quiet_hours():
    campaign = sent_campaign(sent=10)
    with time_machine.travel(timezone.now() + timedelta(minutes=1)):
        assert refresh_interval(campaign, {"last_event_at": timezone.now()}) == 5
    with time_machine.travel(timezone.now() + timedelta(minutes=30)):
        assert refresh_interval(campaign, {"last_event_at": campaign.finished_at}) == 15
    with time_machine.travel(timezone.now() + timedelta(hours=3)):
        assert refresh_interval(campaign, {"last_event_at": campaign.finished_at}) == 60
    with time_machine.travel(timezone.now() + timedelta(hours=49)):
        assert refresh_interval(campaign, {"last_event_at": campaign.finished_at}) is None
    campaign.status = Campaign.Status.SENDING
    assert refresh_interval(campaign, {}) == 3


def test_the_report_page_shows_figures_and_the_live_partial_stops_polling_when_final(staff_client):
    campaign = sent_campaign(sent=20, delivered=18, unique_human_opens=9)
    page = staff_client.get(f"/reports/campaigns/{campaign.pk}/")
    assert page.status_code == 200
    assert b'data-testid="fig-delivered">18<' in page.content
    assert b"Delivery funnel" in page.content
    with time_machine.travel(timezone.now() + timedelta(days=3)):
        live = staff_client.get(f"/reports/campaigns/{campaign.pk}/live/", headers={"HX-Request": "true"})
    assert live.status_code == 286
    assert b"Final figures" in live.content


def test_the_dashboard_lists_sent_campaigns_and_compares_two(staff_client):
    first, second = sent_campaign(sent=10, delivered=10), sent_campaign(sent=4, delivered=2)
    dashboard = staff_client.get("/reports/")
    assert first.name.encode() in dashboard.content and b"Account health" in dashboard.content
    compare = staff_client.get(f"/reports/compare/?ids={first.pk}&ids={second.pk}")
    assert compare.status_code == 200
    assert b"100.0%" in compare.content and b"50.0%" in compare.content


def test_comparing_fewer_than_two_campaigns_explains_what_to_do(staff_client):
    response = staff_client.get("/reports/compare/?ids=1", follow=True)
    assert b"Tick at least two campaigns" in response.content
