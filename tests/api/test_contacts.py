"""/api/v1/contacts/{external_id} (PUT, GET, DELETE: erasure) and the change feed /api/v1/contacts."""

from __future__ import annotations

import hashlib

import pytest

from audiences.imports import contacts_import
from audiences.models import Contact, ContactList, ErasedAddress, Subscription
from campaigns.models import Recipient
from organisations.models import AuditEntry, Role
from tests.factories import CampaignFactory, ContactFactory, EventFactory, RecipientFactory

pytestmark = pytest.mark.django_db

ANN = {"email": "Ann.Lee@Example.ORG", "first_name": "Ann", "last_name": "Lee", "attributes": {"club": "Rowing"}}


def test_a_put_creates_the_contact_and_a_get_reads_it_back_with_its_lists(club, api_client):
    response = api_client.put("/api/v1/contacts/m-1", {**ANN, "lists": ["Members", "Juniors"]})
    assert response.status_code == 201, response.content
    assert response.json()["email"] == "ann.lee@example.org"
    read = api_client.get("/api/v1/contacts/m-1").json()
    assert read["external_id"] == "m-1"
    assert read["lists"] == ["Juniors", "Members"]
    assert read["attributes"] == {"club": "Rowing"}
    assert set(ContactList.objects.filter(organisation=club).values_list("name", flat=True)) == {"Members", "Juniors"}


def test_a_second_put_updates_only_the_fields_it_sends(club, api_client):
    api_client.put("/api/v1/contacts/m-1", ANN)
    response = api_client.put("/api/v1/contacts/m-1", {"email": "ann.lee@example.org", "attributes": {"club": None}})
    assert response.status_code == 200
    body = response.json()
    assert (body["first_name"], body["last_name"], body["attributes"]) == ("Ann", "Lee", {})


def test_a_put_with_an_address_another_contact_has_is_a_conflict(club, api_client):
    api_client.put("/api/v1/contacts/m-1", ANN)
    response = api_client.put("/api/v1/contacts/m-2", {"email": "ann.lee@example.org", "lists": ["Brand new"]})
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert "m-1" in response.json()["detail"]
    assert not ContactList.objects.filter(name="Brand new").exists()  # nothing half-written


def test_a_put_with_a_bad_address_is_422_and_writes_nothing(club, api_client):
    response = api_client.put("/api/v1/contacts/m-1", {"email": "not an address", "lists": ["Members"]})
    assert response.status_code == 422
    assert "invalid email" in response.json()["detail"]
    assert not Contact.objects.exists()


def test_a_put_with_wrong_types_is_422_with_the_failing_fields(club, api_client):
    response = api_client.put("/api/v1/contacts/m-1", {"email": "a@example.org", "lists": "Members"})
    assert response.status_code == 422
    assert any(error["field"].endswith("lists") for error in response.json()["errors"])


def test_a_put_adopts_a_contact_added_by_staff_with_the_same_address(club, api_client):
    staff_added = ContactFactory(organisation=club, email="ann.lee@example.org")
    assert api_client.put("/api/v1/contacts/m-1", ANN).status_code == 200
    staff_added.refresh_from_db()
    assert staff_added.external_id == "m-1"


def test_markup_in_names_is_stored_as_text(club, api_client):
    api_client.put("/api/v1/contacts/m-1", {"email": "x@example.org", "first_name": "<script>alert(1)</script>"})
    assert Contact.objects.get(external_id="m-1").first_name == "<script>alert(1)</script>"


def test_viewers_read_but_cannot_write_or_erase(club, key_for):
    _, editor = key_for(club, Role.EDITOR)
    _, viewer = key_for(club, Role.VIEWER)
    editor.put("/api/v1/contacts/m-1", ANN)
    assert viewer.get("/api/v1/contacts/m-1").status_code == 200
    assert viewer.get("/api/v1/contacts").status_code == 200
    assert viewer.put("/api/v1/contacts/m-1", ANN).status_code == 403
    assert viewer.delete("/api/v1/contacts/m-1").status_code == 403
    assert viewer.post("/api/v1/contacts/sync", {"contacts": []}).status_code == 403


def test_senders_may_write_and_erase(club, key_for):
    _, sender = key_for(club, Role.SENDER)
    assert sender.put("/api/v1/contacts/m-1", ANN).status_code == 201
    assert sender.delete("/api/v1/contacts/m-1").status_code == 204


def test_without_a_key_every_contact_operation_is_401(club, api_client):
    from tests.api.conftest import KeyClient

    anonymous = KeyClient(None)
    assert anonymous.get("/api/v1/contacts/m-1").status_code == 401
    assert anonymous.put("/api/v1/contacts/m-1", ANN).status_code == 401
    assert anonymous.delete("/api/v1/contacts/m-1").status_code == 401


def test_another_organisations_external_id_is_404_and_a_put_creates_a_separate_contact(club, other_club, key_for):
    _, ours = key_for(club, Role.EDITOR)
    _, theirs = key_for(other_club, Role.EDITOR)
    ours.put("/api/v1/contacts/m-1", ANN)
    assert theirs.get("/api/v1/contacts/m-1").status_code == 404
    assert theirs.delete("/api/v1/contacts/m-1").status_code == 404
    assert Contact.objects.filter(organisation=club, external_id="m-1").exists()
    assert AuditEntry.objects.filter(organisation=other_club, action=AuditEntry.Action.FORBIDDEN).exists()
    assert theirs.put("/api/v1/contacts/m-1", {**ANN, "first_name": "Other"}).status_code == 201
    assert Contact.objects.get(organisation=club, external_id="m-1").first_name == "Ann"
    assert Contact.objects.get(organisation=other_club, external_id="m-1").first_name == "Other"
    assert theirs.get("/api/v1/contacts").json()["contacts"][0]["first_name"] == "Other"


def test_the_change_feed_pages_without_duplicates_or_gaps(club, other_club, api_client, key_for):
    contacts = [{"external_id": f"m-{n}", "email": f"m{n}@example.org"} for n in range(25)]
    api_client.post("/api/v1/contacts/sync", {"contacts": contacts})
    key_for(other_club, Role.EDITOR)[1].put("/api/v1/contacts/x-1", {"email": "x@example.org"})
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = api_client.get("/api/v1/contacts", **params).json()
        seen += [contact["external_id"] for contact in page["contacts"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        if pages == 2:  # a contact already seen changes while paging: it comes again at the end
            api_client.put("/api/v1/contacts/m-0", {"email": "m0@example.org", "first_name": "Changed"})
    assert sorted(set(seen)) == sorted(c["external_id"] for c in contacts)
    assert seen.count("m-0") == 2 and len(seen) == 26
    assert seen[-1] == "m-0"


def test_updated_since_returns_only_later_changes(club, api_client):
    api_client.put("/api/v1/contacts/m-1", ANN)
    later = Contact.objects.get(external_id="m-1").updated_at
    api_client.put("/api/v1/contacts/m-2", {"email": "b@example.org"})
    Contact.objects.filter(external_id="m-1").update(updated_at=later.replace(year=later.year - 1))
    page = api_client.get("/api/v1/contacts", updated_since=later.isoformat()).json()
    assert [contact["external_id"] for contact in page["contacts"]] == ["m-2"]


def test_a_forged_cursor_is_422_problem(club, api_client):
    for cursor in ("nonsense", "W10", "eyJhIjoxfQ"):
        response = api_client.get("/api/v1/contacts", cursor=cursor)
        assert response.status_code == 422, cursor
        assert "cursor" in response.json()["detail"]


def test_erasure_removes_personal_data_and_keeps_campaign_figures(club, api_client):
    api_client.put("/api/v1/contacts/m-1", {**ANN, "lists": ["Members"]})
    contact = Contact.objects.get(external_id="m-1")
    campaign = CampaignFactory(organisation=club)
    recipient = RecipientFactory(campaign=campaign, contact=contact, sent=True)
    event = EventFactory(recipient=recipient, ip_address="192.0.2.1", user_agent="Mail", payload={"to": contact.email})
    assert api_client.delete("/api/v1/contacts/m-1").status_code == 204
    assert not Contact.objects.filter(email="ann.lee@example.org").exists()
    assert not Subscription.objects.exists()
    recipient.refresh_from_db()
    event.refresh_from_db()
    assert recipient.status == Recipient.Status.SENT
    assert recipient.email == f"erased-{recipient.pk}@erased.invalid"
    assert Recipient.objects.filter(campaign=campaign).count() == 1
    assert (event.email, event.payload, event.ip_address, event.user_agent) == ("", None, "", "")
    assert not ErasedAddress.objects.exists()  # it had refused nothing: nothing is kept
    entry = AuditEntry.objects.get(action=AuditEntry.Action.DELETE, organisation=club)
    assert entry.object_id == "m-1" and "ann.lee" not in entry.summary
    assert api_client.get("/api/v1/contacts/m-1").status_code == 404


def test_an_erased_address_that_unsubscribed_is_not_resubscribed_by_a_later_sync(club, api_client):
    api_client.put("/api/v1/contacts/m-1", {**ANN, "lists": ["Members"]})
    Contact.objects.filter(external_id="m-1").update(status=Contact.Status.UNSUBSCRIBED)
    Subscription.objects.update(status=Subscription.Status.UNSUBSCRIBED)
    api_client.delete("/api/v1/contacts/m-1")
    kept = ErasedAddress.objects.get()
    assert kept.email_sha256 == hashlib.sha256(b"ann.lee@example.org").hexdigest()
    assert "ann" not in str(ErasedAddress.objects.values().get())
    answer = api_client.post(
        "/api/v1/contacts/sync",
        {"contacts": [{"external_id": "m-9", "email": "ANN.LEE@example.org", "lists": ["Members"]}]},
    ).json()
    assert answer["created"] == 1
    again = Contact.objects.get(external_id="m-9")
    assert again.status == Contact.Status.UNSUBSCRIBED
    assert list(Subscription.objects.filter(contact=again).values_list("status", flat=True)) == ["unsubscribed"]
    assert api_client.get("/api/v1/contacts/m-9").json()["lists"] == []


def test_an_erased_address_that_unsubscribed_is_not_resubscribed_by_a_csv_import(club, api_client, tmp_path):
    api_client.put("/api/v1/contacts/m-1", {**ANN, "lists": ["Members"]})
    Subscription.objects.update(status=Subscription.Status.UNSUBSCRIBED)
    api_client.delete("/api/v1/contacts/m-1")
    path = tmp_path / "members.csv"
    path.write_text("email,first_name\nann.lee@example.org,Ann\nbea@example.org,Bea\n", encoding="utf-8")

    report = contacts_import(
        organisation_id=club.pk, path=path, contact_list=ContactList.objects.get(organisation=club, name="Members")
    )

    assert (report.created, report.subscribed, report.not_resubscribed) == (2, 1, 1)
    ann = Contact.objects.get(email="ann.lee@example.org")
    assert list(Subscription.objects.filter(contact=ann).values_list("status", flat=True)) == ["unsubscribed"]
    assert not ErasedAddress.objects.exists()  # the new contact carries the opt-out now


def test_an_erased_address_that_left_one_list_stays_off_that_list(club, api_client):
    api_client.put("/api/v1/contacts/m-1", {**ANN, "lists": ["Members", "News"]})
    Subscription.objects.filter(contact_list__name="News").update(status=Subscription.Status.UNSUBSCRIBED)
    api_client.delete("/api/v1/contacts/m-1")
    api_client.put("/api/v1/contacts/m-1", {**ANN, "lists": ["Members", "News"]})
    assert api_client.get("/api/v1/contacts/m-1").json()["lists"] == ["Members"]
    assert not ErasedAddress.objects.exists()  # the new contact carries the opt-out now
