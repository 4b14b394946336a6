"""Audiences with several organisations: each club sees, changes and imports only its own people.

Club A is the installation's first organisation (the ``organisation`` fixture; ``staff_client`` is
its administrator); club B is a sibling with the same address among its contacts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audiences.imports import import_job_run
from audiences.models import Contact, ContactList, ImportJob, Segment, Subscription, Suppression
from audiences.services import contacts_unsubscribe_everywhere, lists_leave, preferences_save
from organisations.models import AuditEntry, Organisation
from tests.audiences.test_import_upload import upload
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    EventFactory,
    ImportJobFactory,
    RecipientFactory,
    SegmentFactory,
)
from tracking.models import Event
from tracking.parsing import ParsedEvent
from tracking.policies import policies_apply

pytestmark = pytest.mark.django_db

SHARED = "sam@example.org"


@pytest.fixture
def club_b(organisation) -> Organisation:
    return Organisation.objects.create(name="Bayside Boating", slug="bayside")


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def member_of(organisation: Organisation, email: str = SHARED, list_name: str = "Members", **fields) -> Contact:
    """A contact of the organisation, subscribed to its list ``list_name``."""
    contact_list = ContactList.objects.filter(organisation=organisation, name=list_name).first()
    contact_list = contact_list or ContactListFactory(organisation=organisation, name=list_name)
    contact = ContactFactory(organisation=organisation, email=email, **fields)
    Subscription.objects.create(contact=contact, contact_list=contact_list)
    return contact


def subscription_statuses(contact: Contact) -> set[str]:
    return set(Subscription.objects.filter(contact=contact).values_list("status", flat=True))


def forbidden_entries() -> int:
    return AuditEntry.objects.filter(action=AuditEntry.Action.FORBIDDEN).count()


def test_another_organisations_contacts_lists_segments_and_imports_answer_404_and_are_audited(
    staff_client, club_b, media
):
    theirs = member_of(club_b)
    their_list = ContactList.objects.get(organisation=club_b)
    their_segment = SegmentFactory(organisation=club_b)
    their_import = ImportJobFactory(contact_list=their_list)
    urls = [
        f"/audiences/contacts/{theirs.pk}/",
        f"/audiences/contacts/{theirs.pk}/delete/",
        f"/audiences/lists/{their_list.pk}/",
        f"/audiences/lists/{their_list.pk}/export/",
        f"/audiences/lists/{their_list.pk}/delete/",
        f"/audiences/segments/{their_segment.pk}/",
        f"/audiences/segments/{their_segment.pk}/export/",
        f"/audiences/imports/{their_import.pk}/",
        f"/audiences/imports/{their_import.pk}/progress/",
    ]

    answers = [staff_client.get(url).status_code for url in urls]
    deleted = staff_client.post(f"/audiences/contacts/{theirs.pk}/delete/")

    assert answers == [404] * len(urls)
    assert deleted.status_code == 404 and Contact.objects.filter(pk=theirs.pk).exists()
    assert forbidden_entries() == len(urls) + 1


def test_pages_show_only_the_organisations_own_contacts_lists_segments_and_imports(
    staff_client, organisation, club_b, media
):
    member_of(organisation, email="ada@example.org", list_name="Our rowers")
    member_of(club_b, email="bea@example.org", list_name="Their sailors")
    SegmentFactory(organisation=organisation, name="Our segment")
    SegmentFactory(organisation=club_b, name="Their segment")
    ImportJobFactory(contact_list=ContactList.objects.get(name="Their sailors"), original_name="theirs.csv")

    contacts = staff_client.get("/audiences/contacts/").content.decode()
    lists = staff_client.get("/audiences/lists/").content.decode()
    segments = staff_client.get("/audiences/segments/").content.decode()
    imports = staff_client.get("/audiences/imports/").content.decode()
    search = staff_client.get("/audiences/contacts/", {"q": "bea"}).content.decode()

    assert "ada@example.org" in contacts and "bea@example.org" not in contacts
    assert "Our rowers" in contacts and "Their sailors" not in contacts  # the list filter and bulk action
    assert "Our rowers" in lists and "Their sailors" not in lists
    assert "Our segment" in segments and "Their segment" not in segments
    assert "theirs.csv" not in imports
    assert "bea@example.org" not in search


def test_the_same_address_is_a_separate_contact_in_each_organisation(staff_client, organisation, club_b):
    member_of(club_b, first_name="Samantha")

    response = staff_client.post(
        "/audiences/contacts/new/", {"email": SHARED, "first_name": "Sam", "last_name": "", "attributes": ""}
    )

    assert response.status_code == 302
    assert set(Contact.objects.filter(email=SHARED).values_list("organisation__slug", "first_name")) == {
        (organisation.slug, "Sam"),
        ("bayside", "Samantha"),
    }


def test_forms_posted_with_another_organisations_list_give_a_field_error_and_save_nothing(
    staff_client, organisation, club_b, media
):
    ours = member_of(organisation)
    their_list = ContactListFactory(organisation=club_b, name="Their list")

    contact_form = staff_client.post(
        "/audiences/contacts/new/",
        {"email": "new@example.org", "first_name": "", "last_name": "", "attributes": "", "lists": [their_list.pk]},
    )
    bulk = staff_client.post(
        "/audiences/contacts/bulk/",
        {"action": "add_to_list", "contact_list": their_list.pk, "selected": [ours.pk]},
        follow=True,
    )
    import_form = staff_client.post(
        "/audiences/imports/",
        {"file": upload("members.csv", b"email\nzoe@example.org\n"), "contact_list": their_list.pk, "new_list": ""},
    )
    segment_form = staff_client.post(
        "/audiences/segments/new/",
        {
            "name": "Sneaky",
            "match": "all",
            "rules-TOTAL_FORMS": "1",
            "rules-INITIAL_FORMS": "0",
            "rules-0-rule": "list:member",
            "rules-0-contact_list": their_list.pk,
        },
    )

    assert contact_form.status_code == 200 and contact_form.context["form"].errors["lists"]
    assert "not one of the available choices" in bulk.content.decode()
    assert import_form.status_code == 200 and import_form.context["form"].errors["contact_list"]
    assert segment_form.status_code == 200 and segment_form.context["formset"].forms[0].errors["contact_list"]
    assert not Contact.objects.filter(email="new@example.org").exists()
    assert not Subscription.objects.filter(contact_list=their_list).exists()
    assert not ImportJob.objects.exists() and not Segment.objects.exists()


def test_unsubscribing_in_one_organisation_leaves_the_other_organisations_contact_subscribed(organisation, club_b):
    ours, theirs = member_of(organisation), member_of(club_b)

    changed = contacts_unsubscribe_everywhere(organisation=organisation, emails=[SHARED])
    lists_leave(organisation=organisation, email=SHARED, list_names=None)
    preferences_save(
        contact=theirs, list_ids=set(ContactList.objects.filter(organisation=club_b).values_list("pk", flat=True))
    )

    ours.refresh_from_db()
    theirs.refresh_from_db()
    assert changed == 1
    assert (ours.status, subscription_statuses(ours)) == (Contact.Status.UNSUBSCRIBED, {"unsubscribed"})
    assert (theirs.status, subscription_statuses(theirs)) == (Contact.Status.ACTIVE, {"subscribed"})


def policy_event(kind: str, recipient, **detail) -> tuple[Event, ParsedEvent]:
    event = EventFactory(event_type=kind, recipient=recipient, bounce_type=detail.pop("bounce_type", ""))
    parsed = ParsedEvent(
        event_type=kind,
        ses_message_id=event.ses_message_id,
        occurred_at=datetime.now(UTC),
        sent_at=None,
        addresses=[recipient.email],
        tags={},
        detail=detail,
    )
    return event, parsed


def test_a_complaint_suppresses_everywhere_records_whose_campaign_caused_it_and_leaves_only_its_lists(
    organisation, club_b
):
    ours, theirs = member_of(organisation), member_of(club_b)
    their_campaign = CampaignFactory(organisation=club_b)
    recipient = RecipientFactory(campaign=their_campaign, contact=theirs, sent=True)

    policies_apply([policy_event(Event.Type.COMPLAINT, recipient)])

    ours.refresh_from_db()
    theirs.refresh_from_db()
    entry = Suppression.objects.get(email=SHARED)
    assert entry.organisation == club_b
    assert ours.status == theirs.status == Contact.Status.COMPLAINED
    assert subscription_statuses(theirs) == {"unsubscribed"}
    assert subscription_statuses(ours) == {"subscribed"}  # club A's consent is its own (the suppression still holds)


def test_an_ses_unsubscribe_all_unsubscribes_only_the_contact_of_the_campaigns_organisation(organisation, club_b):
    ours, theirs = member_of(organisation), member_of(club_b)
    recipient = RecipientFactory(campaign=CampaignFactory(organisation=club_b), contact=theirs, sent=True)

    policies_apply([policy_event(Event.Type.SUBSCRIPTION, recipient, newTopicPreferences={"unsubscribeAll": True})])

    ours.refresh_from_db()
    theirs.refresh_from_db()
    assert (theirs.status, subscription_statuses(theirs)) == (Contact.Status.UNSUBSCRIBED, {"unsubscribed"})
    assert (ours.status, subscription_statuses(ours)) == (Contact.Status.ACTIVE, {"subscribed"})
    assert Suppression.objects.get(email=SHARED).organisation == club_b


def test_the_suppression_page_shows_only_the_organisations_addresses_and_never_names_another_club(
    staff_client, organisation, club_b
):
    child = Organisation.objects.create(name="Junior Rowers", slug="juniors", parent=organisation)
    member_of(organisation, email="ours@example.org")
    member_of(organisation, email="child@example.org")
    member_of(organisation, email="shared@example.org")
    member_of(club_b, email="shared@example.org")
    member_of(club_b, email="only-theirs@example.org")
    Suppression.objects.create(email="ours@example.org", reason="hard_bounce", organisation=organisation)
    Suppression.objects.create(email="child@example.org", reason="complaint", organisation=child)
    Suppression.objects.create(email="shared@example.org", reason="complaint", organisation=club_b, note="B's note")
    hidden = Suppression.objects.create(email="only-theirs@example.org", reason="hard_bounce", organisation=club_b)

    page = staff_client.get("/audiences/suppressions/").content.decode()
    remove_hidden = staff_client.post(f"/audiences/suppressions/{hidden.pk}/remove/")

    assert "ours@example.org" in page and "your organisation’s campaign" in page
    assert "child@example.org" in page and "Junior Rowers" in page
    assert "shared@example.org" in page and "another organisation’s mail" in page
    assert "only-theirs@example.org" not in page
    assert "Bayside" not in page and "B&#x27;s note" not in page and "B's note" not in page
    assert remove_hidden.status_code == 404 and Suppression.objects.filter(pk=hidden.pk).exists()


def test_suppression_changes_deletions_and_exports_leave_audit_entries(staff_client, organisation, club_b):
    contact = member_of(organisation)
    contact_list = ContactList.objects.get(organisation=organisation)
    segment = SegmentFactory(organisation=organisation)

    staff_client.post("/audiences/suppressions/", {"email": "x@example.org", "reason": "manual"})
    entry = Suppression.objects.get(email="x@example.org")
    staff_client.post(f"/audiences/suppressions/{entry.pk}/remove/")
    staff_client.get(f"/audiences/lists/{contact_list.pk}/export/").getvalue()
    staff_client.post(f"/audiences/segments/{segment.pk}/delete/")
    staff_client.post(f"/audiences/lists/{contact_list.pk}/delete/")
    staff_client.post(f"/audiences/contacts/{contact.pk}/delete/")

    entries = list(
        AuditEntry.objects.exclude(action=AuditEntry.Action.LOGIN)
        .order_by("id")
        .values_list("action", "organisation_id", "rows")
    )
    assert entry.organisation == organisation
    assert entries == [
        ("suppression", organisation.pk, None),
        ("suppression", organisation.pk, None),
        ("export", organisation.pk, 1),
        ("delete", organisation.pk, None),
        ("delete", organisation.pk, None),
        ("delete", organisation.pk, None),
    ]


def test_segment_rules_count_only_the_organisations_contacts_and_its_own_campaigns(staff_client, organisation, club_b):
    member_of(organisation, email="ada@example.org", attributes={"club": "Rowing"})
    member_of(club_b, email="bea@example.org", attributes={"club": "Rowing"})
    theirs = member_of(club_b, email="cy@example.org", attributes={"club": "Sailing"})
    their_campaign = CampaignFactory(organisation=club_b)
    EventFactory(
        event_type=Event.Type.OPEN, recipient=RecipientFactory(campaign=their_campaign, contact=theirs, sent=True)
    )
    rules = {
        "name": "Rowers",
        "match": "all",
        "rules-TOTAL_FORMS": "1",
        "rules-INITIAL_FORMS": "0",
        "rules-0-rule": "attribute:equals",
        "rules-0-attribute": "club",
        "rules-0-value": "rowing",
    }
    opened_lately = {**rules, "rules-0-rule": "engagement:opened", "rules-0-days": "30"}
    their_campaign_rule = {**rules, "rules-0-rule": "engagement:opened", "rules-0-campaign": their_campaign.pk}

    rowers = staff_client.post("/audiences/segments/preview/", rules)
    openers = staff_client.post("/audiences/segments/preview/", opened_lately)
    refused = staff_client.post("/audiences/segments/preview/", their_campaign_rule)

    assert rowers.context["count"] == 1
    assert openers.context["count"] == 0
    assert refused.context["count"] is None and refused.context["notes"]


def test_an_import_writes_into_its_own_organisation_and_its_task_rechecks_the_organisation(organisation, club_b, media):
    theirs = member_of(club_b, first_name="Samantha")
    our_list = ContactListFactory(organisation=organisation, name="Imported")
    job = ImportJobFactory(
        contact_list=our_list, file__data=f"email,first_name\n{SHARED},Sam\nnew@example.org,New\n".encode()
    )

    assert import_job_run(job.pk, club_b.pk) == "not queued"  # queued for another organisation: not claimed
    assert import_job_run(job.pk, organisation.pk) == "done"

    ours = Contact.objects.get(organisation=organisation, email=SHARED)
    theirs.refresh_from_db()
    assert (ours.first_name, theirs.first_name) == ("Sam", "Samantha")
    assert set(Subscription.objects.filter(contact_list=our_list).values_list("contact__email", flat=True)) == {
        SHARED,
        "new@example.org",
    }
    assert not Contact.objects.filter(organisation=club_b, email="new@example.org").exists()
    audit_entry = AuditEntry.objects.get(action=AuditEntry.Action.IMPORT)
    assert (audit_entry.organisation, audit_entry.rows) == (organisation, 2)


def test_an_import_job_whose_list_is_another_organisations_is_refused_and_writes_nothing(organisation, club_b, media):
    job = ImportJobFactory(contact_list=ContactListFactory(organisation=club_b), organisation=organisation)

    assert import_job_run(job.pk, organisation.pk) == "refused"

    job.refresh_from_db()
    assert job.status == ImportJob.Status.REFUSED and "another organisation" in job.error
    assert not Contact.objects.exists()


def test_the_import_command_needs_the_organisation_once_there_are_several(organisation, club_b, tmp_path: Path):
    path = tmp_path / "members.csv"
    path.write_text(f"email\n{SHARED}\n", encoding="utf-8")

    with pytest.raises(CommandError, match="several organisations"):
        call_command("import_contacts", str(path), "--list", "Members")
    with pytest.raises(CommandError, match="no organisation “nowhere”"):
        call_command("import_contacts", str(path), "--list", "Members", "--organisation", "nowhere")
    call_command("import_contacts", str(path), "--list", "Members", "--organisation", "bayside")

    assert list(Contact.objects.values_list("organisation", "email")) == [(club_b.pk, SHARED)]
    assert ContactList.objects.get().organisation == club_b
    assert AuditEntry.objects.get(action=AuditEntry.Action.IMPORT).organisation == club_b


def test_the_import_command_needs_no_organisation_when_there_is_one(organisation, tmp_path: Path):
    path = tmp_path / "members.csv"
    path.write_text(f"email\n{SHARED}\n", encoding="utf-8")

    call_command("import_contacts", str(path), "--list", "Members")

    assert Contact.objects.get().organisation == organisation


def test_a_suppression_caused_by_another_organisations_mail_is_lifted_only_by_a_site_operator(
    staff_client, organisation, club_b, django_user_model, client
):
    member_of(organisation, email="shared@example.org")
    member_of(club_b, email="shared@example.org")
    theirs = Suppression.objects.create(email="shared@example.org", reason="complaint", organisation=club_b)
    ours = Suppression.objects.create(email="ours@example.org", reason="hard_bounce", organisation=organisation)
    member_of(organisation, email="ours@example.org")

    refused = staff_client.post(f"/audiences/suppressions/{theirs.pk}/remove/", follow=True)
    lifted = staff_client.post(f"/audiences/suppressions/{ours.pk}/remove/")

    assert "only a site operator can" in refused.content.decode()
    assert Suppression.objects.filter(pk=theirs.pk).exists()
    assert lifted.status_code == 302 and not Suppression.objects.filter(pk=ours.pk).exists()
    operator = django_user_model.objects.create_superuser("op", "op@example.org", "correct-horse-battery")
    client.force_login(operator)
    client.post(f"/audiences/suppressions/{theirs.pk}/remove/")
    assert not Suppression.objects.filter(pk=theirs.pk).exists()
