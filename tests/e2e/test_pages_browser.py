"""Staff and public pages no flow test drives open in Chromium with their content, and are saved."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from audiences.models import Contact, Segment, Suppression
from campaigns.models import Campaign, Layout, Recipient
from campaigns.tokens import recipient_token
from stats.counters import snapshot_recorded
from stats.models import CampaignStats
from tests.conftest import screenshot
from tests.factories import campaign_to, list_with_contacts

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_remaining_staff_pages_render_with_their_data(logged_in_page, live_server, staff_user):
    contact_list = list_with_contacts(3, name="Choir")
    Segment.objects.create(name="Rowers", rules=[{"field": "attribute:club", "operator": "equals", "value": "Rowing"}])
    # Its own layout: transactional tests flush the one the migration creates.
    Layout.objects.create(name="Club layout", html='{{ content }}<a href="{{ unsubscribe_url }}">Unsubscribe</a>')
    Suppression.objects.create(email="gone@example.org", reason=Suppression.Reason.MANUAL, created_by=staff_user)
    sent = []
    for name in ("Spring news", "Summer news"):
        campaign = campaign_to(contact_list, name=name, status=Campaign.Status.SENT, finished_at=timezone.now())
        CampaignStats.objects.create(campaign=campaign, sent=3, delivered=3)
        snapshot_recorded(campaign_id=campaign.pk, recipients=3)
        sent.append(campaign)
    draft = campaign_to(contact_list, name="Autumn draft")
    contact = Contact.objects.filter(email__startswith="person").first()
    recipient = Recipient.objects.create(campaign=sent[0], contact=contact, email=contact.email)
    layout = Layout.objects.get(name="Club layout")
    segment = Segment.objects.get(name="Rowers")
    suppression = Suppression.objects.get(email="gone@example.org")
    page = logged_in_page
    pages = [
        ("/audiences/contacts/new/", "contact-new", "Email"),
        (f"/audiences/contacts/{contact.pk}/", "contact-edit", contact.email),
        (f"/audiences/contacts/{contact.pk}/delete/", "contact-delete", "Delete"),
        (f"/audiences/lists/{contact_list.pk}/delete/", "list-delete", "Delete the list “Choir”?"),
        (f"/audiences/segments/{segment.pk}/delete/", "segment-delete", "Delete the segment “Rowers”?"),
        (f"/audiences/suppressions/{suppression.pk}/remove/", "suppression-remove", "gone@example.org"),
        ("/campaigns/layouts/new/", "layout-new", "{{ content }}"),
        (f"/campaigns/layouts/{layout.pk}/edit/", "layout-edit", "Club layout"),
        (f"/campaigns/{draft.pk}/edit/", "campaign-edit", "Autumn draft"),
        (f"/campaigns/{draft.pk}/attachments/", "attachments-draft", "Upload"),
        (f"/m/{recipient_token(recipient.pk)}/", "view-online", "read"),
        ("/audiences/lists/", "lists", "Choir"),
        (f"/audiences/lists/{contact_list.pk}/", "list-detail", "person"),
        ("/audiences/segments/", "segments", "Rowers"),
        ("/audiences/imports/", "imports", "Import"),
        ("/audiences/suppressions/", "suppressions", "gone@example.org"),
        ("/campaigns/layouts/", "layouts", "Club layout"),
        ("/campaigns/templates/", "templates", "Reusable templates"),
        (f"/campaigns/{sent[0].pk}/attachments/", "attachments", "Attachments"),
        ("/tracking/events/", "events", "Events"),
        (f"/reports/compare/?ids={sent[0].pk}&ids={sent[1].pk}", "compare", "Summer news"),
        ("/campaigns/", "campaign-list", "3 / 3"),
    ]
    for path, name, text in pages:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        expect(page.locator("body")).to_contain_text(text)
        screenshot(page, f"page-{name}")
