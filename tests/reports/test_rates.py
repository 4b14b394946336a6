"""Rates are recipients over recipients: none exceeds 100%, and SES's 5% compares with hard bounces."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.snapshot import recipient_domains
from reports.selectors import account_health, headline
from stats.counters import snapshot_recorded
from stats.models import CampaignStats
from tests.factories import CampaignFactory
from tests.sns import campaign_with_recipients
from tests.tracking.records import event, identity_notification

pytestmark = pytest.mark.django_db

HUMAN = {"userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36"}
RATE = re.compile(r"(\d[\d,]*\.\d)%")


def rates_on(page: bytes) -> list[float]:
    return [float(value.replace(",", "")) for value in RATE.findall(page.decode())]


def sent_campaign(**stats) -> Campaign:
    now = timezone.now()
    campaign = CampaignFactory(status=Campaign.Status.SENT, started_at=now, finished_at=now, snapshot_at=now)
    CampaignStats.objects.create(campaign=campaign, recipients=stats.get("sent", 0), **stats)
    return campaign


@pytest.fixture
def twice_notified(notify):
    """4 recipients; SES notified every bounce, delivery and complaint twice (configuration set + identity).

    Counting notifications gave a 150% bounce rate, a 200% complaint rate and a 200% click-to-open rate.
    """
    campaign, recipients = campaign_with_recipients(4)
    Campaign.objects.filter(pk=campaign.pk).update(started_at=timezone.now())
    snapshot_recorded(campaign_id=campaign.pk, recipients=4, domains=recipient_domains(campaign_id=campaign.pk))

    def both(kind, recipient, **detail):
        tagged = event(kind, address=recipient.email, campaign=campaign.pk, recipient=recipient.pk,
                       message_id=recipient.ses_message_id, **detail)  # fmt: skip
        assert notify(tagged).status_code == 200
        if kind in {"Delivery", "Bounce", "Complaint"}:
            identity = identity_notification(kind, address=recipient.email, message_id=recipient.ses_message_id,
                                             **detail)  # fmt: skip
            assert notify(identity).status_code == 200

    first, second, third, fourth = recipients
    for recipient in (first, second, third):
        both("Bounce", recipient)
    both("Delivery", fourth)
    both("Complaint", fourth)
    both("Delivery", third)  # delivered, then bounced later: still one recipient
    both("Open", fourth, **HUMAN)
    both("Click", fourth, **HUMAN)
    both("Click", third, **HUMAN)  # a click without an open (images off): it was read
    campaign.refresh_from_db()
    return campaign


def test_rates_of_a_twice_notified_campaign_count_recipients(twice_notified):
    figures = headline(twice_notified)
    rates = {rate.label: rate.percent for rate in figures["rates"]}

    assert (figures["delivered"], figures["bounced_hard"], figures["complained"]) == (2, 3, 1)
    assert rates["Bounce rate (hard)"] == "75.0%"
    assert rates["Complaint rate"] == "50.0%"
    assert rates["Click-to-open rate"] == "100.0%"


def test_no_rate_on_any_page_exceeds_100_percent(staff_client, twice_notified):
    other = sent_campaign(sent=10, delivered=9, bounced_hard=1, unique_human_opens=3, unique_human_clicks=1)
    pages = [
        "/reports/",
        f"/reports/campaigns/{twice_notified.pk}/",
        f"/reports/compare/?ids={twice_notified.pk}&ids={other.pk}",
        f"/campaigns/{twice_notified.pk}/",
    ]
    for url in pages:
        response = staff_client.get(url)
        assert response.status_code == 200, url
        rates = rates_on(response.content)
        assert all(rate <= 100.0 for rate in rates), (url, rates)
    assert rates_on(staff_client.get(f"/reports/campaigns/{twice_notified.pk}/").content)  # rates were found


def test_the_bounce_rate_beside_ses_five_percent_counts_hard_bounces_only(staff_client):
    campaign = sent_campaign(sent=100, delivered=93, bounced_hard=3, bounced_soft=4, complained=0)

    rates = {rate.label: rate for rate in headline(campaign)["rates"]}
    assert rates["Bounce rate (hard)"].percent == "3.0%"
    assert "5%" in rates["Bounce rate (hard)"].definition
    assert rates["Soft bounce rate"].percent == "4.0%"
    health = account_health()
    assert health["bounce_rate"].percent == "3.0%" and not health["bounce_warning"]
    assert health["soft_bounce_rate"].percent == "4.0%"

    dashboard = staff_client.get("/reports/").content.decode()
    assert 'data-testid="account-bounce-rate">3.0%<' in dashboard
    assert "Soft bounces" in dashboard and "4.0%" in dashboard
    report = staff_client.get(f"/reports/campaigns/{campaign.pk}/").content.decode()
    assert 'data-testid="fig-bounced">3<' in report and "4 soft" in report
    other = sent_campaign(sent=10, delivered=10)
    compare = staff_client.get(f"/reports/compare/?ids={campaign.pk}&ids={other.pk}").content.decode()
    assert "Bounced (hard)" in compare and "Bounced (soft)" in compare and "3.0%" in compare
    page = staff_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'data-testid="bounced-count">3<' in page and "4 soft" in page


def test_the_account_health_warns_at_five_percent_hard_bounces():
    sent_campaign(sent=100, delivered=95, bounced_hard=5, bounced_soft=0)

    assert account_health()["bounce_warning"]


def test_domain_rates_count_recipients(twice_notified):
    from reports.selectors import domain_table

    (row,) = domain_table(twice_notified)
    assert (row["recipients"], row["delivered"], row["bounced"]) == (4, 2, 3)
    assert (row["delivery_rate"], row["bounce_rate"]) == ("50.0%", "75.0%")
