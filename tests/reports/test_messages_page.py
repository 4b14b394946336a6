"""The staff page of single messages (reports:messages): "did Ann's confirmation go out?"."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, CampaignTemplate, Recipient
from organisations.models import Membership, Organisation, Role
from stats.models import CampaignStats

pytestmark = pytest.mark.django_db

URL = reverse("reports:messages")


def template_of(organisation: Organisation, name: str = "Entry confirmation") -> CampaignTemplate:
    return CampaignTemplate.objects.create(
        organisation=organisation, name=name, subject="Your entry", html_body="<p>Hi {{ first_name }}</p>"
    )


def message_to(template: CampaignTemplate, email: str) -> Campaign:
    with transaction.atomic():
        return services.message_send(template=template, email=email, from_email=settings.SENDER_ADDRESSES[0])


def recipient_set(message: Campaign, **fields) -> None:
    Recipient.objects.filter(campaign=message).update(**fields)


def stats_set(message: Campaign, **counters) -> None:
    CampaignStats.objects.filter(campaign=message).update(**counters)


def rows_of(response) -> list[str]:
    """The table's message rows as text, one string per row, tags removed (not the "none found" row)."""
    body = response.content.decode().split("<tbody", 1)[1].split("</tbody>", 1)[0]
    rows = [row for row in re.findall(r"<tr\b.*?</tr>", body, flags=re.DOTALL) if "colspan" not in row]
    return [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in rows]


@pytest.fixture
def template(organisation) -> CampaignTemplate:
    return template_of(organisation)


@pytest.fixture
def viewer_client(client, member_user, organisation):
    Membership.objects.create(user=member_user, organisation=organisation, role=Role.VIEWER)
    client.force_login(member_user)
    return client


def test_it_lists_the_organisations_messages_newest_first_with_a_link_to_each_report(viewer_client, template):
    first = message_to(template, "ann@example.org")
    Campaign.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=1))
    second = message_to(template, "bob@example.org")

    response = viewer_client.get(URL)

    assert response.status_code == 200
    rows = rows_of(response)
    assert len(rows) == 2
    assert rows[0].startswith(timezone.localtime(second.created_at).strftime("%-d %b %Y %H:%M"))
    assert "bob@example.org Entry confirmation" in rows[0]
    assert "ann@example.org" in rows[1]
    assert f'href="{reverse("reports:campaign", args=[first.pk])}"' in response.content.decode()
    assert viewer_client.get(reverse("reports:campaign", args=[first.pk])).status_code == 200


def test_it_leaves_out_another_organisations_messages_and_the_campaigns(viewer_client, template, organisation):
    other = Organisation.objects.create(name="Chess club", slug="chess")
    message_to(template_of(other, "Chess receipt"), "carol@example.org")
    Campaign.objects.create(organisation=organisation, name="Spring newsletter", subject="News", html_body="<p>x</p>")
    message_to(template, "ann@example.org")

    content = viewer_client.get(URL).content.decode()

    assert "ann@example.org" in content
    assert "carol@example.org" not in content
    assert "Chess receipt" not in content
    assert "Spring newsletter" not in content


def test_it_says_each_sending_status_in_words(viewer_client, template):
    message_to(template, "queued@example.org")
    sending = message_to(template, "sending@example.org")
    recipient_set(sending, status=Recipient.Status.SENDING)
    sent = message_to(template, "sent@example.org")
    sent_at = timezone.now()
    recipient_set(sent, status=Recipient.Status.SENT, sent_at=sent_at)
    failed = message_to(template, "failed@example.org")
    recipient_set(failed, status=Recipient.Status.FAILED, error="SES refused it: MessageRejected")
    skipped = message_to(template, "skipped@example.org")
    recipient_set(skipped, status=Recipient.Status.SKIPPED, error="on the suppression list")

    rows = {row.split(" ")[4]: row for row in rows_of(viewer_client.get(URL))}

    assert "Waiting to send" in rows["queued@example.org"]
    assert "Waiting to send" in rows["sending@example.org"]
    assert f"Sent {timezone.localtime(sent_at).strftime('%-d %b %Y %H:%M')}" in rows["sent@example.org"]
    assert "Failed: SES refused it: MessageRejected" in rows["failed@example.org"]
    assert "Not sent: on the suppression list" in rows["skipped@example.org"]


def test_it_says_what_ses_reported_from_the_counters(viewer_client, template):
    message_to(template, "nothing@example.org")
    delivered = message_to(template, "delivered@example.org")
    stats_set(delivered, delivered=1, unique_opens=1, unique_clicks=1)
    bounced = message_to(template, "bounced@example.org")
    stats_set(bounced, bounced_soft=1)
    complained = message_to(template, "complained@example.org")
    stats_set(complained, delivered=1, complained=1)

    rows = {row.split(" ")[4]: row for row in rows_of(viewer_client.get(URL))}

    assert rows["nothing@example.org"].endswith("Nothing yet Details")
    assert rows["delivered@example.org"].endswith("Delivered, Opened, Clicked Details")
    assert rows["bounced@example.org"].endswith("Bounced Details")
    assert rows["complained@example.org"].endswith("Delivered, Marked as spam Details")


def test_outside_text_is_shown_as_text_not_markup(viewer_client, organisation):
    message = message_to(template_of(organisation, "<b>Receipt</b>"), "ann@example.org")
    recipient_set(message, status=Recipient.Status.FAILED, error="<script>alert(1)</script>")

    content = viewer_client.get(URL).content.decode()

    assert "&lt;b&gt;Receipt&lt;/b&gt;" in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<script>alert" not in content


def test_it_explains_where_messages_come_from_when_there_are_none(viewer_client, organisation):
    Campaign.objects.create(organisation=organisation, name="Spring newsletter", subject="News", html_body="<p>x</p>")

    content = viewer_client.get(URL).content.decode()

    assert "No single messages yet. Programs send them through the API with a sender key" in content
    assert "(Organisation → API keys)" in content
    assert "<table" not in content


def test_it_finds_messages_by_the_address_or_its_beginning_in_any_case(viewer_client, template):
    message_to(template, "ann.lee@example.org")
    message_to(template, "annabel@example.org")
    message_to(template, "bob@example.org")

    def found(query: str) -> list[str]:
        return sorted(row.split(" ")[4] for row in rows_of(viewer_client.get(URL, {"q": query})))

    assert found("ANN") == ["ann.lee@example.org", "annabel@example.org"]
    assert found("Ann.Lee@Example.org") == ["ann.lee@example.org"]
    assert found(" bob@example.org ") == ["bob@example.org"]
    assert found("lee@") == []  # the beginning of an address, not any part of it
    assert found("%") == []
    nothing = viewer_client.get(URL, {"q": "zed"}).content.decode()
    assert "No single message to an address starting with “zed”." in nothing


def test_a_search_from_the_box_answers_with_the_table_alone(viewer_client, template):
    message_to(template, "ann@example.org")

    response = viewer_client.get(URL, {"q": "ann"}, headers={"HX-Request": "true"})

    content = response.content.decode()
    assert content.lstrip().startswith('<div id="messages">')
    assert "ann@example.org" in content
    assert "<nav" not in content.split('<div id="messages">', 1)[0]


def test_it_pages_fifty_messages_at_a_time(viewer_client, template):
    for number in range(51):
        message_to(template, f"member{number:02d}@example.org")

    first = viewer_client.get(URL)
    second = viewer_client.get(URL, {"page": 2})

    assert len(rows_of(first)) == 50
    assert 'rel="next"' in first.content.decode()
    assert rows_of(second) == [row for row in rows_of(second) if "member00@example.org" in row]
    assert len(rows_of(second)) == 1
    assert 'rel="next"' not in second.content.decode()


def test_it_needs_a_login(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_reports_page_links_to_it(viewer_client):
    assert f'href="{URL}"' in viewer_client.get(reverse("reports:index")).content.decode()
