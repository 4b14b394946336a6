"""The whole send path in-process: snapshot → engine → post_office → django-ses → local SES."""

from __future__ import annotations

import email
from email import policy

import pytest
from post_office.models import STATUS, Email

from campaigns.delivery.engine import campaign_dispatch
from campaigns.models import Campaign, Recipient
from campaigns.services import campaign_send_now
from campaigns.snapshot import audience_snapshot
from tests.factories import campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db


def send_and_drain(campaign: Campaign, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=60) == "finished"


def test_every_recipient_reaches_ses_with_its_own_content(ses, django_capture_on_commit_callbacks):
    contact_list = list_with_contacts(5)
    campaign = campaign_to(contact_list)

    send_and_drain(campaign, django_capture_on_commit_callbacks)

    received = ses.sent()
    assert len(received) == 5
    recipients = {r.email: r for r in Recipient.objects.filter(campaign=campaign)}
    for raw in received:
        message = email.message_from_string(raw["raw_data"], policy=policy.default)
        to = message["To"]
        recipient = recipients[to]
        first_name = recipient.contact.first_name
        assert message["Subject"] == f"Hello {first_name}"
        html = message.get_body(("html",)).get_content()
        assert f"Hi {first_name}," in html
        assert recipient.ses_message_id == raw["id"]
        assert recipient.status == Recipient.Status.SENT
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENT


def test_each_message_is_a_post_office_email_marked_sent(ses, django_capture_on_commit_callbacks):
    campaign = campaign_to(list_with_contacts(3))

    send_and_drain(campaign, django_capture_on_commit_callbacks)

    outbox = Email.objects.filter(pk__in=Recipient.objects.values("outbox_email"))
    assert outbox.count() == 3
    assert set(outbox.values_list("status", flat=True)) == {STATUS.sent}
    assert all(e.template_id == Campaign.objects.get().email_template_id for e in outbox)


def test_messages_carry_tags_configuration_set_and_one_click_unsubscribe(ses, django_capture_on_commit_callbacks):
    campaign = campaign_to(list_with_contacts(1))

    send_and_drain(campaign, django_capture_on_commit_callbacks)

    (raw,) = ses.sent()
    message = email.message_from_string(raw["raw_data"], policy=policy.default)
    recipient = Recipient.objects.get()
    assert message["X-SES-MESSAGE-TAGS"] == f"campaign={campaign.pk}, recipient={recipient.pk}"
    assert message["X-SES-CONFIGURATION-SET"] == "cobalt-mail"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(message["List-Unsubscribe"]).strip().startswith("<http://127.0.0.1:8000/u/")


def test_contacts_who_left_the_campaigns_lists_after_the_snapshot_are_skipped(ses, django_capture_on_commit_callbacks):
    from audiences.models import Contact, Subscription
    from campaigns.unsubscribe import preferences_save

    rowing = list_with_contacts(3, name="Rowing")
    chess = list_with_contacts(0, name="Chess")
    stays, leaves, on_both = rowing.subscriptions.order_by("id").values_list("contact", flat=True)
    Subscription.objects.create(contact_id=on_both, contact_list=chess)
    campaign = campaign_to(rowing)
    campaign.include_lists.add(chess)
    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)
    # After the snapshot, on the preference page: one leaves every list, one keeps Chess only.
    preferences_save(contact=Contact.objects.get(pk=leaves), list_ids=set())
    preferences_save(contact=Contact.objects.get(pk=on_both), list_ids={chess.pk})

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=60) == "finished"

    statuses = dict(Recipient.objects.filter(campaign=campaign).values_list("contact", "status"))
    assert statuses == {stays: "sent", leaves: "skipped", on_both: "sent"}
    assert len(ses.sent()) == 2
