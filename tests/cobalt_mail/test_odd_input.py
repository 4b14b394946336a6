"""Odd ids, page sizes and unknown campaigns in URLs get a page or a 404: never a 500."""

from __future__ import annotations

import pytest
from django.test import Client

from audiences.models import Contact
from campaigns.models import Recipient
from campaigns.tokens import LinkPurpose, link_token
from common.params import id_param, id_params
from tests.factories import campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db

HOSTILE = ["²", "١٢", "9" * 30, "-1", "1e3", " 7", ""]


def test_only_plain_numbers_a_primary_key_can_hold_are_ids():
    assert [id_param(value) for value in HOSTILE] == [None] * len(HOSTILE)
    assert id_params(["12", "²", "007", "9" * 19, "3"]) == [12, 7, 3]


def test_staff_pages_given_odd_ids_answer_without_an_error(staff_client):
    campaign = campaign_to(list_with_contacts(1))
    for value in HOSTILE:
        assert staff_client.get("/tracking/events/", {"campaign": value}).status_code == 200
        assert staff_client.get("/tracking/events/", {"page": value}).status_code == 200
        compare = staff_client.get("/reports/compare/", {"ids": [value, "²"]})
        assert compare.status_code == 302  # back to the dashboard: "Tick at least two campaigns"
        assert staff_client.get("/tracking/events/", {"page": "999"}).status_code == 200
        preview = staff_client.get(f"/campaigns/{campaign.pk}/preview/", {"contact": value})
        assert preview.status_code == 200


def test_the_public_preference_page_ignores_odd_list_ids():
    campaign = campaign_to(list_with_contacts(1))
    contact = Contact.objects.get()
    recipient = Recipient.objects.create(campaign=campaign, contact=contact, email=contact.email)
    token = link_token(recipient_id=recipient.pk, purpose=LinkPurpose.PREFERENCES)

    response = Client().post(f"/u/{token}/preferences/", {"lists": HOSTILE})

    assert response.status_code == 302
    assert not contact.subscriptions.filter(status="subscribed").exists()  # no list chosen: all left


def test_the_page_size_is_not_taken_from_the_address_bar(staff_client):
    list_with_contacts(60)
    for path in ("/audiences/contacts/", "/audiences/lists/", "/audiences/segments/", "/audiences/imports/"):
        for size in ("1000000", "-1", "0"):
            response = staff_client.get(path, {"per_page": size})
            assert response.status_code == 200, (path, size)
    shown = staff_client.get("/audiences/contacts/", {"per_page": "1000000"}).context["table"].paginated_rows
    assert len(list(shown)) == 50


def test_actions_on_an_unknown_campaign_are_404_and_change_nothing(staff_client):
    from campaigns.models import Campaign

    for action in ("send", "schedule", "unschedule", "pause", "resume", "cancel", "duplicate"):
        assert staff_client.post(f"/campaigns/999999/{action}/").status_code == 404, action
    assert not Campaign.objects.exists()
