"""The recipient pages wear the campaign's layout; an unsubscribed recipient is told so and may come back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from audiences.models import Contact, Subscription, Suppression
from campaigns.composer.layouts import layout_make_default
from campaigns.models import Layout, Recipient
from campaigns.snapshot import audience_snapshot
from campaigns.tokens import LinkPurpose, link_token
from campaigns.unsubscribe import (
    layout_page_colours,
    page_branding,
    unsubscribe_recipient,
    web_copy_page,
)
from common.colours import contrast_ratio
from stats.models import CampaignStats
from tests.factories import ContactListFactory, LayoutFactory, campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db


@pytest.fixture
def layout() -> Layout:
    return LayoutFactory(
        name="Riverside",
        primary_colour="#0b6e4f",
        background_colour="#eef6f2",
        text_colour="#1b2a24",
        logo_url="https://riverside.example.org/logo.png",
    )


@pytest.fixture
def recipient(layout) -> Recipient:
    newsletter = list_with_contacts(1, name="Newsletter")
    contact = Contact.objects.get()
    Subscription.objects.create(contact=contact, contact_list=ContactListFactory(name="Regatta"))
    campaign = campaign_to(
        newsletter, from_email='"Riverside Rowing" <news@riverside.example.org>', layout=layout, subject="Spring news"
    )
    audience_snapshot(campaign_id=campaign.pk)
    return Recipient.objects.get()


def url(recipient: Recipient, purpose: LinkPurpose) -> str:
    token = link_token(recipient_id=recipient.pk, purpose=purpose)
    path = {LinkPurpose.UNSUBSCRIBE: "/u/{}/", LinkPurpose.PREFERENCES: "/u/{}/preferences/"}.get(purpose, "/m/{}/")
    return path.format(token)


def subscriptions(contact_id: int) -> dict[str, str]:
    return dict(Subscription.objects.filter(contact_id=contact_id).values_list("contact_list__name", "status"))


# --- branding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", [LinkPurpose.UNSUBSCRIBE, LinkPurpose.PREFERENCES])
def test_the_unsubscribe_and_preference_pages_show_the_campaigns_logo_colours_and_sender(client, recipient, purpose):
    response = client.get(url(recipient, purpose))

    page = response.content.decode()
    assert response.status_code == 200
    # The logo is decoration beside the sender's name, which screen readers read once.
    assert '<img class="public-logo" src="https://riverside.example.org/logo.png" alt="">' in page
    assert '<p class="public-sender">Riverside Rowing</p>' in page
    assert "Riverside Rowing" in page.split("<title>")[1].split("</title>")[0]
    # The colours come as a style sheet of the layout's own (our pages carry no inline style).
    sheet_url = re.search(r'href="(/brand/\d+\.css\?v=\d+)"', page).group(1)
    sheet = client.get(sheet_url)
    assert sheet["Content-Type"] == "text/css; charset=utf-8"
    css = sheet.content.decode()
    assert "--brand-primary: #0b6e4f;" in css and "--brand-background: #eef6f2;" in css
    assert "--brand-text: #1b2a24;" in css and "--brand-on-primary: #ffffff;" in css


def test_without_a_logo_the_header_names_the_sender(client, recipient, layout):
    Layout.objects.filter(pk=layout.pk).update(logo_url="")

    page = client.get(url(recipient, LinkPurpose.UNSUBSCRIBE)).content.decode()

    assert '<p class="public-sender">Riverside Rowing</p>' in page


def test_layout_colours_are_made_readable_and_only_hex_colours_reach_the_style_sheet(recipient, layout):
    Layout.objects.filter(pk=layout.pk).update(
        primary_colour="#9ecbff", text_colour="#cccccc", background_colour="red;}a{"
    )
    branding = layout_page_colours(Layout.objects.get(pk=layout.pk))

    # A light primary colour gets dark text; pale grey text is darkened until it reads on white.
    assert branding.on_primary == "#1a1a1a" and branding.primary == "#9ecbff"
    assert contrast_ratio(branding.primary, branding.on_primary) >= 4.5
    assert contrast_ratio(branding.text, "#ffffff") >= 4.5 and branding.text != "#cccccc"
    assert contrast_ratio(branding.link, "#ffffff") >= 4.5
    assert branding.background == "#f4f5f7"  # not a colour: the default


def test_a_mid_tone_primary_colour_is_darkened_under_white_text(recipient, layout):
    # Neither white (4.2:1) nor near-black (4.1:1) text reads on it at WCAG AA.
    Layout.objects.filter(pk=layout.pk).update(primary_colour="#4a7fb0")
    branding = layout_page_colours(Layout.objects.get(pk=layout.pk))

    assert branding.on_primary == "#ffffff" and branding.primary != "#4a7fb0"
    assert contrast_ratio(branding.primary, "#ffffff") >= 4.5


def test_a_campaign_without_a_layout_uses_the_default_layout(client, recipient, layout):
    Layout.objects.filter(pk=layout.pk).update(primary_colour="#5b2c83")
    layout_make_default(layout=Layout.objects.get(pk=layout.pk))
    recipient.campaign.layout = None
    recipient.campaign.save(update_fields=["layout"])

    page = client.get(url(recipient, LinkPurpose.UNSUBSCRIBE)).content.decode()

    assert f'href="/brand/{layout.pk}.css?v=' in page
    assert page_branding(recipient.campaign).layout == layout


def test_the_view_online_page_is_the_branded_email_with_the_subject_as_its_title(client, recipient):
    response = client.get(url(recipient, LinkPurpose.VIEW_ONLINE))

    page = response.content.decode()
    assert '<img src="https://riverside.example.org/logo.png" alt="Riverside Rowing"' in page
    assert "<title>Spring news</title>" in page


def test_a_web_copy_without_a_layout_becomes_a_whole_document_with_language_and_title():
    page = web_copy_page("<p>Hello</p>", title="News & views")

    assert page.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert "<title>News &amp; views</title>" in page and "<p>Hello</p>" in page
    assert web_copy_page("<html><body>x</body></html>", title="T") == (
        '<html lang="en"><head><title>T</title></head><body>x</body></html>'
    )
    kept = '<html lang="de"><head><title>Eigener Titel</title></head><body>x</body></html>'
    assert web_copy_page(kept, title="T") == kept


# --- coming back --------------------------------------------------------------------------------


def test_an_unsubscribed_recipient_who_opens_the_link_again_is_told_and_offered_to_resubscribe(client, recipient):
    unsubscribe_recipient(recipient=recipient)
    link = url(recipient, LinkPurpose.UNSUBSCRIBE)  # its token is dated: the form posts back the same one

    response = client.get(link)

    page = response.content.decode()
    assert "You are unsubscribed" in page
    assert "Stop receiving emails" not in page
    assert f'action="{link}resubscribe/"' in page
    assert "Subscribe me again" in page and "csrfmiddlewaretoken" in page


def test_resubscribing_puts_the_contact_back_on_the_campaigns_lists_only(recipient):
    unsubscribe_recipient(recipient=recipient)
    client = Client(enforce_csrf_checks=True)
    unsubscribe_url = url(recipient, LinkPurpose.UNSUBSCRIBE)
    client.get(unsubscribe_url)  # sets the CSRF cookie

    response = client.post(
        unsubscribe_url + "resubscribe/", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value}, follow=True
    )

    assert response.status_code == 200
    assert response.redirect_chain[0][0].endswith("/preferences/")
    assert "Welcome back: you are subscribed again to Newsletter." in response.content.decode()
    assert Contact.objects.get().status == Contact.Status.ACTIVE
    # The campaign went to Newsletter; Regatta, left in the same unsubscribe, stays left.
    assert subscriptions(recipient.contact_id) == {"Newsletter": "subscribed", "Regatta": "unsubscribed"}
    # The unsubscribe still counts in the campaign's figures: it happened.
    assert CampaignStats.objects.get(campaign_id=recipient.campaign_id).unsubscribed == 1


def test_resubscribing_needs_the_csrf_token(recipient):
    unsubscribe_recipient(recipient=recipient)

    response = Client(enforce_csrf_checks=True).post(url(recipient, LinkPurpose.UNSUBSCRIBE) + "resubscribe/")

    assert response.status_code == 403
    assert Contact.objects.get().status == Contact.Status.UNSUBSCRIBED


@pytest.mark.parametrize(
    ("reason", "explained"),
    [
        (Suppression.Reason.HARD_BOUNCE, "could not be delivered"),
        (Suppression.Reason.COMPLAINT, "marked as spam"),
        (Suppression.Reason.MANUAL, "do-not-send list"),
    ],
)
def test_a_suppressed_address_is_not_offered_to_resubscribe_and_a_post_changes_nothing(
    client, recipient, reason, explained
):
    unsubscribe_recipient(recipient=recipient)
    Suppression.objects.create(email=recipient.email, reason=reason)

    page = client.get(url(recipient, LinkPurpose.UNSUBSCRIBE)).content.decode()
    response = client.post(url(recipient, LinkPurpose.UNSUBSCRIBE) + "resubscribe/")

    assert "You get no emails from us" in page and explained in page
    assert "Subscribe me again" not in page
    assert response.status_code == 200 and explained in response.content.decode()
    assert Suppression.objects.filter(email=recipient.email, reason=reason).exists()
    assert Contact.objects.get().status == Contact.Status.UNSUBSCRIBED
    assert set(subscriptions(recipient.contact_id).values()) == {"unsubscribed"}


def test_a_bounced_contact_opening_the_link_is_told_why_and_stays_bounced(client, recipient):
    Contact.objects.update(status=Contact.Status.BOUNCED)

    page = client.get(url(recipient, LinkPurpose.UNSUBSCRIBE)).content.decode()
    client.post(url(recipient, LinkPurpose.UNSUBSCRIBE) + "resubscribe/")

    assert "could not be delivered" in page and "Subscribe me again" not in page
    assert Contact.objects.get().status == Contact.Status.BOUNCED


def test_a_forwarded_old_style_link_offers_no_way_back_onto_the_lists(client, recipient):
    from campaigns.tokens import recipient_token

    unsubscribe_recipient(recipient=recipient)
    legacy = recipient_token(recipient.pk)

    page = client.get(f"/u/{legacy}/").content.decode()
    client.post(f"/u/{legacy}/resubscribe/")

    assert "You are unsubscribed" in page and "Subscribe me again" not in page
    assert Contact.objects.get().status == Contact.Status.UNSUBSCRIBED


def test_browsers_asking_for_favicon_ico_are_sent_to_the_icon_without_a_login(client):
    response = client.get("/favicon.ico")

    # (The browser tests load it: every page fails on a request answered 4xx.)
    assert response.status_code == 302
    assert response["Location"] == "/static/favicon.ico"
    assert Path(finders.find("favicon.ico")).read_bytes()[:4] == b"\x00\x00\x01\x00"  # an ICO file
