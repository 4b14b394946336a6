"""The opens and clicks chart: its time step follows the campaign's age, and no label is cut off."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from campaigns.models import Campaign
from reports.charts import bar_chart, line_chart, text_width
from reports.selectors import activity_series, time_step
from stats.breakdowns import breakdown_bump
from tests.sns import campaign_with_recipients, new_id
from tests.tracking.records import SENT_AT, event
from tracking.recount import breakdown_repair

HUMAN = {"userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36"}


@pytest.mark.parametrize(
    ("age", "label"),
    [
        (timedelta(minutes=3), "minute"),
        (timedelta(minutes=40), "minute"),
        (timedelta(minutes=90), "5 minutes"),
        (timedelta(hours=5), "15 minutes"),
        (timedelta(hours=30), "hour"),
        (timedelta(days=9), "day"),
    ],
)
def test_the_time_step_follows_the_campaigns_age(age, label):
    assert time_step(age).label == label


@pytest.mark.django_db
def test_a_fresh_campaign_is_drawn_per_minute_from_its_start_to_now(notify):
    campaign, recipients = campaign_with_recipients(3)
    Campaign.objects.filter(pk=campaign.pk).update(started_at=SENT_AT)
    campaign.refresh_from_db()
    for recipient, minutes in zip(recipients, (2, 2, 7), strict=True):
        record = event(
            "Open",
            address=recipient.email,
            message_id=recipient.ses_message_id,
            campaign=campaign.pk,
            recipient=recipient.pk,
            after=minutes * 60 + 15,
            **HUMAN,
        )
        assert notify(record, message_id=new_id()).status_code == 200
    with time_machine.travel(SENT_AT + timedelta(minutes=20, seconds=30), tick=False):
        times, series, step = activity_series(campaign)
    assert step.label == "minute"
    assert times[0] == SENT_AT and times[-1] == SENT_AT + timedelta(minutes=20) and len(times) == 21
    opens = series["Opens (human)"]
    assert opens[2] == 2 and opens[7] == 1 and sum(opens) == 3
    assert breakdown_repair(campaign_id=campaign.pk) == {}  # the recount counts minutes the same way


@pytest.mark.django_db
def test_older_campaigns_are_drawn_per_hour_then_per_day():
    campaign, _ = campaign_with_recipients(1)
    Campaign.objects.filter(pk=campaign.pk).update(started_at=SENT_AT)
    campaign.refresh_from_db()
    breakdown_bump(
        campaign_id=campaign.pk,
        items=[
            ("hour:human_open", "2026-11-27T10", 3),
            ("hour:open", "2026-11-27T12", 5),
            ("hour:click", "2026-11-28T09", 1),
        ],
    )
    with time_machine.travel(SENT_AT + timedelta(hours=30), tick=False):
        times, series, step = activity_series(campaign)
    assert step.label == "hour" and len(times) == 31
    assert series["Opens (human)"][1] == 3 and series["Opens (all)"][3] == 5 and series["Clicks (all)"][24] == 1
    with time_machine.travel(SENT_AT + timedelta(days=12), tick=False):
        times, series, step = activity_series(campaign)
    assert step.label == "day" and len(times) == 2  # up to the last activity, not twelve empty days
    assert series["Opens (all)"] == [5, 0] and series["Clicks (all)"] == [0, 1]


def _texts(svg: str) -> list[tuple[float, str, str]]:
    """(x, anchor, text) of every <text> element of a chart."""
    found = []
    for attrs, body in re.findall(r"<text([^>]*)>(.*?)</text>", svg):
        x = float(re.search(r'x="([-\d.]+)"', attrs).group(1))
        anchor = (re.search(r'text-anchor="(\w+)"', attrs) or [None, "start"])[1]
        found.append((x, anchor, re.sub(r"<title>.*?</title>", "", body)))
    return found


def _assert_inside(svg: str) -> None:
    width = float(re.search(r'viewBox="0 0 ([\d.]+) ', svg).group(1))
    for x, anchor, text in _texts(svg):
        size = text_width(text.replace("&amp;", "&").replace("&#x27;", "'"))
        left = {"start": x, "middle": x - size / 2, "end": x - size}[anchor]
        assert left >= 0 and left + size <= width, (text, left, left + size, width)


def test_no_bar_chart_label_or_value_reaches_past_the_edges():
    reasons = [
        ("Undetermined/Undetermined", 12),
        ("Transient/AttachmentRejected", 4),
        ("Permanent/UnsubscribedRecipient", 1_234_567),
        ("https://club.example/a-very-long-page-about-the-autumn-fixtures-and-results", 3),
    ]
    svg = bar_chart(reasons, title="Bounce reasons")
    _assert_inside(svg)
    assert "Undetermined/Undetermined<" in svg  # shown whole when it fits
    assert "<title>https://club.example/a-very-long-page-about-the-autumn-fixtures-and-results</title>" in svg


def test_no_line_chart_label_reaches_past_the_edges():
    start = datetime(2026, 11, 27, 10, tzinfo=UTC)
    times = [start + timedelta(minutes=m) for m in range(7)]
    svg = line_chart(times, {"Opens (human)": [0, 1, 250_000, 2, 0, 0, 1]}, title="Activity", time_format="%d %b %H:%M")
    _assert_inside(svg)
    one = line_chart(times[:1], {"Opens (human)": [1]}, title="Activity", time_format="%H:%M")
    _assert_inside(one)
    assert one.count("<circle") == 1


def test_the_estimate_is_wider_than_the_default_linux_font():
    """The layout's text widths are at least DejaVu Sans's (the widest common sans-serif)."""
    from PIL import ImageFont

    font = ImageFont.truetype("DejaVuSans.ttf", 1100)
    for text in ("Undetermined/Undetermined", "WWW mmm @@@ 1,234,567", "iiii.llll", "Opens (human)", "Zürich ☃"):
        assert text_width(text) >= font.getlength(text) / 100, text
