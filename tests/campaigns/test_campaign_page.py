"""The campaign page: its audience, the rate and time left while sending, and a refused schedule."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, Recipient
from campaigns.progress import progress, rate_of_latest_stretch, time_left_words
from campaigns.snapshot import audience_snapshot
from stats.counters import outcomes_add
from tests.factories import CampaignFactory, SegmentFactory, campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 27, 9, 0, tzinfo=dt.UTC)


def test_the_audience_names_every_included_and_excluded_list_and_segment(staff_client):
    campaign = CampaignFactory()
    rowers = SegmentFactory(name="Rowers over 0", rules=[{"field": "attribute:age", "operator": "gt", "value": "0"}])
    campaign.include_segments.add(rowers)

    only_segment = staff_client.get(reverse("campaigns:detail", args=[campaign.pk])).content.decode()

    assert "none chosen" not in only_segment.lower() and "No list or segment chosen" not in only_segment
    assert "in the segment <span" in only_segment and "Rowers over 0" in only_segment

    campaign.include_lists.add(list_with_contacts(1, name="Members"))
    campaign.exclude_lists.add(list_with_contacts(1, name="Committee"), list_with_contacts(1, name="Coaches"))
    campaign.exclude_segments.add(SegmentFactory(name="Lapsed", rules=rowers.rules))

    html = staff_client.get(reverse("campaigns:detail", args=[campaign.pk])).content.decode()

    included = html[html.index('data-testid="audience-included"') : html.index('data-testid="audience-excluded"')]
    excluded = html[html.index('data-testid="audience-excluded"') :].split("</p>")[0]
    assert "Members" in included and "Rowers over 0" in included
    assert all(name in excluded for name in ("Committee", "Coaches", "Lapsed"))
    assert "on the lists" in excluded and "in the segment " in excluded


def test_a_campaign_with_no_audience_says_how_to_choose_one(staff_client):
    campaign = CampaignFactory()
    html = staff_client.get(reverse("campaigns:detail", args=[campaign.pk])).content.decode()
    assert "No list or segment chosen yet" in html and reverse("campaigns:edit", args=[campaign.pk]) in html


def sending_campaign(size: int) -> Campaign:
    campaign = campaign_to(list_with_contacts(size))
    Campaign.objects.filter(pk=campaign.pk).update(
        status=Campaign.Status.SENDING, started_at=NOW - dt.timedelta(hours=1)
    )
    audience_snapshot(campaign_id=campaign.pk)
    return Campaign.objects.get(pk=campaign.pk)


def mark_sent(campaign: Campaign, count: int, *, start: dt.datetime, per_second: int) -> None:
    """``count`` more recipients sent from ``start`` on, written in one chunk a second as the engine does."""
    queued = list(Recipient.objects.filter(campaign=campaign, status=Recipient.Status.QUEUED).order_by("id")[:count])
    for index, recipient in enumerate(queued):
        recipient.status = Recipient.Status.SENT
        recipient.sent_at = start + dt.timedelta(seconds=index // per_second)
    Recipient.objects.bulk_update(queued, ["status", "sent_at"])
    outcomes_add(campaign_id=campaign.pk, sent=len(queued))


def test_the_rate_and_time_left_count_only_the_sending_since_the_last_pause(staff_client, settings):
    settings.SEND_RATE = 20
    campaign = sending_campaign(260)
    # 100 sent in the first minutes, then paused for 50 minutes, then resumed 10 s ago at 5 msg/s.
    mark_sent(campaign, 100, start=NOW - dt.timedelta(hours=1), per_second=5)
    mark_sent(campaign, 50, start=NOW - dt.timedelta(seconds=10), per_second=5)

    with time_machine.travel(NOW, tick=False):
        figures = progress(campaign)
        html = staff_client.get(reverse("campaigns:progress", args=[campaign.pk]), HTTP_HX_REQUEST="true")

    # The first second's chunk marks the start: 45 messages in the 10 s since (not 150 in an hour).
    assert figures["rate"] == pytest.approx(4.5)
    assert figures["seconds_left"] == round(110 / 4.5)
    assert figures["time_left"] == "less than a minute left"
    content = html.content.decode()
    assert "4.5 msg/s" in content and "less than a minute left" in content
    assert "limit 20 msg/s (set by SEND_RATE)" in content
    assert " s left" not in content.replace("less than a minute left", "")


def test_right_after_resume_the_page_says_estimating_instead_of_a_rate(staff_client):
    campaign = sending_campaign(30)
    mark_sent(campaign, 20, start=NOW - dt.timedelta(minutes=30), per_second=5)  # before the pause
    mark_sent(campaign, 2, start=NOW - dt.timedelta(seconds=1), per_second=5)  # the first after resume

    with time_machine.travel(NOW, tick=False):
        figures = progress(campaign)
        content = staff_client.get(reverse("campaigns:detail", args=[campaign.pk])).content.decode()

    assert figures["rate"] is None and figures["estimating"]
    assert "estimating time left…" in content and "msg/s ·" not in content


def test_the_rate_is_not_shown_once_the_campaign_is_paused(staff_client):
    campaign = sending_campaign(10)
    mark_sent(campaign, 8, start=NOW - dt.timedelta(seconds=8), per_second=1)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)

    with time_machine.travel(NOW, tick=False):
        figures = progress(Campaign.objects.get(pk=campaign.pk))

    assert figures["rate"] is None and not figures["estimating"]
    assert figures["limit"].label == "limit: your SES account's maximum rate"  # no SEND_RATE here


def test_the_latest_stretch_ends_at_a_gap_in_sending():
    sends = [NOW - dt.timedelta(seconds=s) for s in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)]
    before_pause = [NOW - dt.timedelta(minutes=20, seconds=s) for s in range(100)]

    assert rate_of_latest_stretch(sends + before_pause, now=NOW) == pytest.approx(1.0)
    assert rate_of_latest_stretch(before_pause, now=NOW) is None  # nothing sent for 20 minutes
    assert rate_of_latest_stretch(sends[:2], now=NOW) is None  # one second of sending: too little


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "less than a minute left"),
        (59, "less than a minute left"),
        (180, "about 3 min left"),
        (2455, "about 41 min left"),
        (4320, "about 1 h 12 min left"),
        (7200, "about 2 h left"),
        (90_000, "about 25 h left"),
    ],
)
def test_time_left_is_said_in_hours_and_minutes(seconds, words):
    assert time_left_words(seconds) == words


def test_a_schedule_refused_as_in_the_past_keeps_the_date_time_and_zone_typed(staff_client):
    campaign = campaign_to(list_with_contacts(1))

    with time_machine.travel(NOW, tick=False):
        response = staff_client.post(
            reverse("campaigns:schedule", args=[campaign.pk]),
            {"send_at": "2026-03-27T08:30", "time_zone": "Europe/Berlin"},  # 07:30 UTC: in the past
        )

    assert response.status_code == 400
    html = response.content.decode()
    assert 'value="2026-03-27T08:30"' in html
    assert '<option value="Europe/Berlin" selected>' in html
    assert 'data-user-chosen="1"' in html  # the browser must not swap the zone typed for its own
    assert "at least a minute in the future" in html
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


def test_a_schedule_with_no_date_keeps_the_zone_chosen_and_says_what_is_missing(staff_client):
    campaign = campaign_to(list_with_contacts(1))

    response = staff_client.post(
        reverse("campaigns:schedule", args=[campaign.pk]), {"send_at": "", "time_zone": "America/Chicago"}
    )

    assert response.status_code == 400
    html = response.content.decode()
    assert '<option value="America/Chicago" selected>' in html
    assert "Choose a valid date, time and time zone" in html


def test_a_schedule_in_the_future_is_saved(staff_client):
    campaign = campaign_to(list_with_contacts(1))
    with time_machine.travel(NOW, tick=False):
        response = staff_client.post(
            reverse("campaigns:schedule", args=[campaign.pk]),
            {"send_at": "2026-03-27T18:30", "time_zone": "Europe/Berlin"},
        )
    assert response.status_code == 302
    assert Campaign.objects.get(pk=campaign.pk).scheduled_at == timezone.make_aware(
        dt.datetime(2026, 3, 27, 17, 30), dt.UTC
    )
