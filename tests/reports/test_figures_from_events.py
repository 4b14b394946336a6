"""Figures, rates, breakdowns and the recipients table against a known set of signed events."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import call_command

from audiences.models import Segment
from reports.selectors import headline
from stats.breakdowns import breakdown_rows
from stats.models import CampaignStats
from tests.sns import campaign_with_recipients, new_id
from tests.tracking.records import event
from tracking.recount import breakdown_repair, stats_repair

pytestmark = pytest.mark.django_db

HUMAN = {"userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36"}
PROXY = {"userAgent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"}


@pytest.fixture
def known_campaign(notify):
    """10 recipients: 8 delivered, 1 hard bounce, 1 soft bounce; 1 complaint; opens and clicks."""
    campaign, recipients = campaign_with_recipients(10)
    addresses = [r.email for r in recipients]

    def send(kind, index, **detail):
        record = event(
            kind,
            address=addresses[index],
            message_id=recipients[index].ses_message_id,
            campaign=campaign.pk,
            recipient=recipients[index].pk,
            **detail,
        )
        message_id = detail.pop("sns_id", None) or new_id()
        response = notify(record, message_id=message_id)
        assert response.status_code == 200, response.content
        return message_id

    for index in range(8):
        send("Delivery", index)
    send("Bounce", 8)
    send("Bounce", 9, bounceType="Transient", bounceSubType="MailboxFull")
    send("Complaint", 7)
    send("Open", 0, **HUMAN)
    send("Open", 0, **HUMAN)  # a second open by the same person: 2 opens, 1 unique
    send("Open", 1, **PROXY)  # Gmail's image proxy: counted in all opens, not in human ones
    clicked = send("Click", 2, link="https://example.com/a", **HUMAN)
    notify(
        event(
            "Click",
            address=addresses[2],
            message_id=recipients[2].ses_message_id,
            campaign=campaign.pk,
            recipient=recipients[2].pk,
            link="https://example.com/a",
            **HUMAN,
        ),
        message_id=clicked,
    )  # replayed
    send("Click", 3, link="https://example.com/b", **HUMAN)
    send("Click", 3, link="https://example.com/a", **HUMAN)
    send("Open", 3, **HUMAN)
    return campaign, recipients


def test_figures_and_rates_follow_the_events(known_campaign):
    campaign, _ = known_campaign
    figures = headline(campaign)
    assert (figures["sent"], figures["delivered"], figures["bounced_hard"], figures["bounced_soft"]) == (10, 8, 1, 1)
    assert figures["complained"] == 1
    assert (figures["opens"], figures["human_opens"], figures["unique_opens"], figures["unique_human_opens"]) == (
        4, 3, 3, 2
    )  # fmt: skip
    assert (figures["clicks"], figures["unique_human_clicks"]) == (3, 2)
    rates = {rate.label: rate.percent for rate in figures["rates"]}
    assert rates["Delivery rate"] == "80.0%"
    assert rates["Bounce rate (hard)"] == "10.0%"
    assert rates["Soft bounce rate"] == "10.0%"
    assert rates["Complaint rate"] == "12.5%"
    assert rates["Open rate (human)"] == "25.0%"
    # Clickers 2 and 3 of the readers 0, 2 (a click with images off) and 3.
    assert rates["Click-to-open rate"] == "66.7%"


def test_breakdowns_count_links_bounce_reasons_and_domains(known_campaign):
    campaign, _ = known_campaign
    assert breakdown_rows(campaign_id=campaign.pk, kind="link:human_click") == [
        ("https://example.com/a", 2),
        ("https://example.com/b", 1),
    ]
    assert sorted(breakdown_rows(campaign_id=campaign.pk, kind="bounce:reason")) == [
        ("Permanent/General", 1),
        ("Transient/MailboxFull", 1),
    ]
    assert breakdown_rows(campaign_id=campaign.pk, kind="domain:delivered") == [("example.org", 8)]


def test_counters_equal_a_full_recount_and_the_command_repairs_drift(known_campaign):
    campaign, _ = known_campaign
    assert stats_repair(campaign_id=campaign.pk) == {}
    assert breakdown_repair(campaign_id=campaign.pk) == {}
    CampaignStats.objects.filter(campaign=campaign).update(delivered=99)
    breakdown_rows_before = breakdown_rows(campaign_id=campaign.pk, kind="link:human_click")
    from stats.models import CampaignBreakdown

    CampaignBreakdown.objects.filter(campaign=campaign, kind="link:human_click").update(count=0)
    call_command("tracking_recount", "--fix", stdout=io.StringIO())
    assert CampaignStats.objects.get(campaign=campaign).delivered == 8
    assert breakdown_rows(campaign_id=campaign.pk, kind="link:human_click") == breakdown_rows_before
    out = io.StringIO()
    call_command("tracking_recount", stdout=out)
    assert "equal a recount" in out.getvalue()


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [("delivered", 8), ("bounced", 2), ("complained", 1), ("opened", 2), ("clicked", 2), ("not_opened", 6), ("", 10)],
)
def test_the_recipients_table_filters_by_outcome(staff_client, known_campaign, outcome, expected):
    campaign, _ = known_campaign
    response = staff_client.get(f"/reports/campaigns/{campaign.pk}/recipients/export/?outcome={outcome}")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) - 1 == expected


def test_the_table_page_searches_and_shows_last_events(staff_client, known_campaign):
    campaign, recipients = known_campaign
    response = staff_client.get(
        f"/reports/campaigns/{campaign.pk}/recipients/?q={recipients[3].email}", headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert recipients[3].email in body and recipients[4].email not in body
    assert "open" in body  # its last event
    timeline = staff_client.get(f"/reports/recipients/{recipients[3].pk}/timeline/").content.decode()
    assert timeline.count("<li>") == 4 and "https://example.com/b" in timeline


def test_export_escapes_values_a_spreadsheet_would_run(staff_client, known_campaign):
    campaign, recipients = known_campaign
    recipients[5].error = '=HYPERLINK("http://evil")'
    recipients[5].save(update_fields=["error"])
    response = staff_client.get(f"/reports/campaigns/{campaign.pk}/recipients/export/")
    content = b"".join(response.streaming_content).decode()
    assert "'=HYPERLINK" in content and "\n=HYPERLINK" not in content


def test_a_filtered_view_becomes_a_segment_for_the_next_campaign(staff_client, known_campaign):
    campaign, recipients = known_campaign
    response = staff_client.post(f"/reports/campaigns/{campaign.pk}/recipients/segment/", {"outcome": "not_opened"})
    assert response.status_code == 302
    segment = Segment.objects.get()
    assert segment.rules == [{"field": "engagement", "operator": "not_opened", "value": {"campaign": campaign.pk}}]
    from audiences.models import Contact
    from audiences.segments import segment_filter

    assert not Contact.objects.filter(segment_filter(segment), pk=recipients[0].contact_id).exists()
    assert Contact.objects.filter(segment_filter(segment), pk=recipients[5].contact_id).exists()


def test_recipients_who_unsubscribed_through_the_link_are_listed(client, staff_client, known_campaign):
    from campaigns.tokens import recipient_token

    campaign, recipients = known_campaign
    assert client.post(f"/u/{recipient_token(recipients[4].pk)}/").status_code == 200
    response = staff_client.get(f"/reports/campaigns/{campaign.pk}/recipients/export/?outcome=unsubscribed")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row[0] for row in rows[1:]] == [recipients[4].email]
    assert headline(campaign)["unsubscribed"] == 1


def test_clicked_link_x_becomes_a_segment_of_exactly_those_contacts(staff_client, known_campaign):
    from audiences.models import Contact
    from audiences.segments import segment_filter

    campaign, recipients = known_campaign
    staff_client.post(
        f"/reports/campaigns/{campaign.pk}/recipients/segment/", {"outcome": "clicked", "link": "https://example.com/b"}
    )
    segment = Segment.objects.get()
    assert set(Contact.objects.filter(segment_filter(segment)).values_list("pk", flat=True)) == {
        recipients[3].contact_id
    }
