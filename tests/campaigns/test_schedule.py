"""Scheduled campaigns start on time, through the django-q2 schedule or the engine tick (frozen time)."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.brokers import get_broker
from django_q.models import Schedule
from django_q.scheduler import scheduler
from django_q.signing import SignedPackage

from campaigns.models import Campaign
from campaigns.services import campaign_schedule
from campaigns.tasks import engine_tick
from tests.factories import campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db(transaction=True)

NOW = dt.datetime(2026, 3, 27, 9, 0, tzinfo=dt.UTC)


def run_queued_tasks(broker) -> list[str]:
    """Run what the scheduler put on the broker, as a qcluster worker would; returns their funcs.

    Dispatch tasks are only listed, not run: sending is tested elsewhere.
    """
    ran = []
    for _ in range(20):
        batch = broker.dequeue()
        if not batch:
            break
        for task_id, payload in batch:
            task = SignedPackage.loads(payload)
            if task["func"] != "campaigns.tasks.campaign_dispatch":
                import_string(task["func"])(*task["args"], **task["kwargs"])
            ran.append(task["func"])
            broker.acknowledge(task_id)
    return ran


@pytest.fixture
def broker():
    broker = get_broker()
    broker.purge_queue()
    yield broker
    broker.purge_queue()


def test_the_schedule_stores_the_staff_time_zone_moment_in_utc():
    campaign = campaign_to(list_with_contacts(1))
    berlin = dt.datetime(2026, 3, 27, 18, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # CET, UTC+1

    with time_machine.travel(NOW, tick=False):
        campaign_schedule(campaign_id=campaign.pk, when=berlin)

    campaign.refresh_from_db()
    assert campaign.scheduled_at == dt.datetime(2026, 3, 27, 17, 30, tzinfo=dt.UTC)
    assert Schedule.objects.get(name=f"campaign-start-{campaign.pk}").next_run == campaign.scheduled_at


def test_the_django_q_schedule_starts_the_campaign_when_its_time_comes(broker, django_capture_on_commit_callbacks):
    campaign = campaign_to(list_with_contacts(2))
    when = NOW + dt.timedelta(hours=3)
    with time_machine.travel(NOW, tick=False):
        campaign_schedule(campaign_id=campaign.pk, when=when)

    # tick=True: the ORM broker hands out tasks whose lock time is strictly in the past.
    with time_machine.travel(when - dt.timedelta(seconds=5)):
        scheduler(broker=broker)
        assert run_queued_tasks(broker) == []
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SCHEDULED

    # The cluster's scheduler runs every 30 s: the first pass after the time starts it.
    with time_machine.travel(when + dt.timedelta(seconds=29)):
        scheduler(broker=broker)
        ran = run_queued_tasks(broker)

    assert "campaigns.tasks.campaign_start_scheduled" in ran
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING
    assert when < campaign.started_at < when + dt.timedelta(seconds=30)
    assert not Schedule.objects.filter(name=f"campaign-start-{campaign.pk}").exists()


def test_the_engine_tick_starts_an_overdue_campaign_whose_schedule_was_lost(broker):
    campaign = campaign_to(list_with_contacts(2))
    when = NOW + dt.timedelta(minutes=10)
    with time_machine.travel(NOW, tick=False):
        campaign_schedule(campaign_id=campaign.pk, when=when)
    Schedule.objects.filter(name=f"campaign-start-{campaign.pk}").delete()

    with time_machine.travel(when - dt.timedelta(seconds=1), tick=False):
        assert engine_tick()["started"] == 0
    with time_machine.travel(when + dt.timedelta(seconds=20)):
        assert engine_tick()["started"] == 1
        # The start task freezes the audience, then enqueues the dispatchers.
        assert "campaigns.tasks.campaign_start" in run_queued_tasks(broker)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING
    assert campaign.recipients.count() == 2


def test_an_unscheduled_campaign_is_not_started_by_the_tick(broker):
    from campaigns.services import campaign_unschedule

    campaign = campaign_to(list_with_contacts(1))
    with time_machine.travel(NOW, tick=False):
        campaign_schedule(campaign_id=campaign.pk, when=NOW + dt.timedelta(minutes=5))
        campaign_unschedule(campaign_id=campaign.pk)
    with time_machine.travel(NOW + dt.timedelta(minutes=6)):
        scheduler(broker=broker)
        run_queued_tasks(broker)
        assert engine_tick()["started"] == 0
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


def test_the_tick_restarts_dispatchers_of_a_campaign_whose_heartbeat_stopped(broker):
    from campaigns.snapshot import audience_snapshot

    campaign = campaign_to(list_with_contacts(2))
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING, started_at=timezone.now())
    audience_snapshot(campaign_id=campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=10))
    broker.purge_queue()

    assert engine_tick()["restarted"] == 1
    time.sleep(0.01)
    queued = []
    for _ in range(5):  # the ORM broker hands out several tasks at a time, Redis one
        queued += [SignedPackage.loads(payload)["func"] for _task_id, payload in broker.dequeue() or []]
        if len(queued) >= 2:
            break
    assert queued == ["campaigns.tasks.campaign_dispatch"] * 2
