"""The campaign page's live progress comes from counters that always equal the recipients' statuses."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from audiences.models import Suppression
from campaigns.delivery.claims import claim, release
from campaigns.delivery.engine import campaign_dispatch
from campaigns.models import Campaign, Recipient
from campaigns.services import campaign_cancel
from campaigns.snapshot import audience_snapshot
from campaigns.views import progress
from stats.models import CampaignStats
from tests.factories import campaign_to, list_with_contacts
from tracking.recount import stats_repair

pytestmark = pytest.mark.django_db


def sending_campaign(size: int) -> Campaign:
    campaign = campaign_to(list_with_contacts(size))
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING, started_at=timezone.now())
    audience_snapshot(campaign_id=campaign.pk)
    return Campaign.objects.get(pk=campaign.pk)


def counted(campaign: Campaign) -> dict[str, int]:
    """The progress figures the slow way: every recipient counted by status."""
    figures = dict.fromkeys(("queued", "sending", "sent", "failed", "skipped"), 0)
    for status in Recipient.objects.filter(campaign=campaign).values_list("status", flat=True):
        figures[status] += 1
    return figures


def shown(campaign: Campaign) -> dict[str, int]:
    figures = progress(Campaign.objects.get(pk=campaign.pk))
    return {key: figures[key] for key in ("queued", "sending", "sent", "failed", "skipped")}


def test_progress_after_sends_rejections_and_skips_equals_the_recipients(stub_ses):
    campaign = sending_campaign(6)
    suppressed = Recipient.objects.filter(campaign=campaign).order_by("id").first()
    Suppression.objects.create(email=suppressed.email, reason=Suppression.Reason.COMPLAINT)
    stub_ses.fail("rejected", 1)
    assert shown(campaign) == counted(campaign) == {"queued": 6, "sending": 0, "sent": 0, "failed": 0, "skipped": 0}

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "finished"

    assert shown(campaign) == counted(campaign) == {"queued": 0, "sending": 0, "sent": 4, "failed": 1, "skipped": 1}
    figures = progress(Campaign.objects.get(pk=campaign.pk))
    assert (figures["total"], figures["done"], figures["percent"]) == (6, 6, 100)
    assert stats_repair(campaign_id=campaign.pk) == {}


def test_progress_while_in_flight_and_after_a_cancel_equals_the_recipients():
    campaign = sending_campaign(5)
    claimed = claim(campaign_id=campaign.pk, limit=2)

    assert shown(campaign) == counted(campaign) == {"queued": 3, "sending": 2, "sent": 0, "failed": 0, "skipped": 0}

    campaign_cancel(campaign_id=campaign.pk)
    assert shown(campaign) == counted(campaign) == {"queued": 0, "sending": 2, "sent": 0, "failed": 0, "skipped": 3}

    # The dispatcher holding the two sees the cancel and gives them back: skipped, not queued.
    release(campaign_id=campaign.pk, token=claimed.token, ids=claimed.ids)
    assert shown(campaign) == counted(campaign) == {"queued": 0, "sending": 0, "sent": 0, "failed": 0, "skipped": 5}
    assert stats_repair(campaign_id=campaign.pk) == {}


def test_the_progress_fragment_shows_the_counted_figures(client, staff_user, stub_ses):
    campaign = sending_campaign(3)
    stub_ses.fail("rejected", 1)
    campaign_dispatch(campaign_id=campaign.pk, seconds=30)
    client.force_login(staff_user)

    response = client.get(reverse("campaigns:progress", args=[campaign.pk]), HTTP_HX_REQUEST="true")

    assert response.status_code == 286  # finished: htmx stops polling
    html = response.content.decode()
    assert 'data-testid="total-count">3<' in html
    assert 'data-testid="sent-count">2<' in html
    assert 'value="3" max="3"' in html  # the bar: sent, failed and skipped are all done


def test_tracking_recount_reports_and_repairs_drifted_outcome_counters(stub_ses):
    campaign = sending_campaign(3)
    stub_ses.fail("rejected", 1)
    campaign_dispatch(campaign_id=campaign.pk, seconds=30)
    CampaignStats.objects.filter(campaign=campaign).update(sent=7, failed=0)
    out = StringIO()

    with pytest.raises(CommandError, match="run again with --fix"):
        call_command("tracking_recount", "--campaign", str(campaign.pk), stdout=out)
    assert "sent 7 → 2" in out.getvalue() and "failed 0 → 1" in out.getvalue()
    assert shown(campaign)["sent"] == 7  # reported, not yet written

    call_command("tracking_recount", "--campaign", str(campaign.pk), "--fix", stdout=StringIO())
    assert shown(campaign) == counted(campaign) == {"queued": 0, "sending": 0, "sent": 2, "failed": 1, "skipped": 0}


def test_recipients_a_dead_worker_held_in_a_cancelled_campaign_end_skipped_not_queued():
    from datetime import timedelta

    from campaigns.delivery.claims import reclaim_stale

    campaign = sending_campaign(4)
    claimed = claim(campaign_id=campaign.pk, limit=3).ids
    campaign_cancel(campaign_id=campaign.pk)  # the worker holding the three died meanwhile
    Recipient.objects.filter(id__in=claimed).update(claimed_at=timezone.now() - timedelta(hours=1))

    assert reclaim_stale() == {}  # nothing goes back to the queue of a cancelled campaign

    assert shown(campaign) == counted(campaign) == {"queued": 0, "sending": 0, "sent": 0, "failed": 0, "skipped": 4}
    assert stats_repair(campaign_id=campaign.pk) == {}


def test_retries_of_a_chunk_that_ends_after_a_cancel_are_skipped_not_queued(stub_ses):
    from campaigns.delivery.engine import _record
    from campaigns.delivery.errors import Outcome

    campaign = sending_campaign(3)
    claimed = claim(campaign_id=campaign.pk, limit=3)
    recipients = list(Recipient.objects.filter(id__in=claimed.ids).order_by("id"))
    campaign_cancel(campaign_id=campaign.pk)  # while SES was throttling the chunk

    throttled = [Outcome(r, "retry", reason="Throttling", delay=1.0, token=claimed.token) for r in recipients]
    assert _record(campaign, throttled)

    assert shown(campaign) == counted(campaign) == {"queued": 0, "sending": 0, "sent": 0, "failed": 0, "skipped": 3}
    assert stats_repair(campaign_id=campaign.pk) == {}
