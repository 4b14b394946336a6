"""`make run`'s demo data: a national body with two clubs, each with its own people, list and draft
campaign, and one login per role in the first club."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from audiences.models import Contact, ContactList
from campaigns.models import Campaign
from cobalt_mail import devserver
from organisations.models import Membership, Organisation, Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def bootstrapped(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STAFF_USERNAME", "newcomer")
    monkeypatch.setenv("STAFF_PASSWORD", "a-long-password-1")
    call_command("bootstrap")
    return (tmp_path / "var" / "demo-password.txt").read_text().strip()


def test_the_demo_is_a_national_body_with_two_clubs_each_with_its_own_data(bootstrapped):
    national = Organisation.objects.get(parent=None)
    clubs = list(Organisation.objects.filter(parent=national).order_by("slug"))

    assert national.name == "Cobalt Sports Federation"
    assert [club.slug for club in clubs] == ["club1", "club2"]
    for club in clubs:
        assert Contact.objects.filter(organisation=club).count() == 20
        assert ContactList.objects.filter(organisation=club).count() == 1
        assert list(Campaign.objects.filter(organisation=club).values_list("status", flat=True)) == ["draft"]
        assert not Contact.objects.filter(organisation=club, email__endswith="@example.org").exists()
    assert Contact.objects.filter(organisation=national).count() == 200


def test_the_demo_has_one_login_per_role_in_the_first_club_and_the_second_clubs_administrator(bootstrapped, client):
    roles = {
        (membership.user.username, membership.organisation.slug): membership.role
        for membership in Membership.objects.select_related("user", "organisation")
    }

    assert roles == {
        ("club1-viewer", "club1"): Role.VIEWER,
        ("club1-editor", "club1"): Role.EDITOR,
        ("club1-sender", "club1"): Role.SENDER,
        ("club1-admin", "club1"): Role.ADMINISTRATOR,
        ("club2-admin", "club2"): Role.ADMINISTRATOR,
    }
    editor = get_user_model().objects.get(username="club1-editor")
    assert editor.check_password(bootstrapped)
    client.force_login(editor)
    page = client.get("/organisations/")
    assert page.context["organisation"].slug == "club1"


def test_running_bootstrap_again_changes_nothing(bootstrapped):
    counts = (
        Organisation.objects.count(),
        Contact.objects.count(),
        Campaign.objects.count(),
        Membership.objects.count(),
    )

    call_command("bootstrap")

    assert counts == (
        Organisation.objects.count(),
        Contact.objects.count(),
        Campaign.objects.count(),
        Membership.objects.count(),
    )
    assert get_user_model().objects.get(username="club1-admin").check_password(bootstrapped)


def test_the_banner_prints_the_demo_logins_and_their_password(monkeypatch, tmp_path):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "demo-password.txt").write_text("demo-pass-123\n")
    monkeypatch.setattr(devserver, "ROOT", Path(tmp_path))

    text = devserver.banner(devserver.development_environment())

    assert "club1-viewer, club1-editor, club1-sender, club1-admin, club2-admin, password demo-pass-123" in text
