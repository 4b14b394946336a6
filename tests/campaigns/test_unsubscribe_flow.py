"""One-click unsubscribe (RFC 8058) without a browser, the confirm page, tokens and the headers SES got."""

from __future__ import annotations

import email
from email import policy
from urllib.parse import urlparse

import pytest
from django.test import Client

from audiences.models import Contact, Subscription, Suppression
from campaigns.delivery.engine import campaign_dispatch
from campaigns.models import Recipient
from campaigns.services import campaign_send_now
from campaigns.snapshot import audience_snapshot
from campaigns.tokens import LinkPurpose, LinkToken, link_token, link_token_read
from stats.models import CampaignStats
from tests.factories import campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db


def unsubscribe_token(recipient: Recipient) -> str:
    return link_token(recipient_id=recipient.pk, purpose=LinkPurpose.UNSUBSCRIBE)


def preferences_token(recipient: Recipient) -> str:
    return link_token(recipient_id=recipient.pk, purpose=LinkPurpose.PREFERENCES)


@pytest.fixture
def recipient() -> Recipient:
    contact_list = list_with_contacts(2)
    campaign = campaign_to(contact_list)
    audience_snapshot(campaign_id=campaign.pk)
    return Recipient.objects.order_by("pk").first()


def test_a_one_click_post_without_csrf_token_unsubscribes_at_once(recipient):
    client = Client(enforce_csrf_checks=True)

    response = client.post(
        f"/u/{unsubscribe_token(recipient)}/",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    contact = Contact.objects.get(pk=recipient.contact_id)
    assert contact.status == Contact.Status.UNSUBSCRIBED
    assert set(contact.subscriptions.values_list("status", flat=True)) == {Subscription.Status.UNSUBSCRIBED}
    assert CampaignStats.objects.get(campaign_id=recipient.campaign_id).unsubscribed == 1
    other = Contact.objects.exclude(pk=contact.pk).get()
    assert other.status == Contact.Status.ACTIVE


def test_a_second_one_click_post_changes_nothing_more(recipient):
    client = Client(enforce_csrf_checks=True)
    url = f"/u/{unsubscribe_token(recipient)}/"
    client.post(url)

    response = client.post(url)

    assert response.status_code == 200
    assert CampaignStats.objects.get(campaign_id=recipient.campaign_id).unsubscribed == 1


def test_a_get_shows_a_confirm_button_and_changes_nothing(recipient):
    response = Client().get(f"/u/{unsubscribe_token(recipient)}/")

    assert response.status_code == 200
    assert b'<form method="post"' in response.content
    assert recipient.email.encode() in response.content
    assert Contact.objects.get(pk=recipient.contact_id).status == Contact.Status.ACTIVE
    assert not Subscription.objects.filter(status=Subscription.Status.UNSUBSCRIBED).exists()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),
        lambda token: token.rsplit(":", 1)[0],
        lambda token: "zzz:" + token.split(":", 1)[1],
        lambda token: "not-a-token",
        lambda token: token + "%00",
    ],
    ids=["signature-changed", "signature-cut", "other-recipient-id", "garbage", "nul"],
)
def test_a_tampered_token_gets_a_plain_404_that_reveals_nobody(recipient, mangle):
    other = Recipient.objects.exclude(pk=recipient.pk).get()

    for url in (
        f"/u/{mangle(unsubscribe_token(recipient))}/",
        f"/u/{mangle(preferences_token(recipient))}/preferences/",
    ):
        for method in ("get", "post"):
            response = getattr(Client(raise_request_exception=False), method)(url)
            assert response.status_code == 404
            body = response.content.decode()
            assert "This link is not valid" in body
            assert "Traceback" not in body
            assert recipient.email not in body and other.email not in body
    assert Contact.objects.filter(status=Contact.Status.ACTIVE).count() == 2


def test_the_preference_page_lets_an_unsubscribed_contact_come_back_to_one_list(recipient):
    second = list_with_contacts(0, name="Events")
    Subscription.objects.create(contact_id=recipient.contact_id, contact_list=second)
    client = Client(enforce_csrf_checks=False)
    client.post(f"/u/{unsubscribe_token(recipient)}/")

    response = client.post(f"/u/{preferences_token(recipient)}/preferences/", {"lists": [second.pk]})

    assert response.status_code == 302
    contact = Contact.objects.get(pk=recipient.contact_id)
    assert contact.status == Contact.Status.ACTIVE
    statuses = dict(contact.subscriptions.values_list("contact_list__name", "status"))
    assert statuses == {"Events": "subscribed", recipient.campaign.include_lists.get().name: "unsubscribed"}


def test_the_message_ses_received_carries_one_click_headers_whose_post_unsubscribes(
    ses, settings, django_capture_on_commit_callbacks
):
    settings.SITE_URL = "https://mail.cobalt.example"
    campaign = campaign_to(list_with_contacts(1))
    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=60) == "finished"

    (raw,) = ses.sent()
    message = email.message_from_string(raw["raw_data"], policy=policy.default)
    recipient = Recipient.objects.get()
    header = str(message["List-Unsubscribe"]).strip()
    assert header.startswith("<https://mail.cobalt.example/u/") and header.endswith("/>")
    token = header.removeprefix("<https://mail.cobalt.example/u/").removesuffix("/>")
    assert link_token_read(token, purpose=LinkPurpose.UNSUBSCRIBE) == LinkToken(recipient_id=recipient.pk)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # What a mailbox provider does with the header: POST the body RFC 8058 prescribes.
    path = urlparse(header.strip("<>")).path
    response = Client(enforce_csrf_checks=True).post(
        path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert Contact.objects.get().status == Contact.Status.UNSUBSCRIBED


def test_unsubscribing_after_the_contact_was_deleted_suppresses_the_address(recipient):
    address = recipient.email
    Contact.objects.filter(pk=recipient.contact_id).delete()

    response = Client(enforce_csrf_checks=True).post(f"/u/{unsubscribe_token(recipient)}/")

    assert response.status_code == 200
    entry = Suppression.objects.get()
    assert (entry.email, entry.reason) == (address, Suppression.Reason.UNSUBSCRIBED)
