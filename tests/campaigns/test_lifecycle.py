"""Campaign life cycle: every transition through campaigns.services, invalid ones refused clearly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from campaigns.delivery.engine import campaign_dispatch
from campaigns.models import Campaign, Recipient
from campaigns.services import (
    CampaignError,
    campaign_cancel,
    campaign_pause,
    campaign_resume,
    campaign_schedule,
    campaign_send_now,
    campaign_unschedule,
)
from campaigns.snapshot import audience_snapshot
from tests.factories import CampaignFactory, campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db


def in_status(status: str, **fields) -> Campaign:
    campaign = campaign_to(list_with_contacts(3), **fields)
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    return Campaign.objects.get(pk=campaign.pk)


def test_a_draft_can_be_scheduled_and_unscheduled_back_to_draft(django_capture_on_commit_callbacks):
    campaign = campaign_to(list_with_contacts(2))
    when = timezone.now() + timedelta(hours=2)

    scheduled = campaign_schedule(campaign_id=campaign.pk, when=when)
    assert scheduled.status == Campaign.Status.SCHEDULED
    assert Schedule.objects.get(name=f"campaign-start-{campaign.pk}").next_run == when

    draft = campaign_unschedule(campaign_id=campaign.pk)
    assert draft.status == Campaign.Status.DRAFT
    assert draft.scheduled_at is None
    assert not Schedule.objects.filter(name=f"campaign-start-{campaign.pk}").exists()


@pytest.mark.parametrize(
    ("status", "action", "message"),
    [
        (Campaign.Status.DRAFT, campaign_pause, "A draft campaign cannot be paused."),
        (Campaign.Status.DRAFT, campaign_resume, "A draft campaign cannot be resumed."),
        (Campaign.Status.DRAFT, campaign_cancel, "A draft campaign cannot be cancelled."),
        (Campaign.Status.SENT, campaign_pause, "A sent campaign cannot be paused."),
        (Campaign.Status.SENT, campaign_cancel, "A sent campaign cannot be cancelled."),
        (Campaign.Status.CANCELLED, campaign_resume, "A cancelled campaign cannot be resumed."),
        (Campaign.Status.SENDING, campaign_resume, "A sending campaign cannot be resumed."),
        (Campaign.Status.SENDING, campaign_unschedule, "A sending campaign cannot be moved back to draft."),
        (Campaign.Status.PAUSED, campaign_send_now, "A paused campaign cannot be sent. Resume it instead."),
        (Campaign.Status.PAUSED, campaign_pause, "A paused campaign cannot be paused."),
    ],
)
def test_invalid_transitions_are_refused_with_a_clear_message(status, action, message):
    campaign = in_status(status)

    with pytest.raises(CampaignError) as refused:
        action(campaign_id=campaign.pk)

    assert str(refused.value) == message
    assert Campaign.objects.get(pk=campaign.pk).status == status


def test_a_sending_campaign_cannot_be_rescheduled():
    campaign = in_status(Campaign.Status.SENDING)
    with pytest.raises(CampaignError, match=r"A sending campaign cannot be scheduled\."):
        campaign_schedule(campaign_id=campaign.pk, when=timezone.now() + timedelta(hours=1))


def test_a_scheduled_campaign_can_be_moved_to_another_time():
    campaign = campaign_to(list_with_contacts(1))
    first, later = timezone.now() + timedelta(hours=1), timezone.now() + timedelta(hours=5)
    campaign_schedule(campaign_id=campaign.pk, when=first)

    campaign_schedule(campaign_id=campaign.pk, when=later)

    campaign.refresh_from_db()
    assert (campaign.status, campaign.scheduled_at) == (Campaign.Status.SCHEDULED, later)
    (schedule,) = Schedule.objects.filter(name__endswith=str(campaign.pk))
    assert schedule.next_run == later


def test_a_campaign_cancelled_before_its_start_task_ran_freezes_no_audience():
    campaign = campaign_to(list_with_contacts(3))
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.CANCELLED)

    assert audience_snapshot(campaign_id=campaign.pk) == 0
    assert not Recipient.objects.filter(campaign=campaign).exists()


def test_schedule_refuses_a_time_without_zone_or_in_the_past():
    campaign = campaign_to(list_with_contacts(1))
    with pytest.raises(CampaignError, match="needs a time zone"):
        campaign_schedule(campaign_id=campaign.pk, when=(timezone.now() + timedelta(hours=1)).replace(tzinfo=None))
    with pytest.raises(CampaignError, match="at least a minute in the future"):
        campaign_schedule(campaign_id=campaign.pk, when=timezone.now() - timedelta(minutes=5))
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


def test_sending_needs_an_audience():
    campaign = CampaignFactory()
    with pytest.raises(CampaignError, match="Choose at least one list or segment"):
        campaign_send_now(campaign_id=campaign.pk)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


def test_a_scheduled_campaign_can_be_cancelled_and_its_schedule_goes():
    campaign = campaign_to(list_with_contacts(2))
    campaign_schedule(campaign_id=campaign.pk, when=timezone.now() + timedelta(days=1))

    cancelled = campaign_cancel(campaign_id=campaign.pk)

    assert cancelled.status == Campaign.Status.CANCELLED
    assert cancelled.finished_at is not None
    assert not Schedule.objects.filter(name=f"campaign-start-{campaign.pk}").exists()


def test_send_now_starts_the_snapshot_task_after_commit(django_capture_on_commit_callbacks):
    campaign = campaign_to(list_with_contacts(2))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        started = campaign_send_now(campaign_id=campaign.pk)

    assert started.status == Campaign.Status.SENDING
    assert started.started_at is not None
    assert len(callbacks) == 1


def test_pause_stops_the_dispatcher_and_resume_sends_the_rest(stub_ses, django_capture_on_commit_callbacks):
    campaign = campaign_to(list_with_contacts(4))
    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)

    paused = campaign_pause(campaign_id=campaign.pk, reason="Checking a typo.")
    assert paused.status_reason == "Checking a typo."
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=10) == "stopped"
    assert stub_ses.calls == 0

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        campaign_resume(campaign_id=campaign.pk)
    assert len(callbacks) == 1  # dispatchers are enqueued once the resume is committed
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=10) == "finished"
    assert sorted(stub_ses.per_address().values()) == [1, 1, 1, 1]
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SENT


def test_cancel_skips_everyone_still_queued(stub_ses, django_capture_on_commit_callbacks):
    campaign = campaign_to(list_with_contacts(5))
    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)

    campaign_cancel(campaign_id=campaign.pk)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=5) == "stopped"
    assert set(Recipient.objects.filter(campaign=campaign).values_list("status", flat=True)) == {
        Recipient.Status.SKIPPED
    }
    assert stub_ses.calls == 0
