"""The suppression list pages: view, search, add and remove (with confirmation)."""

from __future__ import annotations

import pytest

from audiences.models import Contact, Subscription, Suppression
from campaigns.snapshot import audience_count
from tests.factories import campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db


def test_staff_add_a_suppression_and_it_records_reason_who_and_when(staff_client, staff_user):
    response = staff_client.post(
        "/audiences/suppressions/", {"email": " Ada@Example.ORG ", "reason": "manual", "note": "asked by phone"}
    )

    entry = Suppression.objects.get()
    assert response.status_code == 302
    assert (entry.email, entry.reason, entry.note, entry.created_by) == (
        "ada@example.org",
        "manual",
        "asked by phone",
        staff_user,
    )
    page = staff_client.get("/audiences/suppressions/").content.decode()
    assert "ada@example.org" in page and "Added by staff" in page and "stella.staff" in page


def test_a_suppressed_address_leaves_the_audience(staff_client):
    contact_list = list_with_contacts(2)
    campaign = campaign_to(contact_list)
    victim = contact_list.subscriptions.first().contact

    staff_client.post("/audiences/suppressions/", {"email": victim.email, "reason": "manual"})

    assert audience_count(campaign) == 1


def test_search_filters_by_prefix_and_bad_input_gets_form_errors(staff_client):
    Suppression.objects.create(email="ada@example.org", reason="hard_bounce")
    Suppression.objects.create(email="bob@example.org", reason="complaint")

    response = staff_client.get("/audiences/suppressions/", {"q": "bo"}, HTTP_HX_REQUEST="true")
    assert "bob@example.org" in response.content.decode() and "ada@example.org" not in response.content.decode()
    bad = staff_client.post("/audiences/suppressions/", {"email": "nope", "reason": "manual"})
    assert bad.status_code == 200 and bad.context["form"].errors["email"]
    wrong_reason = staff_client.post("/audiences/suppressions/", {"email": "c@example.org", "reason": "because"})
    assert wrong_reason.context["form"].errors["reason"]
    assert Suppression.objects.count() == 2


def test_removing_needs_a_confirmation_and_never_resubscribes(staff_client):
    contact_list = list_with_contacts(1)
    contact = Contact.objects.get()
    contact.status = Contact.Status.BOUNCED
    contact.save()
    Subscription.objects.filter(contact=contact).update(status="unsubscribed")
    entry = Suppression.objects.create(email=contact.email, reason="hard_bounce")

    confirm = staff_client.get(f"/audiences/suppressions/{entry.pk}/remove/")
    assert confirm.status_code == 200 and "does not resubscribe" in confirm.content.decode()
    assert Suppression.objects.exists()

    staff_client.post(f"/audiences/suppressions/{entry.pk}/remove/")

    assert not Suppression.objects.exists()
    contact.refresh_from_db()
    assert contact.status == Contact.Status.BOUNCED
    assert contact_list.subscriptions.get().status == "unsubscribed"
    assert audience_count(campaign_to(contact_list)) == 0
