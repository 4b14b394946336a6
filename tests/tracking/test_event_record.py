"""What recorded events do: counters, suppression, unsubscribes, machine opens, the reputation guard."""

from __future__ import annotations

import pytest

from audiences.models import Contact, Subscription, Suppression
from campaigns.models import Campaign
from stats.models import CampaignStats
from tests.sns import campaign_with_recipients, new_id
from tests.tracking.records import event, identity_notification
from tracking.models import Event
from tracking.parsing import is_machine
from tracking.storing import event_record, unmatched_count

pytestmark = pytest.mark.django_db


def record(kind: str, recipient, **detail) -> Event | None:
    tagged = event(kind, address=recipient.email, campaign=recipient.campaign_id, recipient=recipient.pk,
                   message_id=recipient.ses_message_id, **detail)  # fmt: skip
    return event_record(sns_message_id=new_id(), record=tagged)


def stats(campaign) -> CampaignStats:
    return CampaignStats.objects.get(campaign=campaign)


def test_a_permanent_bounce_suppresses_the_address_and_marks_the_contact_bounced():
    campaign, (recipient,) = campaign_with_recipients(1)

    record("Bounce", recipient)

    assert Suppression.objects.get(email=recipient.email).reason == Suppression.Reason.HARD_BOUNCE
    assert Contact.objects.get(pk=recipient.contact_id).status == Contact.Status.BOUNCED
    assert stats(campaign).bounced_hard == 1


def test_three_consecutive_soft_bounces_across_campaigns_suppress_the_address(settings):
    settings.SOFT_BOUNCE_LIMIT = 3
    address = "full.mailbox@example.org"
    first, (r1,) = campaign_with_recipients(1, emails=[address])
    recipients = [r1] + [campaign_with_recipients(0, emails=[f"other{n}@example.org"])[1][0] for n in range(2)]
    for recipient in recipients:
        recipient.email = address  # the same mailbox reached by three campaigns

    record("Bounce", recipients[0], bounceType="Transient", bounceSubType="MailboxFull")
    record("Bounce", recipients[1], bounceType="Transient", bounceSubType="MailboxFull")
    assert not Suppression.objects.filter(email=address).exists()
    record("Bounce", recipients[2], bounceType="Transient", bounceSubType="MailboxFull")

    assert Suppression.objects.get(email=address).reason == Suppression.Reason.SOFT_BOUNCES
    assert Contact.objects.get(email=address).status == Contact.Status.ACTIVE
    assert stats(first).bounced_soft == 1


def test_a_delivery_resets_the_soft_bounce_streak(settings):
    settings.SOFT_BOUNCE_LIMIT = 3
    _campaign, (recipient,) = campaign_with_recipients(1)

    record("Bounce", recipient, bounceType="Transient")
    record("Bounce", recipient, bounceType="Transient")
    record("Delivery", recipient)
    record("Bounce", recipient, bounceType="Transient")

    assert not Suppression.objects.exists()


def test_a_complaint_suppresses_and_unsubscribes_from_every_list():
    campaign, (recipient,) = campaign_with_recipients(1)
    from tests.factories import ContactListFactory

    Subscription.objects.create(contact_id=recipient.contact_id, contact_list=ContactListFactory())

    record("Complaint", recipient)

    assert Suppression.objects.get(email=recipient.email).reason == Suppression.Reason.COMPLAINT
    assert Contact.objects.get(pk=recipient.contact_id).status == Contact.Status.COMPLAINED
    statuses = set(Subscription.objects.filter(contact_id=recipient.contact_id).values_list("status", flat=True))
    assert statuses == {Subscription.Status.UNSUBSCRIBED}
    assert stats(campaign).complained == 1


def test_an_ses_subscription_event_unsubscribes_the_contact():
    campaign, (recipient,) = campaign_with_recipients(1)

    record("Subscription", recipient)

    assert Contact.objects.get(pk=recipient.contact_id).status == Contact.Status.UNSUBSCRIBED
    assert not Subscription.objects.filter(contact_id=recipient.contact_id, status="subscribed").exists()
    assert Suppression.objects.get(email=recipient.email).reason == Suppression.Reason.UNSUBSCRIBED
    assert stats(campaign).unsubscribed == 1


def test_a_topic_opt_out_unsubscribes_only_the_list_of_that_name():
    _campaign, (recipient,) = campaign_with_recipients(1)
    from tests.factories import ContactListFactory

    news = ContactListFactory(name="Club news")
    Subscription.objects.create(contact_id=recipient.contact_id, contact_list=news)
    preferences = {"unsubscribeAll": False,
                   "topicSubscriptionStatus": [{"topicName": "Club news", "subscriptionStatus": "OptOut"}]}  # fmt: skip

    record("Subscription", recipient, newTopicPreferences=preferences)

    subscriptions = dict(
        Subscription.objects.filter(contact_id=recipient.contact_id).values_list("contact_list", "status")
    )
    assert subscriptions[news.pk] == Subscription.Status.UNSUBSCRIBED
    assert list(subscriptions.values()).count(Subscription.Status.SUBSCRIBED) == 1
    assert Contact.objects.get(pk=recipient.contact_id).status == Contact.Status.ACTIVE


def test_unmatched_events_are_kept_and_counted():
    stored = event_record(sns_message_id=new_id(), record=identity_notification("Bounce", message_id="unknown-id"))

    assert stored.campaign_id is None and stored.recipient_id is None
    assert unmatched_count() == 1
    assert Suppression.objects.filter(email="recipient@example.com").exists()


def test_tags_naming_another_campaigns_recipient_fall_back_to_the_message_id():
    campaign, (recipient,) = campaign_with_recipients(1)
    other, _ = campaign_with_recipients(1)
    tagged = event("Delivery", address=recipient.email, campaign=other.pk, recipient=recipient.pk,
                   message_id=recipient.ses_message_id)  # fmt: skip

    stored = event_record(sns_message_id=new_id(), record=tagged)

    assert (stored.campaign_id, stored.recipient_id) == (campaign.pk, recipient.pk)


def test_unique_opens_and_clicks_count_the_first_per_recipient():
    campaign, (reader, other) = campaign_with_recipients(2)

    record("Open", reader, timestamp="2026-11-27T09:10:00.000Z")
    record("Open", reader, timestamp="2026-11-27T09:20:00.000Z")
    record("Open", other, timestamp="2026-11-27T09:10:00.000Z")
    record("Click", reader, timestamp="2026-11-27T09:21:00.000Z")
    record("Click", reader, timestamp="2026-11-27T09:22:00.000Z")

    counters = stats(campaign)
    assert (counters.opens, counters.unique_opens, counters.unique_human_opens) == (3, 2, 2)
    assert (counters.clicks, counters.unique_clicks, counters.unique_human_clicks) == (2, 1, 1)


def test_proxy_prefetches_count_as_opens_but_not_human_opens():
    campaign, (recipient,) = campaign_with_recipients(1)
    proxy = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"

    stored = record("Open", recipient, userAgent=proxy)

    assert stored.is_machine
    counters = stats(campaign)
    assert (counters.opens, counters.human_opens, counters.unique_opens, counters.unique_human_opens) == (1, 0, 1, 0)


@pytest.mark.parametrize(
    ("kind", "agent", "ip", "seconds", "machine"),
    [
        ("open", "Mozilla/5.0", "203.0.113.9", 900, True),  # Apple Mail Privacy Protection
        ("open", "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15", "17.58.1.1", 900, True),  # Apple network
        ("open", "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15", "203.0.113.9", 2, True),  # prefetch at delivery
        ("open", "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15", "203.0.113.9", 900, False),
        ("click", "Mozilla/5.0 (Windows NT 10.0) Chrome/126.0", "203.0.113.9", 4, True),  # link scanner
        ("click", "Barracuda Sentinel (EE)", "203.0.113.9", 900, True),
        ("click", "Mozilla/5.0 (Windows NT 10.0) Chrome/126.0", "203.0.113.9", 900, False),
        ("click", "", "203.0.113.9", 900, True),
    ],
)
def test_machine_rules(kind, agent, ip, seconds, machine):
    from datetime import UTC, datetime, timedelta

    sent = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    moment = sent + timedelta(seconds=seconds)

    assert is_machine(kind=kind, user_agent=agent, ip_address=ip, occurred_at=moment, sent_at=sent) is machine


# The guard's rule, its sequences and its webhook path: tests/tracking/test_reputation_guard.py.


def test_the_reputation_guard_waits_for_enough_deliveries(settings):
    settings.GUARD_MIN_DELIVERIES = 200
    campaign, recipients = campaign_with_recipients(5)
    for recipient in recipients:
        record("Bounce", recipient)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING
    assert stats(campaign).bounced_hard == 5
