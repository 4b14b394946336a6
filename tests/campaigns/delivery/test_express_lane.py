"""The express lane: single messages (campaigns of one recipient) go out from inside any running
dispatcher, ahead of its own work; and a message SES paused tries again by itself.

In-process, against the local SES (moto) of ``tests/conftest.py``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from audiences.models import Suppression
from campaigns import tasks
from campaigns.delivery import engine
from campaigns.delivery.claims import claim
from campaigns.delivery.engine import campaign_dispatch, express_due
from campaigns.models import Campaign, CampaignTemplate, Recipient
from campaigns.services import message_send
from campaigns.snapshot import audience_snapshot
from tests.factories import campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db


@pytest.fixture
def template(organisation):
    return CampaignTemplate.objects.create(
        organisation=organisation,
        name="Entry confirmed",
        subject="Entry {{ attributes.entry }}",
        html_body="<p>Hello {{ first_name }}, your entry {{ attributes.entry }} is confirmed.</p>",
    )


def a_message(template, email: str = "ann@example.org") -> Campaign:
    with transaction.atomic():
        return message_send(
            template=template,
            email=email,
            first_name="Ann",
            attributes={"entry": "A-17"},
            from_email="news@cobalt.example",
        )


def a_bulk_campaign(size: int) -> Campaign:
    campaign = campaign_to(list_with_contacts(size))
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING, started_at=timezone.now())
    audience_snapshot(campaign_id=campaign.pk)
    return campaign


def test_a_bulk_dispatcher_sends_a_waiting_message_before_its_own_work(ses, template, settings):
    settings.SEND_RATE = 50  # the bulk's 100 recipients take about two seconds
    message = a_message(template)
    bulk = a_bulk_campaign(100)

    assert campaign_dispatch(campaign_id=bulk.pk, seconds=30) == "finished"

    sent = Recipient.objects.get(campaign=message)
    assert sent.status == Recipient.Status.SENT
    assert Campaign.objects.get(pk=message.pk).status == Campaign.Status.SENT
    bulk_times = sorted(Recipient.objects.filter(campaign=bulk).values_list("sent_at", flat=True))
    assert sent.sent_at <= bulk_times[10]  # ahead of the bulk work, not after it
    assert sum("ann@example.org" in raw["raw_data"] for raw in ses.sent()) == 1


def test_only_messages_due_now_are_waiting(template):
    due = a_message(template, "due@example.org")
    later = a_message(template, "later@example.org")
    Recipient.objects.filter(campaign=later).update(not_before=timezone.now() + timedelta(minutes=1))
    a_bulk_campaign(3)

    assert express_due() == [due.pk]
    assert express_due(exclude=due.pk) == []


def test_the_express_lane_never_waits_for_a_message_another_dispatcher_holds(ses, template):
    message = a_message(template)
    held = claim(campaign_id=message.pk, limit=1)
    assert held

    started = timezone.now()
    dispatcher = engine._dispatcher_for(message.pk, deadline=engine.time.monotonic() + 30, express=True)
    assert dispatcher.run() == "idle"

    assert (timezone.now() - started).total_seconds() < 3
    assert Recipient.objects.get(campaign=message).status == Recipient.Status.SENDING  # still the other's


def test_a_message_suppressed_after_it_was_queued_is_skipped_at_dispatch(ses, template):
    message = a_message(template)
    Suppression.objects.create(email="ann@example.org", reason=Suppression.Reason.HARD_BOUNCE)

    assert campaign_dispatch(campaign_id=message.pk, seconds=10) == "finished"

    assert Recipient.objects.get(campaign=message).status == Recipient.Status.SKIPPED
    assert not any("ann@example.org" in raw["raw_data"] for raw in ses.sent())


def test_a_message_ses_paused_is_resumed_by_the_engine_tick(template, django_capture_on_commit_callbacks):
    message = a_message(template)
    Campaign.objects.filter(pk=message.pk).update(
        status=Campaign.Status.PAUSED, status_reason="SES refused to send: AccountSendingPausedException"
    )
    campaign = a_bulk_campaign(2)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = tasks.engine_tick()

    assert result["messages_resumed"] == 1
    assert Campaign.objects.get(pk=message.pk).status == Campaign.Status.SENDING
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.PAUSED  # campaigns wait for staff
    assert callbacks  # its dispatch task is enqueued once the resume commits
