"""Issue #13 moved models between apps (to `audiences` and `stats`) with migrations that keep the
tables: a database populated at the old layout must come through with every row, id, relation
and content type, and the move must be reversible.

These tests migrate the shared test database backwards; each ends by migrating it to the latest
migrations again, whatever happened, because the tests after it need the current schema.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from django.apps import apps as current_apps
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Model

from audiences.models import AddressHealth, Contact, ImportJob, Segment, Suppression
from audiences.segments import segment_filter
from campaigns.models import Campaign
from tests.migrations_helpers import (
    migrate_to_latest,
    migrate_to_old_layout,
    migrations_enabled,
    table_rows,
)

# (app before the move, model, app after the move)
MOVED_MODELS = [
    ("campaigns", "Contact", "audiences"),
    ("campaigns", "ContactList", "audiences"),
    ("campaigns", "Subscription", "audiences"),
    ("campaigns", "Segment", "audiences"),
    ("campaigns", "ImportJob", "audiences"),
    ("tracking", "Suppression", "audiences"),
    ("tracking", "AddressHealth", "audiences"),
    ("tracking", "CampaignStats", "stats"),
    ("tracking", "RecipientActivity", "stats"),
    ("reports", "CampaignBreakdown", "stats"),
]
OLD_HOME = {model: old_app for old_app, model, _ in MOVED_MODELS} | {"Campaign": "campaigns", "Recipient": "campaigns"}
NEW_HOME = {model: new_app for _, model, new_app in MOVED_MODELS} | {"Campaign": "campaigns", "Recipient": "campaigns"}
CAMPAIGN_AUDIENCE_FIELDS = ("include_lists", "exclude_lists", "include_segments", "exclude_segments")
# Every table the move concerns: the moved models', the campaigns and recipients pointing at them,
# and the campaign ↔ list / segment link tables.
TABLES = [current_apps.get_model(NEW_HOME[model], model)._meta.db_table for model in NEW_HOME] + [
    Campaign._meta.get_field(name).remote_field.through._meta.db_table for name in CAMPAIGN_AUDIENCE_FIELDS
]
DELIVERED_AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def models_of(apps, home: dict[str, str]) -> Callable[[str], type[Model]]:
    """The model class of a name in `apps` (historical or current), found in its app at that layout."""
    return lambda name: apps.get_model(settings.AUTH_USER_MODEL) if name == "User" else apps.get_model(home[name], name)


def rows_write(model: Callable[[str], type[Model]]) -> dict[str, int]:
    """One row of every moved model, linked as the app links them; returns their ids by name.

    `model(name)` gives the class: historical (old layout) or current, both have the same fields.
    """
    user = model("User").objects.create(username="olga", email="olga@example.org")
    members = model("ContactList").objects.create(name="Members", description="Paying members")
    former = model("ContactList").objects.create(name="Former members")
    contact = model("Contact").objects.create(
        email="ada@example.org",
        first_name="Ada",
        last_name="Lovelace",
        attributes={"city": "London", "plan": "gold"},
        source="import",
    )
    subscription = model("Subscription").objects.create(contact=contact, contact_list=members)
    segment = model("Segment").objects.create(
        name="Gold members",
        match="all",
        rules=[
            {"field": "list", "operator": "member", "value": members.pk},
            {"field": "attribute:plan", "operator": "equals", "value": "gold"},
        ],
    )
    lapsed = model("Segment").objects.create(
        name="Lapsed", rules=[{"field": "engagement", "operator": "not_opened", "value": {"days": 180}}]
    )
    import_job = model("ImportJob").objects.create(
        file="imports/2026/11/members.csv",
        original_name="members.csv",
        status="done",
        contact_list=members,
        created_by=user,
        rows_read=1,
        created=1,
        subscribed=1,
    )
    campaign = model("Campaign").objects.create(
        name="November news", subject="News", from_email="news@example.org", html_body="<p>Hello</p>", status="sent"
    )
    campaign.include_lists.add(members)
    campaign.exclude_lists.add(former)
    campaign.include_segments.add(segment)
    campaign.exclude_segments.add(lapsed)
    recipient = model("Recipient").objects.create(
        campaign=campaign, contact=contact, email=contact.email, status="sent", ses_message_id="0100-ada"
    )
    suppression = model("Suppression").objects.create(
        email="gone@example.org", reason="hard_bounce", note="Mailbox does not exist", created_by=user
    )
    health = model("AddressHealth").objects.create(
        email="flaky@example.org", consecutive_soft_bounces=2, last_soft_bounce_message_id="0100-flaky"
    )
    stats = model("CampaignStats").objects.create(campaign=campaign, sent=1, delivered=1, unique_opens=1)
    activity = model("RecipientActivity").objects.create(
        recipient=recipient, kind="delivered", occurred_at=DELIVERED_AT
    )
    breakdown = model("CampaignBreakdown").objects.create(campaign=campaign, kind="domain", key="example.org", count=1)
    return {
        "user": user.pk,
        "members": members.pk,
        "former": former.pk,
        "contact": contact.pk,
        "subscription": subscription.pk,
        "segment": segment.pk,
        "lapsed": lapsed.pk,
        "import_job": import_job.pk,
        "campaign": campaign.pk,
        "recipient": recipient.pk,
        "suppression": suppression.pk,
        "health": health.pk,
        "stats": stats.pk,
        "activity": activity.pk,
        "breakdown": breakdown.pk,
    }


def tables_read() -> dict[str, list[dict]]:
    rows = {table: table_rows(table) for table in TABLES}
    # Every table holds a row, or comparing them would prove nothing.
    assert all(rows.values()), [table for table, table_content in rows.items() if not table_content]
    return rows


def old_content_types(old_apps) -> dict[str, int]:
    """The moved models' content types at the old layout (under their old apps), by model name."""
    content_type = old_apps.get_model("contenttypes", "ContentType")
    ids = {}
    for old_app, model, new_app in MOVED_MODELS:
        assert not content_type.objects.filter(app_label=new_app, model=model.lower()).exists()
        ids[model] = content_type.objects.get_or_create(app_label=old_app, model=model.lower())[0].pk
    return ids


def old_permission_grant(old_apps, user_id: int, content_type_id: int, codename: str) -> None:
    permission, _ = old_apps.get_model("auth", "Permission").objects.get_or_create(
        content_type_id=content_type_id, codename=codename, defaults={"name": codename}
    )
    old_apps.get_model(settings.AUTH_USER_MODEL).objects.get(pk=user_id).user_permissions.add(permission)


def assert_relations_kept(ids: dict[str, int]) -> None:
    """The current models find every row, and every link between them, under the same ids."""
    contact = Contact.objects.get(pk=ids["contact"])
    assert (contact.email, contact.first_name, contact.attributes) == (
        "ada@example.org",
        "Ada",
        {"city": "London", "plan": "gold"},
    )
    assert list(contact.subscriptions.values_list("pk", "contact_list_id", "status")) == [
        (ids["subscription"], ids["members"], "subscribed")
    ]
    assert list(Contact.objects.filter(segment_filter(Segment.objects.get(pk=ids["segment"])))) == [contact]
    import_job = ImportJob.objects.get(pk=ids["import_job"])
    assert (import_job.contact_list_id, import_job.created_by_id, import_job.file.name) == (
        ids["members"],
        ids["user"],
        "imports/2026/11/members.csv",
    )

    campaign = Campaign.objects.get(pk=ids["campaign"])
    assert list(campaign.include_lists.values_list("pk", flat=True)) == [ids["members"]]
    assert list(campaign.exclude_lists.values_list("pk", flat=True)) == [ids["former"]]
    assert list(campaign.include_segments.values_list("pk", flat=True)) == [ids["segment"]]
    assert list(campaign.exclude_segments.values_list("pk", flat=True)) == [ids["lapsed"]]
    recipient = contact.recipients.get()
    assert (recipient.pk, recipient.campaign_id) == (ids["recipient"], ids["campaign"])
    assert (campaign.stats.pk, campaign.stats.sent, campaign.stats.delivered) == (ids["stats"], 1, 1)
    assert list(recipient.activity.values_list("pk", "kind", "occurred_at")) == [
        (ids["activity"], "delivered", DELIVERED_AT)
    ]
    assert list(campaign.breakdowns.values_list("pk", "kind", "key", "count")) == [
        (ids["breakdown"], "domain", "example.org", 1)
    ]

    suppression = Suppression.objects.get(email="gone@example.org")
    assert (suppression.pk, suppression.reason, suppression.created_by_id) == (
        ids["suppression"],
        "hard_bounce",
        ids["user"],
    )
    health = AddressHealth.objects.get(email="flaky@example.org")
    assert (health.pk, health.consecutive_soft_bounces) == (ids["health"], 2)


def assert_content_types_moved(old_ids: dict[str, int]) -> None:
    """Each moved model's content type row now names its new app (same row: permissions follow)."""
    for old_app, model, new_app in MOVED_MODELS:
        assert ContentType.objects.get(app_label=new_app, model=model.lower()).pk == old_ids[model], model
        assert not ContentType.objects.filter(app_label=old_app, model=model.lower()).exists(), model


@pytest.mark.django_db(transaction=True)
def test_rows_written_before_the_move_are_read_through_the_moved_models():
    with migrations_enabled():
        try:
            old_apps = migrate_to_old_layout()
            ids = rows_write(models_of(old_apps, OLD_HOME))
            content_type_ids = old_content_types(old_apps)
            old_permission_grant(old_apps, ids["user"], content_type_ids["Contact"], "view_contact")
            old_permission_grant(old_apps, ids["user"], content_type_ids["CampaignStats"], "view_campaignstats")
            table_names = set(connection.introspection.table_names())
            before = tables_read()

            migrate_to_latest()

            # No table was renamed or dropped, the moved models read the tables that were there, and
            # every row kept its id and its values (the columns of the old layout: a later migration
            # may add columns, and tables of new models).
            assert table_names <= set(connection.introspection.table_names())
            moved_tables = {current_apps.get_model(app, model)._meta.db_table for _, model, app in MOVED_MODELS}
            assert moved_tables <= table_names
            for table, rows in before.items():
                assert table_rows(table, columns=list(rows[0])) == rows, table
            assert_relations_kept(ids)
            assert_content_types_moved(content_type_ids)
            user = current_apps.get_model(settings.AUTH_USER_MODEL).objects.get(pk=ids["user"])
            assert user.has_perm("audiences.view_contact")
            assert user.has_perm("stats.view_campaignstats")
        finally:
            migrate_to_latest()


@pytest.mark.django_db(transaction=True)
def test_the_move_can_be_undone_and_done_again_with_every_row_kept():
    with migrations_enabled():
        try:
            ids = rows_write(models_of(current_apps, NEW_HOME))
            content_type_ids = {
                model: ContentType.objects.get(app_label=new_app, model=model.lower()).pk
                for _, model, new_app in MOVED_MODELS
            }
            before = tables_read()

            old_apps = migrate_to_old_layout()

            # The old layout's models read the same rows, and the content types went back.
            old_campaign = old_apps.get_model("campaigns", "Campaign").objects.get(pk=ids["campaign"])
            assert list(old_campaign.include_lists.values_list("pk", flat=True)) == [ids["members"]]
            assert old_apps.get_model("campaigns", "Contact").objects.get(pk=ids["contact"]).email == "ada@example.org"
            assert old_apps.get_model("tracking", "CampaignStats").objects.get(campaign=old_campaign).sent == 1
            assert old_apps.get_model("reports", "CampaignBreakdown").objects.get(campaign=old_campaign).key == (
                "example.org"
            )
            assert old_content_types(old_apps) == content_type_ids

            migrate_to_latest()

            assert tables_read() == before
            assert_relations_kept(ids)
            assert_content_types_moved(content_type_ids)
        finally:
            migrate_to_latest()
