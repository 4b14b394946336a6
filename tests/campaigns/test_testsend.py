"""Test sends through post_office + django-ses to the local SES server."""

from __future__ import annotations

import email
from email import policy

import pytest
from django.urls import reverse
from post_office.models import STATUS, Email

from campaigns.layouts import default_layout
from campaigns.models import Recipient
from tests.factories import CampaignFactory, campaign_to, list_with_contacts
from tracking.models import CampaignStats

pytestmark = pytest.mark.django_db


def parsed(raw: dict):
    return email.message_from_string(raw["raw_data"], policy=policy.default)


def test_a_test_send_reaches_ses_with_a_test_subject_and_no_campaign_figures(ses, staff_client):
    campaign = CampaignFactory(subject="Hello {{ first_name }}", preheader="This week", layout=default_layout())
    stats, _ = CampaignStats.objects.get_or_create(campaign=campaign)

    response = staff_client.post(
        reverse("compose:test_send", args=[campaign.pk]), {"addresses": "me@example.org,\n You@Example.org"}
    )

    assert response.status_code == 302
    received = sorted(ses.sent(), key=lambda raw: parsed(raw)["To"])
    assert [parsed(raw)["To"] for raw in received] == ["me@example.org", "you@example.org"]
    message = parsed(received[0])
    assert message["Subject"] == "[TEST] Hello Alex"
    assert message["X-SES-MESSAGE-TAGS"] == f"test_send={campaign.pk}"  # no campaign= tag: not counted
    html = message.get_body(("html",)).get_content()
    assert "This week" in html and "Hi Alex," in html
    assert "Hi Alex," in message.get_body(("plain",)).get_content()
    assert not Recipient.objects.filter(campaign=campaign).exists()
    stats.refresh_from_db()
    assert stats.sent == 0
    outbox = Email.objects.filter(to="me@example.org").get()
    assert outbox.status == STATUS.sent
    assert outbox.logs.get().message == received[0]["id"]


def test_it_renders_as_the_chosen_recipient(ses, staff_client):
    contact_list = list_with_contacts(2)
    campaign = campaign_to(contact_list, subject="Hi {{ first_name }}")
    chosen = contact_list.subscriptions.first().contact

    staff_client.post(
        reverse("compose:test_send", args=[campaign.pk]), {"addresses": "me@example.org", "contact": chosen.pk}
    )

    (raw,) = ses.sent()
    assert parsed(raw)["Subject"] == f"[TEST] Hi {chosen.first_name}"


def test_more_than_ten_addresses_are_refused(ses, staff_client):
    campaign = CampaignFactory()
    addresses = ", ".join(f"person{n}@example.org" for n in range(11))

    response = staff_client.post(
        reverse("compose:test_send", args=[campaign.pk]), {"addresses": addresses}, follow=True
    )

    assert "At most 10 addresses per test send (11 typed)." in response.content.decode()
    assert ses.sent() == []


def test_invalid_addresses_are_named_and_nothing_is_sent(ses, staff_client):
    campaign = CampaignFactory()

    response = staff_client.post(
        reverse("compose:test_send", args=[campaign.pk]), {"addresses": "ok@example.org, not-an-address"}, follow=True
    )

    assert "Not valid email addresses: not-an-address" in response.content.decode()
    assert ses.sent() == []


def test_an_address_ses_refuses_is_reported(ses, staff_client, settings):
    settings.SENDER_ADDRESSES = ["news@cobalt.example"]
    campaign = CampaignFactory(from_email="news@unverified.example")

    response = staff_client.post(
        reverse("compose:test_send", args=[campaign.pk]), {"addresses": "me@example.org"}, follow=True
    )

    assert "Not sent to me@example.org: SES refused it" in response.content.decode()
    assert Email.objects.get().status == STATUS.failed
