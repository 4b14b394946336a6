"""Dispatch against a local SES stub that fails on purpose: retries, failures, pauses; and the
recipients it skips because they left after the snapshot."""

from __future__ import annotations

import pytest
from django.utils import timezone
from post_office.models import STATUS, Email, Log

from audiences.models import Contact, Suppression
from campaigns.delivery.engine import campaign_dispatch
from campaigns.models import Campaign, Recipient
from campaigns.snapshot import audience_snapshot
from tests.factories import campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db


def sending_campaign(size: int, **fields) -> Campaign:
    campaign = campaign_to(list_with_contacts(size), **fields)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING, started_at=timezone.now())
    audience_snapshot(campaign_id=campaign.pk)
    return Campaign.objects.get(pk=campaign.pk)


def statuses(campaign: Campaign) -> dict[str, int]:
    result: dict[str, int] = {}
    for status in Recipient.objects.filter(campaign=campaign).values_list("status", flat=True):
        result[status] = result.get(status, 0) + 1
    return result


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_throttling_is_retried_and_never_counted_as_a_failure(stub_ses, settings, api):
    settings.SEND_SES_API = api
    campaign = sending_campaign(4)
    stub_ses.fail("throttling", 3)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "finished"

    assert statuses(campaign) == {"sent": 4}
    assert stub_ses.calls == 7  # 3 refused + 4 accepted: nothing retried behind our back
    assert sorted(stub_ses.per_address().values()) == [1, 1, 1, 1]
    # A throttled try is not an attempt: everyone was sent at their first counted attempt.
    assert set(Recipient.objects.values_list("attempts", flat=True)) == {1}
    assert not Log.objects.filter(status=STATUS.failed).exists()


def test_transient_server_errors_are_retried_with_backoff_until_sent(stub_ses):
    campaign = sending_campaign(3)
    stub_ses.fail("server_error", 2)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "finished"

    assert statuses(campaign) == {"sent": 3}
    assert sum(Recipient.objects.values_list("attempts", flat=True)) == 5
    assert stub_ses.calls == 5


def test_transient_errors_give_up_after_the_attempt_limit(stub_ses, settings):
    settings.SEND_MAX_ATTEMPTS = 2
    campaign = sending_campaign(1)
    stub_ses.fail("server_error", 5)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "finished"

    recipient = Recipient.objects.get()
    assert recipient.status == Recipient.Status.FAILED
    assert recipient.error.startswith("Gave up after 2 attempts: InternalFailure")
    assert stub_ses.calls == 2  # botocore's own retries are off: each attempt is one call


def test_a_rejected_message_fails_its_recipient_with_the_reason(stub_ses):
    campaign = sending_campaign(2)
    stub_ses.fail("rejected", 1)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "finished"

    failed = Recipient.objects.get(status=Recipient.Status.FAILED)
    assert failed.error == "MessageRejected: Email address is not verified."
    assert failed.attempts == 1
    outbox = Email.objects.get(pk=failed.outbox_email_id)
    assert outbox.status == STATUS.failed
    assert Log.objects.get(email=outbox).exception_type == "MessageRejected"
    assert statuses(campaign) == {"sent": 1, "failed": 1}
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SENT


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_the_daily_quota_pauses_the_campaign_and_says_when_to_resume(stub_ses, settings, api):
    settings.SEND_SES_API = api
    campaign = sending_campaign(3)
    stub_ses.fail("daily_quota", 1)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "stopped"

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert "daily sending quota" in campaign.status_reason
    assert "24 hours" in campaign.status_reason
    counts = statuses(campaign)
    assert counts.get("failed", 0) == 0 and counts.get("sending", 0) == 0
    assert counts["queued"] == 3 - counts.get("sent", 0) >= 1


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_a_paused_account_pauses_the_campaign_with_the_ses_reason(stub_ses, settings, api):
    settings.SEND_SES_API = api
    campaign = sending_campaign(2)
    stub_ses.fail("paused", 2)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "stopped"

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert campaign.status_reason.startswith("SES refused to send: ")
    assert "SendingPausedException: Sending is paused for this account." in campaign.status_reason


def test_addresses_suppressed_after_the_snapshot_are_skipped(stub_ses):
    campaign = sending_campaign(3)
    skipped = Recipient.objects.order_by("id").first()
    Suppression.objects.create(email=skipped.email, reason=Suppression.Reason.COMPLAINT)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "finished"

    assert statuses(campaign) == {"sent": 2, "skipped": 1}
    assert skipped.email not in stub_ses.per_address()


def test_contacts_who_unsubscribed_after_the_snapshot_are_skipped(stub_ses):
    campaign = sending_campaign(3)
    gone = Recipient.objects.order_by("id").last()
    Contact.objects.filter(pk=gone.contact_id).update(status=Contact.Status.UNSUBSCRIBED)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "finished"

    assert statuses(campaign) == {"sent": 2, "skipped": 1}
    assert gone.email not in stub_ses.per_address()
