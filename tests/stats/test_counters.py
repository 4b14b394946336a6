"""stats.counters: the one writer of CampaignStats and RecipientActivity."""

from __future__ import annotations

import pytest
from django.utils import timezone

from audiences.models import Contact, Subscription
from campaigns.models import Campaign
from campaigns.snapshot import audience_snapshot
from stats.breakdowns import breakdown_rows
from stats.counters import markers_claim, outcomes_add, snapshot_recorded, unsubscribe_recorded
from stats.models import CampaignBreakdown, CampaignStats, RecipientActivity
from tests.factories import ContactFactory, campaign_to, list_with_contacts
from tests.sns import campaign_with_recipients

pytestmark = pytest.mark.django_db


def test_the_snapshot_records_the_recipient_total_on_the_counter_row_and_the_domains_beside_it():
    members = list_with_contacts(3)  # person…@example.org
    for email in ("ada@Elsewhere.net", "bob@elsewhere.net", "gone@example.org"):
        status = Contact.Status.UNSUBSCRIBED if email.startswith("gone") else Contact.Status.ACTIVE
        Subscription.objects.create(contact=ContactFactory(email=email, status=status), contact_list=members)
    campaign = campaign_to(members)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING, started_at=timezone.now())

    assert audience_snapshot(campaign_id=campaign.pk) == 5

    assert CampaignStats.objects.get(campaign=campaign).recipients == 5
    assert dict(breakdown_rows(campaign_id=campaign.pk, kind="domain:recipients")) == {
        "example.org": 3,
        "elsewhere.net": 2,
    }
    assert not CampaignBreakdown.objects.filter(campaign=campaign, kind="meta").exists()


def test_recording_the_snapshot_again_keeps_the_counters_it_found():
    campaign, _ = campaign_with_recipients(2)  # its counter row already says sent=2
    snapshot_recorded(campaign_id=campaign.pk, recipients=2, domains={"example.org": 2})

    stats = CampaignStats.objects.get(campaign=campaign)
    assert (stats.recipients, stats.sent) == (2, 2)


def test_outcomes_add_moves_only_the_outcomes_it_is_given():
    campaign, _ = campaign_with_recipients(4)
    outcomes_add(campaign_id=campaign.pk, failed=1, skipped=2)
    outcomes_add(campaign_id=campaign.pk)  # nothing to add: no statement

    stats = CampaignStats.objects.get(campaign=campaign)
    assert (stats.sent, stats.failed, stats.skipped) == (4, 1, 2)


def test_a_marker_is_claimed_once_and_an_unsubscribe_counted_once():
    campaign, (first, second) = campaign_with_recipients(2)
    now = timezone.now()
    kind = RecipientActivity.Kind.DELIVERED

    assert markers_claim(rows={(first.pk, kind): now, (second.pk, kind): now}) == {(first.pk, kind), (second.pk, kind)}
    assert markers_claim(rows={(first.pk, kind): now}) == set()

    assert unsubscribe_recorded(recipient_id=first.pk, campaign_id=campaign.pk, occurred_at=now) is True
    assert unsubscribe_recorded(recipient_id=first.pk, campaign_id=campaign.pk, occurred_at=now) is False
    assert CampaignStats.objects.get(campaign=campaign).unsubscribed == 1
