"""The daily retention pass (cobalt_mail.retention). cobalt_mail has no models and so no
migrations: the schedule lives here, with the events it empties."""

from datetime import timedelta

from django.db import migrations
from django.utils import timezone


def create_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name="retention",
        defaults={
            "func": "cobalt_mail.tasks.retention_run",
            "schedule_type": "D",  # daily
            "repeats": -1,
            # First run an hour after migrating, not during a deployment's busiest minutes.
            "next_run": timezone.now() + timedelta(hours=1),
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="retention").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0007_models_moved"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
