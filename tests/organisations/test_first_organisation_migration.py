"""Upgrading to organisations: a database populated just before them (audiences 0001, campaigns
0010, no organisations app) comes through the migrations with every row in the one organisation
"Our organisation" (slug ``main``), its staff users its administrators and other users members of
nothing, so that nobody loses a row or access on upgrade.

The test migrates the shared test database backwards; it ends by migrating it to the latest
migrations again, whatever happened, because the tests after it need the current schema.
"""

from __future__ import annotations

import pytest
from django.apps import apps as current_apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from organisations.models import FIRST_ORGANISATION_NAME, Membership, Organisation, Role
from tests.migrations_helpers import applied_state, migrate_to_latest, migrations_enabled

# The last migrations before the organisations: the apps that gained an `organisation` field are
# taken back to them, and the organisations app (and whatever depends on it) is unapplied.
BEFORE_ORGANISATIONS = [
    ("audiences", "0001_initial"),
    ("campaigns", "0010_audience_models_moved"),
    ("organisations", None),
]
# Every model with an `organisation` field, as (app, model) at the latest migrations.
OWNED_MODELS = [
    ("audiences", "Contact"),
    ("audiences", "ContactList"),
    ("audiences", "Segment"),
    ("audiences", "ImportJob"),
    ("campaigns", "Campaign"),
    ("campaigns", "Layout"),
    ("campaigns", "CampaignTemplate"),
    ("campaigns", "CampaignAttachment"),
]


def migrate_to_before_organisations():
    MigrationExecutor(connection).migrate(BEFORE_ORGANISATIONS)
    return applied_state()


def rows_write(old_apps) -> dict[str, int]:
    """A club's data as it stood before organisations; returns the users' ids."""
    model = old_apps.get_model
    staff = model("auth", "User").objects.create(username="stella", is_staff=True, email="stella@club.example")
    member = model("auth", "User").objects.create(username="norm", email="norm@club.example")
    members = model("audiences", "ContactList").objects.create(name="Members")
    juniors = model("audiences", "ContactList").objects.create(name="Juniors")
    for number in range(3):
        contact = model("audiences", "Contact").objects.create(email=f"member{number}@club.example", first_name="M")
        model("audiences", "Subscription").objects.create(contact=contact, contact_list=members)
    model("audiences", "Segment").objects.create(
        name="Gold", rules=[{"field": "attribute:plan", "operator": "equals", "value": "gold"}]
    )
    model("audiences", "ImportJob").objects.create(
        file="imports/members.csv", original_name="members.csv", status="done", contact_list=juniors, created_by=staff
    )
    layout = model("campaigns", "Layout").objects.create(
        name="Club layout", html='<body>{{ content }}<a href="{{ unsubscribe_url }}">Unsubscribe</a></body>'
    )
    model("campaigns", "CampaignTemplate").objects.create(
        name="Newsletter", subject="News", html_body="<p>News</p>", layout=layout
    )
    for name in ("Spring news", "Summer news"):
        campaign = model("campaigns", "Campaign").objects.create(
            name=name, subject=name, from_email="news@club.example", html_body="<p>Hi</p>", layout=layout
        )
        campaign.include_lists.add(members)
        model("campaigns", "CampaignAttachment").objects.create(
            campaign=campaign,
            file="attachments/programme.pdf",
            filename="programme.pdf",
            content_type="application/pdf",
            size=9,
        )
    return {"staff": staff.pk, "member": member.pk}


@pytest.mark.django_db(transaction=True)
def test_every_row_and_every_staff_user_join_the_first_organisation():
    with migrations_enabled():
        try:
            old_apps = migrate_to_before_organisations()
            assert "organisations" not in {model._meta.app_label for model in old_apps.get_models()}
            users = rows_write(old_apps)
            counts = {name: old_apps.get_model(app, name).objects.count() for app, name in OWNED_MODELS}

            migrate_to_latest()

            organisation = Organisation.objects.get()
            assert (organisation.name, organisation.slug, organisation.parent) == (
                FIRST_ORGANISATION_NAME,
                "main",
                None,
            )
            for app, name in OWNED_MODELS:
                rows = current_apps.get_model(app, name).objects
                assert rows.count() == counts[name] > 0, name
                assert set(rows.values_list("organisation_id", flat=True)) == {organisation.pk}, name
            assert list(Membership.objects.values_list("user_id", "organisation_id", "role")) == [
                (users["staff"], organisation.pk, Role.ADMINISTRATOR)
            ]
            assert not Membership.objects.filter(user_id=users["member"]).exists()
        finally:
            migrate_to_latest()
