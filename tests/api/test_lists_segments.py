"""Lists (read with counts, create, rename) and segments (list, count) through the API."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from audiences.models import ContactList, Segment
from organisations.models import Role
from tests.factories import ContactFactory, SegmentFactory, list_with_contacts

pytestmark = pytest.mark.django_db


def test_a_viewer_reads_the_lists_with_subscriber_counts(club, key_for):
    members = list_with_contacts(3, name="Members")
    subscription = members.subscriptions.first()
    subscription.status = "unsubscribed"
    subscription.save()
    answer = key_for(club, Role.VIEWER)[1].get("/api/v1/lists").json()
    assert [(row["name"], row["subscribed"], row["unsubscribed"]) for row in answer] == [("Members", 2, 1)]


def test_an_editor_creates_a_list_and_a_taken_name_answers_409(club, api_client):
    response = api_client.post("/api/v1/lists", {"name": "  <b>Juniors</b> ", "description": "U18"})
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "<b>Juniors</b>"
    again = api_client.post("/api/v1/lists", {"name": "<B>JUNIORS</B>"})
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    assert ContactList.objects.filter(organisation=club).count() == 1


def test_a_list_name_may_repeat_across_organisations(club, other_club, api_client, key_for):
    ContactList.objects.create(organisation=other_club, name="Members")
    assert api_client.post("/api/v1/lists", {"name": "Members"}).status_code == 201


def test_a_viewer_cannot_create_or_rename_a_list(club, key_for):
    viewer = key_for(club, Role.VIEWER)[1]
    members = ContactList.objects.create(organisation=club, name="Members")
    assert viewer.post("/api/v1/lists", {"name": "New"}).status_code == 403
    assert viewer.client.patch(
        f"/api/v1/lists/{members.pk}", {"name": "X"}, content_type="application/json",
        headers={"Authorization": f"Bearer {viewer.raw}"},
    ).status_code == 403  # fmt: skip


def patch(client, path, body):
    return client.client.patch(
        path, body, content_type="application/json", headers={"Authorization": f"Bearer {client.raw}"}
    )


def test_an_editor_renames_a_list_and_a_taken_name_answers_409(club, api_client):
    members = list_with_contacts(2, name="Members")
    ContactList.objects.create(organisation=club, name="Juniors")
    response = patch(api_client, f"/api/v1/lists/{members.pk}", {"name": "Full members"})
    assert response.status_code == 200 and response.json()["subscribed"] == 2
    assert patch(api_client, f"/api/v1/lists/{members.pk}", {"name": "juniors"}).status_code == 409
    members.refresh_from_db()
    assert members.name == "Full members"


def test_hostile_list_bodies_answer_422(club, api_client):
    for body in [{"name": ""}, {"name": "x" * 201}, {"name": 5}, {}]:
        response = api_client.post("/api/v1/lists", body)
        assert response.status_code == 422, body
    assert api_client.post("/api/v1/lists", "not json").status_code == 400
    assert ContactList.objects.filter(organisation=club).count() == 0


def test_another_organisations_list_cannot_be_renamed(club, other_club, key_for):
    theirs = ContactList.objects.create(organisation=other_club, name="Theirs")
    assert patch(key_for(club, Role.SENDER)[1], f"/api/v1/lists/{theirs.pk}", {"name": "Mine"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == "Theirs"


def test_segments_are_listed_and_counted_as_the_segment_page_counts(club, key_for, staff_client):
    ContactFactory.create_batch(3)
    ContactFactory(attributes={"club": "Chess"})
    segment = SegmentFactory(organisation=club, name="Rowers")
    viewer = key_for(club, Role.VIEWER)[1]
    assert [row["name"] for row in viewer.get("/api/v1/segments").json()] == ["Rowers"]
    count = viewer.get(f"/api/v1/segments/{segment.pk}/count").json()["count"]
    page = staff_client.get(reverse("audiences:segment_edit", args=[segment.pk])).content.decode()
    assert count == int(re.search(r'data-count="(\d+)"', page).group(1)) == 3


def test_a_segment_without_rules_counts_nobody(club, key_for):
    ContactFactory()
    segment = Segment.objects.create(organisation=club, name="Empty", rules=[])
    assert key_for(club, Role.VIEWER)[1].get(f"/api/v1/segments/{segment.pk}/count").json()["count"] == 0


def test_another_organisations_segment_answers_404(club, other_club, key_for):
    theirs = SegmentFactory(organisation=other_club)
    assert key_for(club, Role.VIEWER)[1].get(f"/api/v1/segments/{theirs.pk}/count").status_code == 404
    assert key_for(club, Role.VIEWER)[1].get("/api/v1/segments").json() == []


def test_a_suppression_shows_reason_and_time_but_not_another_organisations_name(club, other_club, key_for):
    from audiences.models import Contact, Suppression

    Contact.objects.create(organisation=club, email="ada@example.org", status=Contact.Status.UNSUBSCRIBED)
    Suppression.objects.create(email="ada@example.org", reason=Suppression.Reason.COMPLAINT, organisation=other_club)
    answer = key_for(club, Role.VIEWER)[1].get("/api/v1/suppressions/ADA@example.org").json()
    assert (answer["suppressed"], answer["reason"], answer["unsubscribed"]) == (True, "complaint", True)
    assert answer["caused_by_this_organisation"] is False
    assert other_club.name not in str(answer) and answer["since"]


def test_a_suppression_of_an_address_unknown_to_the_organisation_is_not_revealed(club, other_club, key_for):
    from audiences.models import Suppression

    Suppression.objects.create(email="bob@example.org", reason=Suppression.Reason.HARD_BOUNCE, organisation=other_club)
    assert key_for(club, Role.VIEWER)[1].get("/api/v1/suppressions/bob@example.org").status_code == 404
    mine = key_for(other_club, Role.VIEWER)[1].get("/api/v1/suppressions/bob@example.org").json()
    assert (mine["suppressed"], mine["caused_by_this_organisation"]) == (True, True)


def test_a_malformed_address_answers_422(club, key_for):
    response = key_for(club, Role.VIEWER)[1].get("/api/v1/suppressions/not-an-address")
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "path.email"
