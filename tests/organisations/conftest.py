"""Two organisations (a club and its sibling) and named users with a role in each."""

from __future__ import annotations

import pytest

from organisations.models import Membership, Organisation, Role


@pytest.fixture
def club(organisation):
    """The installation's organisation, renamed: the club the tests work in."""
    organisation.name, organisation.slug = "Riverside Rowing", "riverside"
    organisation.save()
    return organisation


@pytest.fixture
def other_club(club):
    return Organisation.objects.create(name="Hilltop Chess", slug="hilltop")


@pytest.fixture
def make_member(django_user_model):
    def make(username: str, organisation: Organisation, role: str = Role.VIEWER):
        user = django_user_model.objects.filter(username=username).first()
        if user is None:
            user = django_user_model.objects.create_user(username=username, password="correct-horse-battery")
        Membership.objects.create(user=user, organisation=organisation, role=role)
        return user

    return make


@pytest.fixture
def club_admin(club, make_member):
    return make_member("ada.admin", club, Role.ADMINISTRATOR)


@pytest.fixture
def admin_client(client, club_admin):
    client.force_login(club_admin)
    return client
