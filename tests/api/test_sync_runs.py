"""POST /api/v1/contacts/sync with a `run`: a replace spread over several calls, whose final call
removes the members no call of the run named."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.keys import api_key_create
from audiences.models import Contact, ContactList, Subscription, SyncRun, SyncRunMember
from campaigns.tasks import engine_tick
from organisations.models import AuditEntry, Role
from tests.api.test_external_client import (
    members_list,
    membership_site,  # noqa: F401 (a fixture, used below)
    run_nightly_sync,
)
from tests.api.test_sync import SYNC, lists_of, member

pytestmark = pytest.mark.django_db


def members_of(name: str = "Members", organisation=None) -> set[str]:
    found = Subscription.objects.filter(contact_list__name=name, status=Subscription.Status.SUBSCRIBED)
    if organisation is not None:
        found = found.filter(contact_list__organisation=organisation)
    return set(found.values_list("contact__external_id", flat=True))


def call(client, numbers, *, run="nightly", final=False, lists=("Members",), **contact):
    body = {
        "mode": "replace",
        "lists": list(lists),
        "run": run,
        "final": final,
        "contacts": [member(n, **{"lists": list(lists), **contact}) for n in numbers],
    }
    return client.post(SYNC, body)


@pytest.fixture
def ten_members(api_client):
    assert api_client.post(SYNC, {"contacts": [member(n) for n in range(10)]}).status_code == 200
    return api_client


def test_a_three_call_run_removes_only_members_no_call_named_and_only_at_the_final_call(ten_members):
    client = ten_members
    first = call(client, [0, 1, 2]).json()
    second = call(client, [3, 4, 10]).json()  # m-10 is new
    assert (first["removed_from_lists"], second["removed_from_lists"], second["created"]) == (0, 0, 1)
    assert members_of() == {f"m-{n}" for n in range(11)}  # nothing left before the final call

    final = call(client, [5, 6], final=True)

    assert final.status_code == 200, final.content
    assert final.json()["removed_from_lists"] == 3
    assert members_of() == {f"m-{n}" for n in (0, 1, 2, 3, 4, 5, 6, 10)}
    left = Contact.objects.get(external_id="m-8")
    assert left.status == Contact.Status.ACTIVE  # leaving a list is not refusing mail
    assert not SyncRun.objects.exists() and not SyncRunMember.objects.exists()  # the run ended


def test_a_run_keeps_opt_outs_other_lists_and_the_lists_of_rejected_rows(ten_members):
    client = ten_members
    client.post(SYNC, {"contacts": [member(1, lists=["Members", "News"])]})
    Subscription.objects.filter(contact__external_id="m-2").update(status=Subscription.Status.UNSUBSCRIBED)
    call(client, [0])
    broken = {"external_id": "m-3", "email": "broken@"}
    client.post(SYNC, {"mode": "replace", "lists": ["Members"], "run": "nightly", "final": True, "contacts": [broken]})

    assert Subscription.objects.get(contact__external_id="m-2").status == Subscription.Status.UNSUBSCRIBED
    assert lists_of("m-1") == ["News"]  # News was not replaced
    assert members_of() == {"m-0", "m-3"}  # m-3's row was rejected: a typo must not take it off


def test_a_run_never_resubscribes_a_contact_who_unsubscribed(ten_members):
    client = ten_members
    Contact.objects.filter(external_id="m-4").update(status=Contact.Status.UNSUBSCRIBED)
    Subscription.objects.filter(contact__external_id="m-4").delete()
    call(client, [0, 4])
    call(client, [5], final=True)
    assert members_of() == {"m-0", "m-5"}
    assert Contact.objects.get(external_id="m-4").status == Contact.Status.UNSUBSCRIBED


def test_a_final_call_of_an_unknown_run_is_409_and_writes_nothing(ten_members):
    response = call(ten_members, [0, 50], run="never-started", final=True)
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert "start the run again from its first call" in response.json()["detail"].lower()
    assert members_of() == {f"m-{n}" for n in range(10)}
    assert not Contact.objects.filter(external_id="m-50").exists()


def test_a_call_naming_other_lists_than_its_run_is_refused_and_writes_nothing(ten_members):
    client = ten_members
    call(client, [0, 1])
    response = call(client, [2, 60], lists=["Members", "News"], final=True)
    assert response.status_code == 409
    assert "name the same lists" in response.json()["detail"]
    assert not Contact.objects.filter(external_id="m-60").exists()
    assert members_of() == {f"m-{n}" for n in range(10)}
    # The run is still open, and finishes with its own lists.
    assert call(client, [2], lists=["members"], final=True).json()["removed_from_lists"] == 7


def test_another_organisation_can_neither_finish_nor_see_a_run(ten_members, club, other_club, key_for):
    call(ten_members, [0, 1])
    _, theirs = key_for(other_club, Role.EDITOR)
    refused = call(theirs, [7], final=True)
    assert refused.status_code == 409
    assert not Contact.objects.filter(organisation=other_club).exists()
    # Their own run of the same id is theirs alone: it removes nothing of ours.
    call(theirs, [20])
    assert call(theirs, [21], final=True).json()["removed_from_lists"] == 0
    assert members_of(organisation=other_club) == {"m-20", "m-21"}
    assert SyncRun.objects.get().organisation == club  # ours is still open
    assert call(ten_members, [2], final=True).json()["removed_from_lists"] == 7


def test_two_runs_of_one_organisation_may_be_open_at_once(ten_members):
    client = ten_members
    client.post(SYNC, {"contacts": [member(n, lists=["Juniors"]) for n in (20, 21, 22)]})
    call(client, [0], run="members-night")
    call(client, [20], run="juniors-night", lists=["Juniors"])
    assert call(client, [1], run="members-night", final=True).json()["removed_from_lists"] == 8
    assert call(client, [21], run="juniors-night", lists=["Juniors"], final=True).json()["removed_from_lists"] == 1
    assert members_of() == {"m-0", "m-1"} and members_of("Juniors") == {"m-20", "m-21"}


def test_an_abandoned_run_removes_nothing_is_cleaned_and_can_be_started_again(ten_members):
    client = ten_members
    call(client, [0, 1])
    SyncRun.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert engine_tick()["sync_runs_abandoned"] == 1
    assert not SyncRunMember.objects.exists()

    response = call(client, [2, 70], final=True)

    assert response.status_code == 409
    assert "abandoned" in response.json()["detail"] and "from its first call" in response.json()["detail"]
    assert members_of() == {f"m-{n}" for n in range(10)}
    assert not Contact.objects.filter(external_id="m-70").exists()
    # Started again from its first call, under the same id, it works.
    call(client, [0, 1])
    assert call(client, [2], final=True).json()["removed_from_lists"] == 7


def test_a_late_middle_call_of_an_abandoned_run_is_refused_not_taken_for_a_new_run(ten_members):
    client = ten_members
    call(client, [0, 1])
    SyncRun.objects.update(created_at=timezone.now() - timedelta(hours=25))
    response = call(client, [2])  # not final: it would otherwise start a run that forgets m-0, m-1
    assert response.status_code == 409
    assert "abandoned" in response.json()["detail"]
    assert not SyncRun.objects.exists()


def test_abandoned_runs_markers_go_after_a_week(ten_members):
    call(ten_members, [0])
    SyncRun.objects.update(
        created_at=timezone.now() - timedelta(days=9), abandoned_at=timezone.now() - timedelta(days=8)
    )
    engine_tick()
    assert not SyncRun.objects.exists()


def test_a_run_of_25000_contacts_in_three_calls_replaces_the_list(api_client):
    # Members 24,500 to 25,499 are on the list before: the run names half of them.
    assert api_client.post(SYNC, {"contacts": [member(n) for n in range(24_500, 25_500)]}).json()["rejected"] == []
    calls = [range(0, 10_000), range(10_000, 20_000), range(20_000, 25_000)]
    answers = [call(api_client, numbers, final=numbers is calls[-1]).json() for numbers in calls]
    assert [answer["removed_from_lists"] for answer in answers] == [0, 0, 500]
    assert [answer["created"] for answer in answers] == [10_000, 10_000, 4_500]
    assert Subscription.objects.filter(contact_list__name="Members").count() == 25_000
    assert not Subscription.objects.filter(contact__external_id="m-25000").exists()
    assert Contact.objects.get(external_id="m-25499").status == Contact.Status.ACTIVE


def test_a_final_calls_own_contacts_that_leave_a_list_count_as_updated(ten_members):
    client = ten_members
    call(client, [0])
    body = {
        "mode": "replace",
        "lists": ["Members"],
        "run": "nightly",
        "final": True,
        "contacts": [member(1), member(2, lists=["News"])],
    }
    answer = client.post(SYNC, body).json()
    assert (answer["updated"], answer["unchanged"], answer["removed_from_lists"]) == (1, 1, 8)
    assert lists_of("m-2") == ["News"]


def test_run_and_final_must_fit_together(ten_members):
    client = ten_members
    cases = [
        ({"mode": "merge", "run": "x", "final": True}, "mode “replace”"),
        ({"mode": "replace", "lists": ["Members"], "run": "x"}, "“final”"),
        ({"mode": "replace", "lists": ["Members"], "final": False}, "belongs to a run"),
        ({"mode": "replace", "lists": ["Members"], "run": "   ", "final": False}, "“run”"),
    ]
    for body, words in cases:
        response = client.post(SYNC, {**body, "contacts": [member(80)]})
        assert response.status_code == 422, body
        assert words in response.json()["detail"], response.json()
    assert client.post(SYNC, {"run": "x" * 101, "final": False, "contacts": []}).status_code == 422
    assert not Contact.objects.filter(external_id="m-80").exists()


def test_a_single_call_replace_without_a_run_is_unchanged(ten_members):
    answer = ten_members.post(
        SYNC, {"mode": "replace", "lists": ["Members"], "final": True, "contacts": [member(0), member(1)]}
    ).json()
    assert answer["removed_from_lists"] == 8
    assert members_of() == {"m-0", "m-1"}
    assert not SyncRun.objects.exists()


def test_the_calls_of_a_run_are_audited_with_the_run(ten_members):
    call(ten_members, [0])
    call(ten_members, [1], final=True)
    summaries = list(
        AuditEntry.objects.filter(action=AuditEntry.Action.IMPORT, summary__contains="run").values_list(
            "summary", flat=True
        )
    )
    assert len(summaries) == 2
    assert any("final call" in summary and "8 list memberships ended" in summary for summary in summaries)
    assert ContactList.objects.filter(name="Members").count() == 1


def test_the_final_call_removes_500_members_with_as_many_queries_as_10(api_client):
    def final_call_queries(run: str, kept: int) -> int:
        api_client.post(SYNC, {"contacts": [member(n) for n in range(510)]})
        call(api_client, range(kept), run=run)
        with CaptureQueriesContext(connection) as captured:
            answer = call(api_client, [kept], run=run, final=True).json()
        assert answer["removed_from_lists"] == 510 - kept - 1
        return len(captured)

    assert final_call_queries("few-leave", 499) == final_call_queries("many-leave", 9)


@pytest.mark.django_db(transaction=True)
def test_the_documented_nightly_sync_uses_a_run_beyond_10000_members(
    live_server,
    club,
    membership_site,  # noqa: F811 (the fixture imported above)
    monkeypatch,
):
    _, raw = api_key_create(organisation=club, role=Role.EDITOR, name="Membership site")
    monkeypatch.setenv("COBALT_URL", live_server.url)
    monkeypatch.setenv("COBALT_API_KEY", raw)
    people = [
        {"pk": n, "email": f"m{n}@riverside.example", "first_name": "M", "last_name": str(n)} for n in range(10_003)
    ]
    site = membership_site(people)
    run_nightly_sync()
    assert len(members_list(club)) == 10_003
    for gone in (0, 10_002):  # one left in the first call's share, one in the last's
        site.members[gone].is_current = False

    run_nightly_sync()

    assert members_list(club) == {f"m{n}@riverside.example" for n in range(1, 10_002)}
    assert not SyncRun.objects.exists()
    summaries = AuditEntry.objects.filter(summary__contains="final call").values_list("summary", flat=True)
    assert any("2 list memberships ended" in summary for summary in summaries)
