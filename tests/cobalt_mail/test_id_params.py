"""Ids in query strings and forms that are not plain numbers match nothing: never a 500."""

from __future__ import annotations

import pytest
from django.test import Client

from campaigns.models import Contact, Recipient
from campaigns.tokens import recipient_token
from cobalt_mail.params import id_param, id_params
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
        compare = staff_client.get("/reports/compare/", {"ids": [value, "²"]})
        assert compare.status_code == 302  # back to the dashboard: "Tick at least two campaigns"
        preview = staff_client.get(f"/campaigns/{campaign.pk}/preview/", {"contact": value})
        assert preview.status_code == 200


def test_the_public_preference_page_ignores_odd_list_ids():
    campaign = campaign_to(list_with_contacts(1))
    contact = Contact.objects.get()
    recipient = Recipient.objects.create(campaign=campaign, contact=contact, email=contact.email)
    token = recipient_token(recipient.pk)

    response = Client().post(f"/u/{token}/preferences/", {"lists": HOSTILE})

    assert response.status_code == 302
    assert not contact.subscriptions.filter(status="subscribed").exists()  # no list chosen: all left
