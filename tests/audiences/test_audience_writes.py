"""One door per audience write: unsubscribing, suppressing and saving segments end in the same
state whichever entry starts them (staff's pages, the email's link, SES's notifications)."""

from __future__ import annotations

import pytest
from django.test import Client

from audiences.models import Contact, Segment, Subscription, Suppression
from audiences.services import (
    AudienceError,
    address_suppress,
    contact_status_mark,
    contacts_unsubscribe_everywhere,
    lists_leave,
    segment_save,
)
from campaigns.models import Recipient
from campaigns.tokens import LinkPurpose, link_token
from tests.factories import ContactFactory, ContactListFactory, RecipientFactory
from tests.tracking.records import event

pytestmark = pytest.mark.django_db


@pytest.fixture
def recipient() -> Recipient:
    """A sent recipient whose contact is on two lists, next to another contact on the same lists."""
    rowing, chess = ContactListFactory(name="Rowing"), ContactListFactory(name="Chess")
    contact, bystander = ContactFactory(email="ann@example.org"), ContactFactory(email="bob@example.org")
    for person in (contact, bystander):
        for contact_list in (rowing, chess):
            Subscription.objects.create(contact=person, contact_list=contact_list)
    return RecipientFactory(contact=contact, sent=True)


def staff_bulk_unsubscribe(staff_client, recipient: Recipient, notify) -> None:
    staff_client.post("/audiences/contacts/bulk/", {"action": "unsubscribe", "selected": [recipient.contact_id]})


def unsubscribe_link(staff_client, recipient: Recipient, notify) -> None:
    token = link_token(recipient_id=recipient.pk, purpose=LinkPurpose.UNSUBSCRIBE)
    Client(enforce_csrf_checks=True).post(
        f"/u/{token}/", data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )


def ses_unsubscribe_all(staff_client, recipient: Recipient, notify) -> None:
    notify(event("Subscription", address=recipient.email, message_id=recipient.ses_message_id))


def complaint(staff_client, recipient: Recipient, notify) -> None:
    notify(event("Complaint", address=recipient.email, message_id=recipient.ses_message_id))


UNSUBSCRIBE_ENTRIES = [staff_bulk_unsubscribe, unsubscribe_link, ses_unsubscribe_all]


def audience_state(email: str) -> tuple[str, set[tuple[str, str]]]:
    contact = Contact.objects.get(email=email)
    subscriptions = contact.subscriptions.values_list("contact_list__name", "status")
    return contact.status, set(subscriptions)


@pytest.mark.parametrize("entry", UNSUBSCRIBE_ENTRIES)
def test_every_unsubscribe_entry_leaves_the_contact_unsubscribed_from_every_list(
    entry, recipient, staff_client, notify
):
    entry(staff_client, recipient, notify)

    assert audience_state(recipient.email) == (
        Contact.Status.UNSUBSCRIBED,
        {("Rowing", Subscription.Status.UNSUBSCRIBED), ("Chess", Subscription.Status.UNSUBSCRIBED)},
    )
    assert audience_state("bob@example.org") == (
        Contact.Status.ACTIVE,
        {("Rowing", Subscription.Status.SUBSCRIBED), ("Chess", Subscription.Status.SUBSCRIBED)},
    )


def test_a_complaint_ends_the_same_subscriptions_and_marks_the_contact_complained(recipient, staff_client, notify):
    complaint(staff_client, recipient, notify)

    status, subscriptions = audience_state(recipient.email)
    assert status == Contact.Status.COMPLAINED
    assert subscriptions == {("Rowing", Subscription.Status.UNSUBSCRIBED), ("Chess", Subscription.Status.UNSUBSCRIBED)}


@pytest.mark.parametrize("entry", UNSUBSCRIBE_ENTRIES)
def test_unsubscribing_a_complained_contact_keeps_it_complained(entry, recipient, staff_client, notify):
    Contact.objects.filter(pk=recipient.contact_id).update(status=Contact.Status.COMPLAINED)

    entry(staff_client, recipient, notify)

    status, subscriptions = audience_state(recipient.email)
    assert status == Contact.Status.COMPLAINED
    assert {status for _, status in subscriptions} == {Subscription.Status.UNSUBSCRIBED}


@pytest.mark.parametrize("entry", [*UNSUBSCRIBE_ENTRIES, complaint])
def test_a_second_time_through_any_entry_changes_nothing(entry, recipient, staff_client, notify):
    entry(staff_client, recipient, notify)
    first = (audience_state(recipient.email), list(Suppression.objects.values_list("email", "reason", "created_at")))

    entry(staff_client, recipient, notify)

    assert (
        audience_state(recipient.email),
        list(Suppression.objects.values_list("email", "reason", "created_at")),
    ) == (first)


def test_the_first_suppression_of_an_address_stands_whatever_suppresses_it_again(recipient, staff_client, notify):
    staff_client.post(
        "/audiences/suppressions/", {"email": "Ann@Example.org", "reason": "manual", "note": "asked by phone"}
    )

    complaint(staff_client, recipient, notify)
    ses_unsubscribe_all(staff_client, recipient, notify)
    entry, created = address_suppress(email=" ANN@example.org ", reason=Suppression.Reason.HARD_BOUNCE)

    assert created is False
    assert (entry.email, entry.reason, entry.note) == ("ann@example.org", "manual", "asked by phone")
    assert Suppression.objects.count() == 1


def test_staff_see_why_an_address_was_suppressed_first(recipient, staff_client, notify):
    complaint(staff_client, recipient, notify)

    response = staff_client.post(
        "/audiences/suppressions/", {"email": recipient.email, "reason": "manual"}, follow=True
    )

    assert "ann@example.org was already suppressed (Complaint)." in response.content.decode()
    assert Suppression.objects.get().reason == Suppression.Reason.COMPLAINT


def test_an_unsubscribe_link_whose_contact_was_deleted_suppresses_through_the_same_door(recipient):
    Contact.objects.filter(pk=recipient.contact_id).delete()
    address_suppress(email=recipient.email, reason=Suppression.Reason.COMPLAINT, note="earlier")

    unsubscribe_link(None, Recipient.objects.get(pk=recipient.pk), None)

    assert list(Suppression.objects.values_list("reason", "note")) == [("complaint", "earlier")]


def test_it_refuses_an_unknown_suppression_reason():
    with pytest.raises(AudienceError):
        address_suppress(email="ann@example.org", reason="because")

    assert not Suppression.objects.exists()


def test_unsubscribing_everywhere_by_address_and_by_id_counts_contacts_changed(recipient):
    other = ContactFactory(email="cy@example.org", status=Contact.Status.BOUNCED)

    organisation = recipient.contact.organisation
    changed = contacts_unsubscribe_everywhere(
        organisation=organisation, emails=["ANN@example.org"], contact_ids=[other.pk]
    )

    assert changed == 1  # the bounced contact keeps its status
    assert Contact.objects.get(pk=other.pk).status == Contact.Status.BOUNCED
    assert contacts_unsubscribe_everywhere(organisation=organisation) == 0


def test_a_hard_bounce_does_not_overwrite_a_complaint(recipient):
    contact_status_mark(organisation=None, email=recipient.email, status=Contact.Status.COMPLAINED)

    changed = contact_status_mark(
        organisation=None,
        email=recipient.email,
        status=Contact.Status.BOUNCED,
        from_statuses=[Contact.Status.ACTIVE, Contact.Status.UNSUBSCRIBED],
    )

    assert changed == 0
    assert Contact.objects.get(pk=recipient.contact_id).status == Contact.Status.COMPLAINED


def test_leaving_named_lists_keeps_the_others_and_the_contact_status(recipient):
    ended = lists_leave(
        organisation=recipient.contact.organisation, email=recipient.email, list_names=["Chess", "No such list"]
    )

    assert ended == 1
    assert audience_state(recipient.email) == (
        Contact.Status.ACTIVE,
        {("Rowing", Subscription.Status.SUBSCRIBED), ("Chess", Subscription.Status.UNSUBSCRIBED)},
    )


RULES = [{"field": "attribute:club", "operator": "equals", "value": "Rowing"}]


def test_a_segment_name_in_use_is_refused_or_numbered():
    segment_save(segment=Segment(), name="Rowers", match="all", rules=RULES)

    with pytest.raises(AudienceError, match="already exists"):
        segment_save(segment=Segment(), name="Rowers", match="all", rules=RULES)
    numbered = segment_save(segment=Segment(), name="Rowers", match="all", rules=RULES, number_if_taken=True)

    assert numbered.name == "Rowers (2)"
    assert sorted(Segment.objects.values_list("name", flat=True)) == ["Rowers", "Rowers (2)"]


def test_a_segment_keeps_its_own_name_when_edited():
    segment = segment_save(segment=Segment(), name="Rowers", match="all", rules=RULES)

    segment_save(segment=segment, name="Rowers", match="any", rules=RULES)

    assert Segment.objects.get().match == "any"


def test_a_segment_whose_rule_cannot_work_is_not_saved():
    with pytest.raises(ValueError, match="engagement"):
        segment_save(
            segment=Segment(), name="Openers", match="all", rules=[{"field": "engagement", "operator": "opened"}]
        )

    assert not Segment.objects.exists()
