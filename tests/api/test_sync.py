"""POST /api/v1/contacts/sync: merge and replace, idempotency, consent, rejected rows, limits."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audiences.models import Contact, ContactList, Subscription, Suppression
from organisations.models import AuditEntry, Role
from tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db

SYNC = "/api/v1/contacts/sync"


def member(number: int, **extra) -> dict:
    return {
        "external_id": f"m-{number}",
        "email": f"member{number}@example.org",
        "first_name": f"First{number}",
        "last_name": "Member",
        "attributes": {"club": "Rowing", "number": number},
        "lists": ["Members"],
        **extra,
    }


def lists_of(external_id: str) -> list[str]:
    return sorted(
        Subscription.objects.filter(
            contact__external_id=external_id, status=Subscription.Status.SUBSCRIBED
        ).values_list("contact_list__name", flat=True)
    )


def test_a_sync_answers_in_the_issues_shape(club, api_client):
    response = api_client.post(SYNC, {"contacts": [member(1), member(2), {"external_id": "m-3", "email": "nope"}]})
    assert response.status_code == 200, response.content
    assert response.json() == {
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": [{"index": 2, "external_id": "m-3", "reason": "invalid email address"}],
        "lists_created": ["Members"],
        "removed_from_lists": 0,
    }
    assert lists_of("m-1") == ["Members"]


def test_the_same_sync_twice_changes_nothing_the_second_time(club, api_client):
    payload = {"contacts": [member(n) for n in range(20)]}
    api_client.post(SYNC, payload)
    before = list(Contact.objects.order_by("pk").values_list("pk", "updated_at", "attributes"))
    subscriptions = list(Subscription.objects.order_by("pk").values_list("pk", "status", "changed_at"))
    answer = api_client.post(SYNC, payload).json()
    assert (answer["created"], answer["updated"], answer["unchanged"], answer["rejected"]) == (0, 0, 20, [])
    assert list(Contact.objects.order_by("pk").values_list("pk", "updated_at", "attributes")) == before
    assert list(Subscription.objects.order_by("pk").values_list("pk", "status", "changed_at")) == subscriptions


def test_a_changed_name_or_attribute_or_list_counts_as_updated(club, api_client):
    api_client.post(SYNC, {"contacts": [member(1), member(2), member(3), member(4)]})
    answer = api_client.post(
        SYNC,
        {
            "contacts": [
                member(1, first_name="Renamed"),
                member(2, attributes={"club": "Chess"}),
                member(3, lists=["Members", "Juniors"]),
                member(4),
            ]
        },
    ).json()
    assert (answer["updated"], answer["unchanged"]) == (3, 1)
    assert Contact.objects.get(external_id="m-1").first_name == "Renamed"
    assert Contact.objects.get(external_id="m-2").attributes == {"club": "Chess", "number": 2}
    assert lists_of("m-3") == ["Juniors", "Members"]


def test_a_contact_changing_its_address_is_updated_in_place(club, api_client):
    api_client.post(SYNC, {"contacts": [member(1)]})
    pk = Contact.objects.get(external_id="m-1").pk
    answer = api_client.post(SYNC, {"contacts": [member(1, email="New.Address@Example.org")]}).json()
    assert answer["updated"] == 1
    assert Contact.objects.get(pk=pk).email == "new.address@example.org"


def test_a_merge_sync_adds_to_lists_and_leaves_other_members_alone(club, api_client):
    api_client.post(SYNC, {"contacts": [member(1), member(2)]})
    api_client.post(SYNC, {"contacts": [member(3)]})
    assert lists_of("m-1") == lists_of("m-2") == lists_of("m-3") == ["Members"]


def test_a_replace_sync_removes_members_not_in_the_payload(club, api_client):
    api_client.post(SYNC, {"contacts": [member(1), member(2), member(3, lists=["Members", "News"])]})
    answer = api_client.post(
        SYNC, {"mode": "replace", "lists": ["Members"], "contacts": [member(1), member(3, lists=["News"])]}
    ).json()
    assert answer["removed_from_lists"] == 2
    assert lists_of("m-1") == ["Members"]
    assert lists_of("m-2") == []
    assert lists_of("m-3") == ["News"]  # News was not named at the top: merge applies to it
    # Leaving a list is not refusing mail: no unsubscribed row, still active, and back on the next sync.
    left = Contact.objects.get(external_id="m-2")
    assert left.status == Contact.Status.ACTIVE
    assert not Subscription.objects.filter(contact=left).exists()
    api_client.post(SYNC, {"contacts": [member(2)]})
    assert lists_of("m-2") == ["Members"]


def test_a_replace_sync_keeps_opt_outs_and_the_lists_of_rejected_rows(club, api_client):
    api_client.post(SYNC, {"contacts": [member(1), member(2), member(3)]})
    Subscription.objects.filter(contact__external_id="m-2").update(status=Subscription.Status.UNSUBSCRIBED)
    api_client.post(
        SYNC, {"mode": "replace", "lists": ["Members"], "contacts": [member(1), member(3, email="broken@")]}
    )
    assert Subscription.objects.get(contact__external_id="m-2").status == Subscription.Status.UNSUBSCRIBED
    assert lists_of("m-3") == ["Members"]  # its row was rejected: a typo must not take it off the list


def test_replace_without_lists_is_refused_and_writes_nothing(club, api_client):
    response = api_client.post(SYNC, {"mode": "replace", "contacts": [member(1)]})
    assert response.status_code == 422
    assert "replace" in response.json()["detail"]
    assert not Contact.objects.exists()


def test_unsubscribed_bounced_and_suppressed_contacts_are_not_resubscribed(club, api_client):
    members = ContactListFactory(organisation=club, name="Members")
    news = ContactListFactory(organisation=club, name="News")
    left = ContactFactory(organisation=club, email="member1@example.org")
    Subscription.objects.create(contact=left, contact_list=members, status=Subscription.Status.UNSUBSCRIBED)
    ContactFactory(organisation=club, email="member2@example.org", status=Contact.Status.UNSUBSCRIBED)
    ContactFactory(organisation=club, email="member3@example.org", status=Contact.Status.BOUNCED)
    Suppression.objects.create(email="member4@example.org", reason=Suppression.Reason.COMPLAINT)
    payload = {"contacts": [member(n, lists=["Members", "News"]) for n in range(1, 6)]}
    for _ in range(2):
        api_client.post(SYNC, payload)
    assert Subscription.objects.get(contact=left, contact_list=members).status == Subscription.Status.UNSUBSCRIBED
    assert lists_of("m-1") == ["News"]  # left Members only; News it never refused
    assert lists_of("m-2") == lists_of("m-3") == lists_of("m-4") == []
    assert lists_of("m-5") == ["Members", "News"]
    assert Contact.objects.get(external_id="m-2").status == Contact.Status.UNSUBSCRIBED
    assert news.subscriptions.count() == 2


def test_rejected_rows_come_back_with_index_external_id_and_reason_and_the_others_are_applied(club, api_client):
    rows = [
        member(0),
        member(0, email="other@example.org"),  # same external_id
        member(2, email="member0@example.org"),  # same email, another case below
        member(3, attributes=["not", "an", "object"]),
        member(4, first_name="x" * 101),
        "not an object",
        member(6, lists="Members"),
        member(7, nickname="Seven"),
        {"email": "noid@example.org"},
        member(9, attributes={"nested": {"a": 1}}),
        member(10, external_id="a/b"),
        member(11, email="Ann <MEMBER11@Example.org>"),
        member(12, lists=["x" * 201]),
        member(13, external_id=1313),
        member(14, first_name="nul\u0000byte"),
        member(15, attributes={"note": "nul\u0000byte"}),
    ]
    answer = api_client.post(SYNC, {"contacts": rows}).json()
    reasons = {row["index"]: row["reason"] for row in answer["rejected"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15]
    assert reasons[1] == "duplicate of index 0 (same external_id)"
    assert reasons[2] == "duplicate of index 0 (same email)"
    assert "attributes must be an object" in reasons[3]
    assert "longer than 100" in reasons[4]
    assert "JSON object" in reasons[5]
    assert "unknown field “nickname”" in reasons[7]
    assert "missing external_id" in reasons[8]
    assert answer["rejected"][0]["external_id"] == "m-0"
    assert answer["created"] == 3
    assert Contact.objects.get(external_id="m-11").email == "member11@example.org"
    assert Contact.objects.filter(external_id="1313").exists()


def test_an_address_held_by_another_contact_is_rejected_as_a_conflict(club, api_client):
    api_client.post(SYNC, {"contacts": [member(1), member(2)]})
    answer = api_client.post(SYNC, {"contacts": [member(2, email="member1@example.org")]}).json()
    assert "belongs to the contact with external_id “m-1”" in answer["rejected"][0]["reason"]
    assert Contact.objects.get(external_id="m-2").email == "member2@example.org"


def test_addresses_are_normalised_as_the_csv_import_does(club, api_client):
    api_client.post(SYNC, {"contacts": [member(1, email="  Ann.Lee@Bücher.Example ")]})
    assert Contact.objects.get(external_id="m-1").email == "ann.lee@xn--bcher-kva.example"


def test_list_names_match_case_insensitively(club, api_client):
    ContactListFactory(organisation=club, name="Members")
    answer = api_client.post(SYNC, {"contacts": [member(1, lists=["members", "MEMBERS"])]}).json()
    assert answer["lists_created"] == []
    assert ContactList.objects.filter(organisation=club).count() == 1


def test_a_sync_by_another_organisation_writes_only_its_own_contacts_and_lists(club, other_club, api_client, key_for):
    api_client.post(SYNC, {"contacts": [member(1)]})
    _, theirs = key_for(other_club, Role.EDITOR)
    answer = theirs.post(SYNC, {"mode": "replace", "lists": ["Members"], "contacts": [member(2)]}).json()
    assert (answer["created"], answer["removed_from_lists"]) == (1, 0)
    assert lists_of("m-1") == ["Members"]
    assert Contact.objects.get(external_id="m-2").organisation == other_club
    assert ContactList.objects.filter(name="Members").count() == 2


def test_a_call_of_10000_contacts_is_applied_whole(club, api_client):
    answer = api_client.post(SYNC, {"contacts": [member(n) for n in range(10_000)]}).json()
    assert (answer["created"], answer["rejected"]) == (10_000, [])
    assert Subscription.objects.filter(contact_list__name="Members").count() == 10_000
    answer = api_client.post(
        SYNC, {"mode": "replace", "lists": ["Members"], "contacts": [member(n) for n in range(5_000)]}
    ).json()
    assert (answer["unchanged"], answer["removed_from_lists"]) == (5_000, 5_000)


def test_more_than_10000_contacts_are_refused_with_413_and_nothing_is_written(club, api_client):
    response = api_client.post(SYNC, {"contacts": [member(n) for n in range(10_001)]})
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    assert "10,000" in response.json()["detail"]
    assert not Contact.objects.exists()


def test_invalid_json_is_a_problem_and_writes_nothing(club, api_client):
    # 400 as everywhere in the API (api.v1 answers an unparsable body so, before any operation runs).
    response = api_client.post(SYNC, '{"contacts": [{"external_id": "m-1", "email": "a@example.org"}')
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert "parse" in response.json()["detail"]
    assert not Contact.objects.exists()


def test_numbers_json_cannot_store_are_rejected_rows(club, api_client):
    body = '{"contacts": [{"external_id": "m-1", "email": "a@example.org", "attributes": {"score": NaN}}]}'
    answer = api_client.post(SYNC, body).json()
    assert "not a finite number" in answer["rejected"][0]["reason"]
    assert not Contact.objects.exists()


@pytest.mark.parametrize(
    "body",
    [{"contacts": "everyone"}, {"mode": "overwrite", "contacts": []}, {"lists": "Members", "contacts": []}, {}],
)
def test_a_body_of_the_wrong_shape_is_a_422_naming_the_field(club, api_client, body):
    response = api_client.post(SYNC, body)
    assert response.status_code == 422
    assert response.json()["errors"]


def test_each_sync_is_audited_with_its_row_count(club, api_client):
    api_client.post(SYNC, {"contacts": [member(1), member(2), {"external_id": "x"}]})
    entry = AuditEntry.objects.get(organisation=club, action=AuditEntry.Action.IMPORT)
    assert entry.rows == 3
    assert "2 created" in entry.summary and "1 rejected" in entry.summary


def test_a_sync_takes_as_many_queries_for_1000_contacts_as_for_10(club, api_client):
    def queries(count: int, offset: int) -> int:
        payload = json.dumps({"contacts": [member(offset + n) for n in range(count)]})
        with CaptureQueriesContext(connection) as captured:
            assert api_client.post(SYNC, payload).status_code == 200
        return len(captured)

    queries(1, 0)  # the list exists from now on
    small, large = queries(10, 100), queries(1000, 1000)
    assert large == small
    assert large < 30
    answer = api_client.post(SYNC, {"contacts": [member(1000 + n, first_name="Changed") for n in range(1000)]}).json()
    assert answer["updated"] == 1000
