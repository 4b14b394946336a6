"""Counters count recipients, not notifications: SES may send two for one event of one recipient.

An identity's own notification topic and a configuration set's event destination both fire for
the same bounce, complaint or delivery: two SNS messages (two MessageIds, both stored), one
recipient. Delivered, bounced (hard, soft), complained, rejected and unsubscribed move once per
recipient, whichever notification comes first, in one batch, two batches or two processes.
"""

from __future__ import annotations

import io
import threading

import pytest
from django.core.management import call_command
from django.db import connection

from audiences.models import AddressHealth, Suppression
from stats.breakdowns import breakdown_rows
from stats.models import CampaignStats, RecipientActivity
from tests.sns import campaign_with_recipients, new_id
from tests.tracking.records import event, identity_notification
from tracking.models import Event
from tracking.parsing import event_parse
from tracking.recount import breakdown_repair, stats_repair
from tracking.storing import event_record, events_store

pytestmark = pytest.mark.django_db

# kind, SES detail overrides, the counter that must move once
TWICE_NOTIFIED = [
    ("Delivery", {}, "delivered"),
    ("Bounce", {}, "bounced_hard"),
    ("Bounce", {"bounceType": "Transient", "bounceSubType": "MailboxFull"}, "bounced_soft"),
    ("Complaint", {}, "complained"),
    ("Reject", {}, "rejected"),
    ("Subscription", {}, "unsubscribed"),
]
RECIPIENT_COUNTERS = ("delivered", "bounced_hard", "bounced_soft", "complained", "rejected", "unsubscribed")


def both_notifications(recipient, kind: str, **detail) -> tuple[dict, dict]:
    """The configuration set's record (tagged) and the identity topic's (no tags) for one event."""
    tagged = event(kind, address=recipient.email, campaign=recipient.campaign_id, recipient=recipient.pk,
                   message_id=recipient.ses_message_id, **detail)  # fmt: skip
    identity = identity_notification(kind, address=recipient.email, message_id=recipient.ses_message_id, **detail)
    return tagged, identity


def counters(campaign) -> dict[str, int]:
    return dict(CampaignStats.objects.filter(campaign=campaign).values(*RECIPIENT_COUNTERS).get())


@pytest.mark.parametrize(("kind", "detail", "counter"), TWICE_NOTIFIED)
def test_it_counts_a_recipient_once_when_ses_notifies_twice_through_the_webhook(notify, kind, detail, counter):
    campaign, (recipient, _other) = campaign_with_recipients(2)

    for record in both_notifications(recipient, kind, **detail):
        assert notify(record).status_code == 200

    assert Event.objects.filter(recipient=recipient).count() == 2  # both SNS messages are kept
    assert counters(campaign)[counter] == 1
    assert stats_repair(campaign_id=campaign.pk) == {}


@pytest.mark.parametrize(("kind", "detail", "counter"), TWICE_NOTIFIED)
def test_it_counts_a_recipient_once_when_both_notifications_share_a_batch(kind, detail, counter):
    campaign, (recipient,) = campaign_with_recipients(1)
    items = [(new_id(), record, event_parse(record=record)) for record in both_notifications(recipient, kind, **detail)]

    stored = events_store(items=items)

    assert all(stored)
    assert counters(campaign)[counter] == 1


def test_every_recipient_counter_moves_once_for_a_recipient_who_did_everything_twice():
    campaign, recipients = campaign_with_recipients(3)
    for recipient in recipients:
        for kind, detail, _ in TWICE_NOTIFIED:
            for record in both_notifications(recipient, kind, **detail):
                event_record(sns_message_id=new_id(), record=record)

    assert counters(campaign) == dict.fromkeys(RECIPIENT_COUNTERS, 3)
    kinds = RecipientActivity.Kind
    for kind in (kinds.DELIVERED, kinds.BOUNCED_HARD, kinds.BOUNCED_SOFT, kinds.COMPLAINED, kinds.REJECTED,
                 kinds.UNSUBSCRIBED):  # fmt: skip
        assert RecipientActivity.objects.filter(recipient__campaign=campaign, kind=kind).count() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_holding_the_same_recipients_events_count_each_recipient_once():
    """Two webhook processes commit batches that overlap; the marker's unique row decides who counts."""
    campaign, recipients = campaign_with_recipients(20)
    batches: list[list[tuple]] = [[], []]
    for recipient in recipients:
        for kind, detail, _ in TWICE_NOTIFIED:
            tagged, identity = both_notifications(recipient, kind, **detail)
            batches[0].append((new_id(), tagged, event_parse(record=tagged)))
            batches[1].append((new_id(), identity, event_parse(record=identity)))
    batches[1].reverse()  # the other process sees the notifications in another order
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def store(items: list[tuple]) -> None:
        try:
            start.wait()
            for n in range(0, len(items), 40):
                events_store(items=items[n : n + 40])
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=store, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert Event.objects.filter(campaign=campaign).count() == 2 * len(recipients) * len(TWICE_NOTIFIED)
    assert counters(campaign) == dict.fromkeys(RECIPIENT_COUNTERS, len(recipients))
    assert stats_repair(campaign_id=campaign.pk) == {}
    assert breakdown_repair(campaign_id=campaign.pk) == {}


def test_breakdowns_count_recipients_for_domains_and_bounce_reasons():
    campaign, (delivered, bounced, soft) = campaign_with_recipients(3)
    for record in both_notifications(delivered, "Delivery"):
        event_record(sns_message_id=new_id(), record=record)
    for record in both_notifications(bounced, "Bounce"):
        event_record(sns_message_id=new_id(), record=record)
    for record in both_notifications(soft, "Bounce", bounceType="Transient", bounceSubType="MailboxFull"):
        event_record(sns_message_id=new_id(), record=record)

    domain = delivered.email.rpartition("@")[2]
    assert breakdown_rows(campaign_id=campaign.pk, kind="domain:delivered") == [(domain, 1)]
    assert breakdown_rows(campaign_id=campaign.pk, kind="domain:bounced") == [(domain, 2)]
    assert sorted(breakdown_rows(campaign_id=campaign.pk, kind="bounce:reason")) == [
        ("Permanent/General", 1),
        ("Transient/MailboxFull", 1),
    ]
    assert breakdown_repair(campaign_id=campaign.pk) == {}


def test_the_recount_counts_recipients_and_fix_restores_them():
    campaign, recipients = campaign_with_recipients(2)
    for recipient in recipients:
        for kind, detail, _ in TWICE_NOTIFIED:
            for record in both_notifications(recipient, kind, **detail):
                event_record(sns_message_id=new_id(), record=record)
    CampaignStats.objects.filter(campaign=campaign).update(**dict.fromkeys(RECIPIENT_COUNTERS, 0))
    from stats.models import CampaignBreakdown

    CampaignBreakdown.objects.filter(campaign=campaign).exclude(kind="domain:recipients").delete()
    out = io.StringIO()

    call_command("tracking_recount", "--fix", stdout=out)

    assert "fixed" in out.getvalue()
    assert counters(campaign) == dict.fromkeys(RECIPIENT_COUNTERS, 2)
    assert sorted(breakdown_rows(campaign_id=campaign.pk, kind="bounce:reason")) == [
        ("Permanent/General", 2),
        ("Transient/MailboxFull", 2),
    ]
    call_command("tracking_recount", stdout=out)  # raises if anything still differs


def test_a_soft_bounce_notified_twice_is_one_step_of_the_soft_bounce_streak(settings):
    settings.SOFT_BOUNCE_LIMIT = 2
    _campaign, (recipient,) = campaign_with_recipients(1)

    for record in both_notifications(recipient, "Bounce", bounceType="Transient", bounceSubType="MailboxFull"):
        event_record(sns_message_id=new_id(), record=record)

    assert AddressHealth.objects.get(email=recipient.email).consecutive_soft_bounces == 1
    assert not Suppression.objects.filter(email=recipient.email).exists()


def test_an_ses_subscription_unsubscribe_is_recorded_like_every_other_unsubscribe(staff_client):
    campaign, (leaver, _stayer) = campaign_with_recipients(2)

    event_record(sns_message_id=new_id(), record=both_notifications(leaver, "Subscription")[0])

    assert RecipientActivity.objects.filter(recipient=leaver, kind=RecipientActivity.Kind.UNSUBSCRIBED).exists()
    export = staff_client.get(f"/reports/campaigns/{campaign.pk}/recipients/export/?outcome=unsubscribed")
    lines = b"".join(export.streaming_content).decode().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == [leaver.email]
    CampaignStats.objects.filter(campaign=campaign).update(unsubscribed=0)
    call_command("tracking_recount", "--fix", stdout=io.StringIO())
    assert counters(campaign)["unsubscribed"] == 1


def test_a_recipient_who_unsubscribes_again_after_resubscribing_counts_once(client):
    from audiences.models import Subscription
    from campaigns.tokens import recipient_token
    from campaigns.unsubscribe import preferences_save

    campaign, (recipient,) = campaign_with_recipients(1)
    lists = set(Subscription.objects.filter(contact_id=recipient.contact_id).values_list("contact_list_id", flat=True))
    assert client.post(f"/u/{recipient_token(recipient.pk)}/").status_code == 200
    preferences_save(contact=recipient.contact, list_ids=lists)  # they changed their mind

    event_record(sns_message_id=new_id(), record=both_notifications(recipient, "Subscription")[0])
    preferences_save(contact=recipient.contact, list_ids=lists)
    assert client.post(f"/u/{recipient_token(recipient.pk)}/").status_code == 200

    assert counters(campaign)["unsubscribed"] == 1
    assert stats_repair(campaign_id=campaign.pk) == {}
