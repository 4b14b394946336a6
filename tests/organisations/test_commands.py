"""manage.py organisation_create and organisation_grant."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from organisations.models import AuditEntry, Membership, Organisation, Role

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_organisation_create_makes_a_top_level_organisation_with_a_slug_from_its_name(club):
    assert run("organisation_create", "State Rowing Association") == (
        "Created State Rowing Association (slug state-rowing-association).\n"
    )
    created = Organisation.objects.get(slug="state-rowing-association")
    assert created.parent is None
    assert AuditEntry.objects.filter(action=AuditEntry.Action.ORGANISATION, object_id=str(created.pk)).exists()


def test_organisation_create_puts_it_under_its_parent_with_the_given_slug(club):
    run("organisation_create", "Juniors", "--slug", "juniors", "--parent", "riverside")

    assert Organisation.objects.get(slug="juniors").parent == club


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Juniors", "--parent", "nowhere"], "no organisation with the slug “nowhere”"),
        (["Another", "--slug", "riverside"], "taken"),
    ],
)
def test_organisation_create_refuses_bad_input_with_a_clear_error(club, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("organisation_create", *args)
    assert Organisation.objects.count() == 1


def test_organisation_grant_gives_and_changes_a_role(club, django_user_model):
    django_user_model.objects.create_user(username="bob")

    assert run("organisation_grant", "bob", "riverside", "editor") == "bob is Editor of Riverside Rowing.\n"
    run("organisation_grant", "bob", "riverside", "sender")

    assert list(Membership.objects.filter(user__username="bob").values_list("role", flat=True)) == [Role.SENDER]
    assert AuditEntry.objects.filter(action=AuditEntry.Action.ROLE_GRANTED).count() == 2


def test_organisation_grant_revoke_removes_the_membership(club, club_admin, make_member):
    make_member("bob", club, Role.EDITOR)

    assert run("organisation_grant", "bob", "riverside", "editor", "--revoke") == (
        "bob was removed from Riverside Rowing.\n"
    )
    assert not Membership.objects.filter(user__username="bob").exists()
    assert AuditEntry.objects.filter(action=AuditEntry.Action.ROLE_REMOVED).count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "riverside", "editor"], "no user “nobody”"),
        (["ada.admin", "nowhere", "editor"], "no organisation with the slug “nowhere”"),
        (
            ["ada.admin", "riverside", "owner"],
            "“owner” is not a role. The roles are: viewer, editor, sender, administrator",
        ),
        (["ada.admin", "riverside", "--revoke"], "last administrator of Riverside Rowing"),
        (["ada.admin", "riverside", "viewer"], "last administrator of Riverside Rowing"),
    ],
)
def test_organisation_grant_refuses_bad_input_and_the_last_administrator(club, club_admin, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("organisation_grant", *args)
    assert Membership.objects.get(user=club_admin).role == Role.ADMINISTRATOR


def test_organisation_grant_revoke_of_a_non_member_says_so(club, other_club, club_admin):
    with pytest.raises(CommandError, match="not a member of Hilltop Chess"):
        call_command("organisation_grant", "ada.admin", "hilltop", "--revoke")
