"""A staff member schedules a campaign in their time zone, watches it start, and pauses it."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest
from django.db.models import Count
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.models import Campaign, Recipient
from campaigns.tasks import engine_tick
from tests.conftest import screenshot, wait_until
from tests.factories import campaign_to, list_with_contacts

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def sent_count(campaign: Campaign) -> int:
    return Recipient.objects.filter(campaign=campaign, status=Recipient.Status.SENT).count()


def test_staff_schedule_a_campaign_watch_it_start_and_pause_it(logged_in_page, live_server, workers, ses):
    campaign = campaign_to(list_with_contacts(150, name="Rowing club"), name="Autumn regatta")
    (cluster,) = workers.start(1, SEND_RATE="20")
    try:
        page = logged_in_page
        page.on("dialog", lambda dialog: dialog.accept())
        berlin = ZoneInfo("Europe/Berlin")
        local = (timezone.now().astimezone(berlin) + dt.timedelta(hours=2)).replace(second=0, microsecond=0)

        page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")
        page.fill("#id_send_at", local.strftime("%Y-%m-%dT%H:%M"))
        page.select_option("#id_time_zone", "Europe/Berlin")
        page.click("button:has-text('Schedule')")

        expect(page.get_by_test_id("campaign-status")).to_have_text("Scheduled")
        campaign.refresh_from_db()
        # Chosen in Berlin time, stored as the same instant in UTC.
        assert campaign.scheduled_at == local.astimezone(dt.UTC)
        screenshot(page, "schedule-scheduled")

        # Two hours pass (in the database, so the queue's timestamps stay real): the engine tick
        # the cluster runs every minute finds the campaign due and starts it.
        Campaign.objects.filter(pk=campaign.pk).update(scheduled_at=timezone.now() - dt.timedelta(seconds=1))
        assert engine_tick()["started"] == 1

        # The page polls: it shows the campaign sending and the sent count rising.
        expect(page.get_by_test_id("campaign-status")).to_have_text("Sending", timeout=20_000)
        wait_until(lambda: sent_count(campaign) >= 10, timeout=60, message="the first messages to be sent")
        expect(page.get_by_test_id("sent-count")).not_to_have_text("0", timeout=10_000)
        screenshot(page, "schedule-sending")

        page.click("button:has-text('Pause')")
        expect(page.get_by_test_id("campaign-status")).to_have_text("Paused")
        wait_until(
            lambda: not Recipient.objects.filter(campaign=campaign, status=Recipient.Status.SENDING).exists(),
            timeout=5,
            message="in-flight messages to finish",
        )
        settled = len(ses.sent())
        time.sleep(1.5)
        assert len(ses.sent()) == settled < 150
        counts = dict(Recipient.objects.filter(campaign=campaign).values_list("status").annotate(n=Count("id")))
        assert counts[Recipient.Status.SENT] == settled
        expect(page.get_by_role("button", name="Resume")).to_be_visible()
        screenshot(page, "schedule-paused")
    finally:
        workers.kill(cluster)  # the test has its result: no need for an orderly stop
