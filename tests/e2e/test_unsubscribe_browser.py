"""A recipient unsubscribes in Chromium, then comes back to one list on the preference page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from audiences.models import Contact, Subscription
from campaigns.models import Recipient
from campaigns.snapshot import audience_snapshot
from campaigns.tokens import LinkPurpose, link_token
from tests.conftest import screenshot
from tests.factories import ContactListFactory, campaign_to, list_with_contacts

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_recipient_confirms_unsubscribing_then_picks_one_list_back(page, live_server):
    news = list_with_contacts(1, name="Newsletter")
    events = ContactListFactory(name="Events")
    contact = Contact.objects.get()
    Subscription.objects.create(contact=contact, contact_list=events)
    campaign = campaign_to(news)
    audience_snapshot(campaign_id=campaign.pk)
    token = link_token(recipient_id=Recipient.objects.get().pk, purpose=LinkPurpose.UNSUBSCRIBE)

    page.goto(f"{live_server.url}/u/{token}/")
    expect(page.get_by_role("heading", name="Unsubscribe")).to_be_visible()
    expect(page.get_by_text(contact.email)).to_be_visible()
    screenshot(page, "unsubscribe-confirm")
    assert Contact.objects.get().status == Contact.Status.ACTIVE  # the GET changed nothing

    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    screenshot(page, "unsubscribe-done")
    assert Contact.objects.get().status == Contact.Status.UNSUBSCRIBED
    assert set(Subscription.objects.values_list("status", flat=True)) == {"unsubscribed"}

    page.get_by_role("link", name="Manage your preferences").click()
    page.get_by_label("Events").check()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_text("Your preferences are saved.")).to_be_visible()
    screenshot(page, "unsubscribe-preferences")
    assert Contact.objects.get().status == Contact.Status.ACTIVE
    assert dict(Subscription.objects.values_list("contact_list__name", "status")) == {
        "Newsletter": "unsubscribed",
        "Events": "subscribed",
    }


def test_a_tampered_link_shows_a_plain_error_page(page, live_server):
    response = page.goto(f"{live_server.url}/u/1:forged-signature/")

    assert response.status == 404
    expect(page.get_by_role("heading", name="This link is not valid")).to_be_visible()
    assert "Traceback" not in page.content()
