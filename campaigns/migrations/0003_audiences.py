import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

# Prefix search on the contacts page (email / first name / last name starting with what staff
# typed) needs pattern-ops indexes on PostgreSQL: its default b-tree indexes cannot serve LIKE
# 'abc%' under a non-C collation. SQLite has no equivalent; its LIKE scans, which is fine there.
PATTERN_INDEXES = [
    ("contact_email_prefix_idx", "(email varchar_pattern_ops)"),
    ("contact_first_prefix_idx", "(lower(first_name) text_pattern_ops)"),
    ("contact_last_prefix_idx", "(lower(last_name) text_pattern_ops)"),
]


def create_pattern_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, expression in PATTERN_INDEXES:
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON campaigns_contact {expression}")


def drop_pattern_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _ in PATTERN_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0002_engine_tick_schedule"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ImportJob",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("file", models.FileField(max_length=300, upload_to="imports/%Y/%m/")),
                ("original_name", models.CharField(blank=True, max_length=255)),
                ("update_existing", models.BooleanField(default=False)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Importing"),
                            ("done", "Done"),
                            ("refused", "Refused"),
                            ("failed", "Failed"),
                        ],
                        default="queued",
                        max_length=8,
                    ),
                ),
                ("error", models.CharField(blank=True, max_length=1000)),
                ("encoding", models.CharField(blank=True, max_length=40)),
                ("size_bytes", models.BigIntegerField(default=0)),
                ("bytes_read", models.BigIntegerField(default=0)),
                ("rows_read", models.PositiveIntegerField(default=0)),
                ("created", models.PositiveIntegerField(default=0)),
                ("updated", models.PositiveIntegerField(default=0)),
                ("unchanged", models.PositiveIntegerField(default=0)),
                ("subscribed", models.PositiveIntegerField(default=0)),
                ("not_resubscribed", models.PositiveIntegerField(default=0)),
                ("rejected", models.PositiveIntegerField(default=0)),
                ("rejected_preview", models.JSONField(blank=True, default=list)),
                ("rejected_file", models.FileField(blank=True, max_length=300, upload_to="imports/rejected/")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "contact_list",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="import_jobs",
                        to="campaigns.contactlist",
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["-created_at", "-id"]},
        ),
        migrations.RunPython(create_pattern_indexes, drop_pattern_indexes),
    ]
