"""Reputation per organisation through the real webhook: a batch that counts hard bounces or
complaints judges the organisation once it is committed, and a hold pauses its sending campaigns."""

from __future__ import annotations

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from organisations.models import Organisation
from stats.counters import usage_add
from stats.models import OrganisationDay
from tests.factories import CampaignFactory
from tests.sns import campaign_with_recipients
from tests.tracking.records import SENT_AT, event

pytestmark = pytest.mark.django_db


def now_offset() -> float:
    """``event(after=…)`` for an event that happens now: it counts on today's usage row."""
    return (timezone.now() - SENT_AT).total_seconds() - 5


def bounce(notify, recipient):
    record = event(
        "Bounce", address=recipient.email, campaign=recipient.campaign_id, recipient=recipient.pk, after=now_offset()
    )
    return notify(record)


@pytest.fixture
def club(organisation):
    organisation.name, organisation.slug = "Riverside Rowing", "riverside"
    organisation.save()
    return organisation


def test_a_hard_bounce_through_the_webhook_holds_the_organisation_and_pauses_its_campaigns_only(
    notify, club, django_capture_on_commit_callbacks
):
    bounced_campaign, recipients = campaign_with_recipients(3)
    newsletter = CampaignFactory(organisation=club, status=Campaign.Status.SENDING, started_at=timezone.now())
    chess = Organisation.objects.create(name="Hilltop Chess", slug="hilltop")
    chess_news = CampaignFactory(organisation=chess, status=Campaign.Status.SENDING, started_at=timezone.now())
    # Earlier today: 30 hard bounces in 300 messages (10%), below the campaign guard's notice.
    usage_add(organisation_id=club.pk, sent=300, delivered=270, bounced_hard=29)
    usage_add(organisation_id=chess.pk, sent=300, delivered=200, bounced_hard=100)  # judged only on its own events

    with django_capture_on_commit_callbacks(execute=True):
        assert bounce(notify, recipients[0]).status_code == 200

    today = OrganisationDay.objects.get(organisation=club, day=timezone.localdate())
    assert today.bounced_hard == 30  # the batch counted it, then the organisation was judged
    club.refresh_from_db()
    assert club.held_at is not None
    assert club.held_reason.startswith("30 hard bounces from 300 messages with an outcome (10.0%) in the last 7 days")
    for campaign in (bounced_campaign, newsletter):
        campaign.refresh_from_db()
        assert campaign.status == Campaign.Status.PAUSED
        assert "Sending is on hold for Riverside Rowing" in campaign.status_reason
    chess_news.refresh_from_db()
    chess.refresh_from_db()
    assert chess_news.status == Campaign.Status.SENDING and chess.held_at is None


def test_a_bounce_batch_below_the_minimum_sample_holds_nothing(notify, club, django_capture_on_commit_callbacks):
    campaign, recipients = campaign_with_recipients(10)
    usage_add(organisation_id=club.pk, sent=10, delivered=7, bounced_hard=2)

    with django_capture_on_commit_callbacks(execute=True) as judged:
        assert bounce(notify, recipients[0]).status_code == 200  # 3 hard bounces of 10 messages

    assert judged  # the organisation was judged once the batch was committed
    club.refresh_from_db()
    campaign.refresh_from_db()
    assert club.held_at is None
    assert campaign.status == Campaign.Status.SENDING
