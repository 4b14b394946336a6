"""Each link in an email opens its own page only: the view-online link (forwarded, posted) grants
nothing else, and the unsubscribe link keeps working well past the 60 days RFC 8058 expects."""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from datetime import timedelta
from email import policy
from urllib.parse import urlparse

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from audiences.models import Contact
from campaigns.delivery.engine import campaign_dispatch
from campaigns.models import Recipient
from campaigns.services import campaign_send_now
from campaigns.snapshot import audience_snapshot
from campaigns.tokens import recipient_token
from tests.factories import campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db

BODY = (
    "<p>Hello {{ first_name }}, the season starts soon.</p>"
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="{{ preferences_url }}">Preferences</a> '
    '<a href="{{ view_online_url }}">View online</a></p>'
)


@dataclass
class SentLinks:
    recipient: Recipient
    unsubscribe: str  # paths, as a mailbox provider or a browser would request them
    preferences: str
    view_online: str
    header: str  # List-Unsubscribe


def path_of(url: str) -> str:
    return urlparse(url).path


@pytest.fixture
def sent(ses, settings, django_capture_on_commit_callbacks) -> SentLinks:
    """One campaign sent through the engine to the local SES; the links as the recipient got them."""
    settings.SITE_URL = "https://mail.cobalt.example"
    campaign = campaign_to(list_with_contacts(1), html_body=BODY)
    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=60) == "finished"
    (raw,) = ses.sent()
    message = email.message_from_string(raw["raw_data"], policy=policy.default)
    html = message.get_body(("html",)).get_content()
    links = dict((label, href) for href, label in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', html))
    return SentLinks(
        recipient=Recipient.objects.get(),
        unsubscribe=path_of(links["Unsubscribe"]),
        preferences=path_of(links["Preferences"]),
        view_online=path_of(links["View online"]),
        header=path_of(str(message["List-Unsubscribe"]).strip().strip("<>")),
    )


def token_of(path: str) -> str:
    return path.strip("/").split("/")[1]


def assert_refused(response, status: int = 404) -> None:
    assert response.status_code == status
    assert "This link is not valid" in response.content.decode()


def still_active(recipient: Recipient) -> bool:
    return Contact.objects.get(pk=recipient.contact_id).status == Contact.Status.ACTIVE


def test_the_email_carries_a_different_token_for_each_link(sent):
    tokens = {token_of(sent.unsubscribe), token_of(sent.preferences), token_of(sent.view_online)}

    assert len(tokens) == 3
    assert sent.header == sent.unsubscribe
    assert sent.preferences == f"/u/{token_of(sent.preferences)}/preferences/"


def test_the_view_online_link_opens_the_email_and_nothing_else(sent):
    client = Client(raise_request_exception=False)
    online = token_of(sent.view_online)

    page = client.get(sent.view_online)

    assert page.status_code == 200
    html = page.content.decode()
    assert "the season starts soon" in html
    assert sent.recipient.email not in html
    # Its own unsubscribe and preference links lead to the "not valid" page, changing nothing.
    for path in (path_of(href) for href in re.findall(r'href="([^"]+)"', html) if "/u/" in href):
        assert_refused(client.get(path))
        assert_refused(client.post(path))
    # Nor does its token open the other pages.
    assert_refused(client.get(f"/u/{online}/"))
    assert_refused(
        client.post(
            f"/u/{online}/", data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
        )
    )
    assert_refused(client.get(f"/u/{online}/preferences/"))
    assert_refused(client.post(f"/u/{online}/preferences/", {"lists": []}))
    assert still_active(sent.recipient)


def test_the_preference_and_unsubscribe_tokens_open_only_their_own_page(sent):
    client = Client(raise_request_exception=False)
    preferences, unsubscribe = token_of(sent.preferences), token_of(sent.unsubscribe)

    assert client.get(sent.preferences).status_code == 200
    assert client.get(sent.unsubscribe).status_code == 200
    assert_refused(client.get(f"/m/{preferences}/"))
    assert_refused(client.post(f"/u/{preferences}/"))
    assert_refused(client.get(f"/m/{unsubscribe}/"))
    assert_refused(client.get(f"/u/{unsubscribe}/preferences/"))
    assert still_active(sent.recipient)


def test_the_unsubscribe_link_still_works_61_days_after_sending(sent):
    with time_machine.travel(timezone.now() + timedelta(days=61)):
        response = Client(enforce_csrf_checks=True).post(
            sent.header, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
        )

    assert response.status_code == 200
    assert not still_active(sent.recipient)


def test_unsubscribe_and_preference_links_expire_after_unsubscribe_token_days_but_the_web_copy_does_not(sent):
    client = Client(raise_request_exception=False)
    with time_machine.travel(timezone.now() + timedelta(days=366)):
        unsubscribe = client.post(sent.unsubscribe)
        preferences = client.get(sent.preferences)
        online = client.get(sent.view_online)

    for response in (unsubscribe, preferences):
        assert response.status_code == 410
        assert "This link has expired" in response.content.decode()
    assert online.status_code == 200
    assert still_active(sent.recipient)


def test_a_link_sent_before_one_token_per_page_still_unsubscribes_but_opens_no_preferences(sent):
    legacy = recipient_token(sent.recipient.pk)  # one token for all three pages, as emails sent before carry
    client = Client(raise_request_exception=False)

    assert_refused(client.get(f"/u/{legacy}/preferences/"))
    assert client.get(f"/m/{legacy}/").status_code == 200
    confirm = client.get(f"/u/{legacy}/").content.decode()
    # It may come from a forwarded web copy: the address is masked and preferences are not offered.
    assert sent.recipient.email not in confirm
    assert "/preferences/" not in confirm
    assert client.post(f"/u/{legacy}/").status_code == 200
    assert not still_active(sent.recipient)


def test_a_link_sent_before_one_token_per_page_expires_like_the_new_ones(sent):
    legacy = recipient_token(sent.recipient.pk)

    with time_machine.travel(timezone.now() + timedelta(days=366)):
        response = Client().post(f"/u/{legacy}/")

    assert response.status_code == 410
    assert still_active(sent.recipient)
