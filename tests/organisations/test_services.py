"""organisations.services: every write, its audit entry, and the rules it refuses to break."""

from __future__ import annotations

import pytest

from organisations.models import AuditEntry, Membership, Organisation, Role
from organisations.services import (
    OrganisationRefused,
    membership_change,
    membership_grant,
    membership_revoke,
    organisation_create,
    organisation_deactivate,
    organisation_delete,
    organisation_update,
)
from tests.factories import CampaignFactory, ContactFactory

pytestmark = pytest.mark.django_db


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def test_granting_a_role_creates_the_membership_and_an_audit_entry(club, django_user_model):
    bob = django_user_model.objects.create_user(username="bob")

    membership = membership_grant(organisation=club, user=bob, role=Role.EDITOR)

    assert (membership.organisation, membership.user, membership.role) == (club, bob, Role.EDITOR)
    [entry] = entries(AuditEntry.Action.ROLE_GRANTED)
    assert entry.organisation == club
    assert entry.summary == "Made bob Editor of Riverside Rowing"


def test_granting_again_changes_the_role_instead_of_adding_a_second_membership(club, make_member):
    bob = make_member("bob", club, Role.VIEWER)

    membership_grant(organisation=club, user=bob, role=Role.SENDER)

    assert list(Membership.objects.filter(user=bob).values_list("role", flat=True)) == [Role.SENDER]
    assert entries(AuditEntry.Action.ROLE_GRANTED)[-1].summary == "Raised bob from Viewer to Sender in Riverside Rowing"


def test_an_unknown_role_is_refused_with_the_list_of_roles(club, django_user_model):
    bob = django_user_model.objects.create_user(username="bob")

    with pytest.raises(OrganisationRefused, match="viewer, editor, sender, administrator"):
        membership_grant(organisation=club, user=bob, role="owner")
    assert not Membership.objects.filter(user=bob).exists()


def test_changing_a_role_is_audited_with_old_and_new_role(club, club_admin, make_member):
    bob = make_member("bob", club, Role.SENDER)
    membership = Membership.objects.get(user=bob)

    membership_change(membership=membership, role=Role.VIEWER)

    membership.refresh_from_db()
    assert membership.role == Role.VIEWER
    assert (
        entries(AuditEntry.Action.ROLE_GRANTED)[-1].summary == "Lowered bob from Sender to Viewer in Riverside Rowing"
    )


def test_revoking_deletes_the_membership_and_records_the_removal(club, club_admin, make_member):
    bob = make_member("bob", club, Role.EDITOR)

    membership_revoke(membership=Membership.objects.get(user=bob))

    assert not Membership.objects.filter(user=bob).exists()
    [entry] = entries(AuditEntry.Action.ROLE_REMOVED)
    assert (entry.organisation, entry.summary) == (club, "Removed bob (Editor) from Riverside Rowing")


def test_the_last_administrator_can_be_neither_demoted_nor_removed(club, club_admin):
    membership = Membership.objects.get(user=club_admin)

    with pytest.raises(OrganisationRefused, match="last administrator of Riverside Rowing"):
        membership_change(membership=membership, role=Role.SENDER)
    with pytest.raises(OrganisationRefused, match="last administrator"):
        membership_revoke(membership=membership)

    membership.refresh_from_db()
    assert membership.role == Role.ADMINISTRATOR
    assert not AuditEntry.objects.filter(action__in=[AuditEntry.Action.ROLE_GRANTED, AuditEntry.Action.ROLE_REMOVED])


def test_an_administrator_may_step_down_once_another_administrator_exists(club, club_admin, make_member):
    make_member("bea.admin", club, Role.ADMINISTRATOR)

    membership_revoke(membership=Membership.objects.get(user=club_admin))

    assert list(Membership.objects.filter(organisation=club).values_list("user__username", flat=True)) == ["bea.admin"]


def test_another_organisations_administrator_does_not_count_for_the_last_administrator_rule(
    club, other_club, club_admin, make_member
):
    make_member("bea.admin", other_club, Role.ADMINISTRATOR)

    with pytest.raises(OrganisationRefused):
        membership_revoke(membership=Membership.objects.get(user=club_admin))


def test_creating_an_organisation_makes_its_slug_and_audits_it_in_the_parent(club):
    child = organisation_create(name="Junior Rowers", parent=club)

    assert (child.slug, child.parent) == ("junior-rowers", club)
    [entry] = entries(AuditEntry.Action.ORGANISATION)
    assert (entry.organisation, entry.summary) == (
        club,
        "Created the organisation Junior Rowers (junior-rowers) under Riverside Rowing",
    )


def test_a_taken_slug_or_empty_name_is_refused(club):
    with pytest.raises(OrganisationRefused, match="taken"):
        organisation_create(name="Another", slug="riverside")
    with pytest.raises(OrganisationRefused, match="needs a name"):
        organisation_create(name="   ")
    assert Organisation.objects.count() == 1


def test_updating_names_the_changed_fields_in_the_audit_entry(club):
    changed = organisation_update(
        organisation=club, changes={"name": "Riverside RC", "reply_to": "hello@riverside.example", "is_active": True}
    )

    club.refresh_from_db()
    assert changed == ["name", "reply_to"]
    assert (club.name, club.reply_to) == ("Riverside RC", "hello@riverside.example")
    assert entries(AuditEntry.Action.ORGANISATION)[-1].summary == "Changed Riverside RC: name, Default reply-to"


def test_an_update_that_changes_nothing_writes_nothing(club):
    assert organisation_update(organisation=club, changes={"name": club.name}) == []
    assert not AuditEntry.objects.exists()


def test_deactivating_keeps_the_organisation_and_is_audited(club, other_club):
    organisation_deactivate(organisation=other_club)

    other_club.refresh_from_db()
    assert other_club.is_active is False
    assert entries(AuditEntry.Action.ORGANISATION)[-1].organisation == other_club


def test_deleting_an_organisation_with_campaigns_or_contacts_is_refused(club, other_club):
    CampaignFactory(organisation=other_club)

    with pytest.raises(OrganisationRefused, match="deactivate it instead"):
        organisation_delete(organisation=other_club)
    assert Organisation.objects.filter(pk=other_club.pk).exists()

    third = Organisation.objects.create(name="Third", slug="third")
    ContactFactory(organisation=third)
    with pytest.raises(OrganisationRefused, match="deactivate it instead"):
        organisation_delete(organisation=third)


def test_an_empty_organisation_is_deleted_with_its_memberships(club, other_club, make_member):
    make_member("bob", other_club, Role.EDITOR)

    organisation_delete(organisation=other_club)

    assert not Organisation.objects.filter(pk=other_club.pk).exists()
    assert not Membership.objects.filter(user__username="bob").exists()
    assert entries(AuditEntry.Action.DELETE)[-1].summary == "Deleted the organisation Hilltop Chess"


def test_the_audit_log_is_append_only(club):
    organisation_update(organisation=club, changes={"name": "Renamed"})
    entry = AuditEntry.objects.get()

    entry.summary = "Nothing happened"
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        entry.delete()
    with pytest.raises(PermissionError):
        AuditEntry.objects.filter(pk=entry.pk).update(summary="Nothing happened")
    with pytest.raises(PermissionError):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get().summary == "Changed Renamed: name"
