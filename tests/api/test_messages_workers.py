"""A single message sent through the API while real qcluster workers are all busy with a large
campaign: the engine's express lane hands it to SES within seconds, not after the campaign."""

from __future__ import annotations

import time

import pytest

from audiences.models import Contact, ContactList, Subscription
from campaigns.models import Campaign, CampaignTemplate, Recipient
from campaigns.services import campaign_send_now
from organisations.models import Role
from tests.conftest import wait_until
from tests.factories import CampaignFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

BULK_SIZE = 3000
SEND_RATE = 100  # messages a second: the bulk campaign takes about 30 s


def bulk_campaign(size: int) -> Campaign:
    """A campaign to ``size`` contacts, written in a few statements (factories take too long here)."""
    contact_list = ContactList.objects.create(name="All members")
    Contact.objects.bulk_create(Contact(email=f"member{n}@example.org", first_name=f"Member{n}") for n in range(size))
    Subscription.objects.bulk_create(
        Subscription(contact=contact, contact_list=contact_list) for contact in Contact.objects.all()
    )
    campaign = CampaignFactory(name="Season opener")
    campaign.include_lists.add(contact_list)
    return campaign


def sent_count(campaign_id: int) -> int:
    return Recipient.objects.filter(campaign_id=campaign_id, status=Recipient.Status.SENT).count()


def test_a_message_goes_out_within_seconds_while_every_worker_sends_a_large_campaign(workers, ses, club, key_for):
    template = CampaignTemplate.objects.create(
        organisation=club, name="Regatta entry", subject="Your entry, {{ first_name }}", html_body="<p>Hi</p>"
    )
    bulk = bulk_campaign(BULK_SIZE)
    sender = key_for(club, Role.SENDER)[1]
    # The first API call of a process loads the API (a second or more): not the time being measured.
    assert [row["name"] for row in sender.get("/api/v1/templates").json()] == ["Regatta entry"]
    # One cluster of two workers, each running one of the campaign's two dispatchers for the whole
    # test (SEND_TASK_SECONDS beyond it): no worker comes free to run the message's own task.
    workers.start(1, Q_WORKERS="2", SEND_DISPATCHERS="2", SEND_RATE=str(SEND_RATE), SEND_TASK_SECONDS="90")
    campaign_send_now(campaign_id=bulk.pk)
    wait_until(lambda: sent_count(bulk.pk) >= 300, timeout=30, message="the campaign to send 300")

    posted_at = time.monotonic()
    response = sender.post(
        "/api/v1/messages",
        {"template": template.pk, "to": "ann@example.org", "context": {"first_name": "Ann"}},
        HTTP_IDEMPOTENCY_KEY="entry-1",
    )
    assert response.status_code == 202, response.content
    message_id = response.json()["id"]
    wait_until(
        lambda: Recipient.objects.filter(campaign_id=message_id, status=Recipient.Status.SENT).exists(),
        timeout=5,
        interval=0.1,
        message="the message to be sent",
    )

    waited = time.monotonic() - posted_at
    bulk_sent = sent_count(bulk.pk)
    assert Campaign.objects.get(pk=bulk.pk).status == Campaign.Status.SENDING
    assert bulk_sent < BULK_SIZE, "the campaign finished first: the workers were not busy"
    assert waited < 5, f"the message was sent {waited:.1f} s after the POST"
    message = Recipient.objects.get(campaign_id=message_id)
    assert message.ses_message_id
    wait_until(
        lambda: Campaign.objects.filter(pk=message_id, status=Campaign.Status.SENT).exists(),
        timeout=5,
        message="the message's campaign to be marked sent",
    )
    received = [raw for raw in ses.sent() if raw["id"] == message.ses_message_id]
    assert len(received) == 1 and "ann@example.org" in received[0]["destinations"]
