"""The engine in real ``manage.py qcluster`` processes: shared work, crashes, pause/resume/cancel."""

from __future__ import annotations

import collections
import time

import pytest
from django.db.models import Count

from campaigns.models import Campaign, Recipient
from campaigns.services import campaign_cancel, campaign_pause, campaign_resume, campaign_send_now
from tests.conftest import wait_until
from tests.factories import campaign_to, list_with_contacts

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def statuses(campaign: Campaign) -> dict[str, int]:
    rows = Recipient.objects.filter(campaign=campaign).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def is_status(campaign: Campaign, status: str) -> bool:
    return Campaign.objects.filter(pk=campaign.pk, status=status).exists()


def received_per_address(ses) -> collections.Counter:
    """Messages moto accepted per address (moto lists an address once per header it is in)."""
    return collections.Counter(address for message in ses.sent() for address in set(message["destinations"]))


def test_several_workers_send_every_recipient_exactly_once(clusters, ses):
    campaign = campaign_to(list_with_contacts(240))
    # Two clusters of two worker processes each, four dispatchers competing for the same rows.
    clusters.start(2, SEND_DISPATCHERS="4", SEND_BATCH_SIZE="20")

    campaign_send_now(campaign_id=campaign.pk)
    wait_until(lambda: is_status(campaign, Campaign.Status.SENT), timeout=90, message="the campaign to be sent")

    received = received_per_address(ses)
    assert len(received) == 240
    assert set(received.values()) == {1}, "a recipient reached SES twice"
    assert statuses(campaign) == {"sent": 240}
    assert Recipient.objects.filter(campaign=campaign, ses_message_id__isnull=True).count() == 0


def test_a_killed_worker_loses_nobody_and_resends_at_most_what_was_in_flight(clusters, ses, engine_tick_schedule):
    campaign = campaign_to(list_with_contacts(160))
    env = {"SEND_RATE": "40", "SEND_STALE_SECONDS": "10", "SEND_DISPATCHERS": "2"}
    (first,) = clusters.start(1, **env)

    campaign_send_now(campaign_id=campaign.pk)
    wait_until(lambda: statuses(campaign).get("sent", 0) >= 40, timeout=60, message="sending to get going")
    clusters.kill(first)  # SIGKILL to the whole process group, mid-chunk
    in_flight = statuses(campaign).get("sending", 0)
    assert statuses(campaign).get("sent", 0) < 160, "the campaign finished before the kill"

    # A fresh cluster: its engine tick requeues what the dead one held once it is SEND_STALE_SECONDS
    # old, and starts dispatchers again (the killed task itself never comes back on Redis).
    clusters.start(1, **env)
    wait_until(lambda: is_status(campaign, Campaign.Status.SENT), timeout=100, message="the campaign to finish")

    received = received_per_address(ses)
    assert len(received) == 160, "a recipient was lost"
    duplicates = sum(count - 1 for count in received.values())
    assert duplicates <= in_flight
    assert statuses(campaign) == {"sent": 160}


def test_pause_resume_and_cancel_take_effect_within_seconds(clusters, ses):
    campaign = campaign_to(list_with_contacts(300))
    clusters.start(1, SEND_RATE="50", SEND_DISPATCHERS="2")
    campaign_send_now(campaign_id=campaign.pk)
    wait_until(lambda: statuses(campaign).get("sent", 0) >= 30, timeout=60, message="sending to start")

    campaign_pause(campaign_id=campaign.pk)
    # In-flight messages finish; within two seconds nothing is claimed or sent any more.
    wait_until(lambda: statuses(campaign).get("sending", 0) == 0, timeout=3, message="in-flight sends to finish")
    settled = len(ses.sent())
    time.sleep(1.5)
    assert len(ses.sent()) == settled
    assert 30 <= settled < 300

    campaign_resume(campaign_id=campaign.pk)
    wait_until(lambda: len(ses.sent()) >= settled + 25, timeout=10, message="sending to resume")

    campaign_cancel(campaign_id=campaign.pk)
    wait_until(lambda: statuses(campaign).get("sending", 0) == 0, timeout=3, message="in-flight sends to finish")
    final = len(ses.sent())
    time.sleep(1.5)
    assert len(ses.sent()) == final < 300
    counts = statuses(campaign)
    assert counts == {"sent": final, "skipped": 300 - final}
    assert is_status(campaign, Campaign.Status.CANCELLED)


def test_a_real_worker_sends_every_message_and_records_the_ses_ids(workers, ses):
    campaign = campaign_to(list_with_contacts(12))
    workers.start(1)

    campaign_send_now(campaign_id=campaign.pk)

    wait_until(
        lambda: Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SENT,
        timeout=90,
        message="the campaign to be sent by the worker",
    )
    # moto lists an address once from the API call and once from the To header: compare as sets.
    received = {message["id"]: set(message["destinations"]) for message in ses.sent()}
    recipients = Recipient.objects.filter(campaign=campaign)
    assert recipients.count() == 12
    assert {r.status for r in recipients} == {Recipient.Status.SENT}
    assert {r.ses_message_id: {r.email} for r in recipients} == received
