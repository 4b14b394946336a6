from django.db import migrations

# The contacts page's prefix search (email / first name / last name starting with what staff
# typed) is scoped by the organisation: on PostgreSQL it needs pattern-ops indexes that start
# with the organisation (the default b-tree indexes cannot serve LIKE 'abc%' under a non-C
# collation). They replace the installation-wide ones of campaigns 0003, which no scoped query
# can use. SQLite has no equivalent; its LIKE scans the organisation's rows, which is fine there.
ORGANISATION_PATTERN_INDEXES = [
    ("contact_org_email_prefix_idx", "(organisation_id, email varchar_pattern_ops)"),
    ("contact_org_first_prefix_idx", "(organisation_id, lower(first_name) text_pattern_ops)"),
    ("contact_org_last_prefix_idx", "(organisation_id, lower(last_name) text_pattern_ops)"),
]
INSTALLATION_PATTERN_INDEXES = [
    ("contact_email_prefix_idx", "(email varchar_pattern_ops)"),
    ("contact_first_prefix_idx", "(lower(first_name) text_pattern_ops)"),
    ("contact_last_prefix_idx", "(lower(last_name) text_pattern_ops)"),
]


def _swap(schema_editor, create: list, drop: list) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, expression in create:
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON campaigns_contact {expression}")
    for name, _ in drop:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def forwards(apps, schema_editor):
    _swap(schema_editor, ORGANISATION_PATTERN_INDEXES, INSTALLATION_PATTERN_INDEXES)


def backwards(apps, schema_editor):
    _swap(schema_editor, INSTALLATION_PATTERN_INDEXES, ORGANISATION_PATTERN_INDEXES)


class Migration(migrations.Migration):
    dependencies = [("audiences", "0002_organisation")]

    operations = [migrations.RunPython(forwards, backwards)]
