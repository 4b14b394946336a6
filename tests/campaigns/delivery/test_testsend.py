"""Test sends through post_office + django-ses to the local SES server."""

from __future__ import annotations

import email
from email import policy

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from post_office.models import STATUS, Email

from campaigns.composer.layouts import default_layout
from campaigns.delivery.engine import campaign_dispatch
from campaigns.models import Recipient
from campaigns.services import campaign_send_now
from campaigns.snapshot import audience_snapshot
from stats.models import CampaignStats
from tests.factories import CampaignFactory, campaign_to, list_with_contacts

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


def test_a_test_send_is_the_recipients_message_but_for_its_subject_tag_and_links(
    ses, staff_client, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path / "media"
    contact_list = list_with_contacts(1)
    campaign = campaign_to(contact_list, subject="Hi {{ first_name }}", reply_to="Desk <desk@cobalt.example>")
    programme = SimpleUploadedFile("programme.pdf", b"%PDF-1.4\n%%EOF\n")
    staff_client.post(reverse("compose:attachments", args=[campaign.pk]), {"file": programme})
    contact = contact_list.subscriptions.get().contact

    staff_client.post(
        reverse("compose:test_send", args=[campaign.pk]), {"addresses": "me@example.org", "contact": contact.pk}
    )
    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=60) == "finished"

    by_address = {parsed(raw)["To"]: parsed(raw) for raw in ses.sent()}
    test, real = by_address["me@example.org"], by_address[contact.email]
    assert test["Subject"] == "[TEST] " + real["Subject"]
    assert (test["From"], test["Reply-To"]) == (real["From"], real["Reply-To"])
    # One builder: the same headers (the inert test link offers no one-click unsubscribe), the same
    # parts in the same encodings, the same attachment.
    assert set(real.keys()) - set(test.keys()) == {"List-Unsubscribe-Post"}
    assert set(test.keys()) <= set(real.keys())
    assert shape(test) == shape(real)
    assert [part.get_content() for part in test.iter_attachments()] == [b"%PDF-1.4\n%%EOF\n"]
    assert [part.get_filename() for part in real.iter_attachments()] == ["programme.pdf"]


def shape(message) -> list[tuple[str, str | None]]:
    return [(part.get_content_type(), part["Content-Transfer-Encoding"]) for part in message.walk()]
