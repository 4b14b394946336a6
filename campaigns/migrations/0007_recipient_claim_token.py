from datetime import timedelta

from django.db import migrations, models
from django.utils import timezone


def create_half_minute_tick(apps, schema_editor):
    """A second run of the engine tick, half a minute after the first: django-q2 schedules repeat
    at most once a minute, and a dead dispatcher's claims must be requeued within a minute."""
    Schedule = apps.get_model("django_q", "Schedule")
    first = Schedule.objects.filter(name="engine-tick").values_list("next_run", flat=True).first()
    Schedule.objects.update_or_create(
        name="engine-tick-2",
        defaults={
            "func": "campaigns.tasks.engine_tick",
            "schedule_type": "I",  # minutes
            "minutes": 1,
            "repeats": -1,
            "next_run": (first or timezone.now()) + timedelta(seconds=30),
        },
    )


def remove_half_minute_tick(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="engine-tick-2").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0006_recipient_inflight_index"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.AddField(
            model_name="recipient",
            name="claim_token",
            field=models.CharField(blank=True, max_length=32, null=True),
        ),
        migrations.AddIndex(
            model_name="recipient",
            index=models.Index(
                condition=models.Q(("status", "sending")), fields=["claim_token"], name="recipient_claim_idx"
            ),
        ),
        migrations.RunPython(create_half_minute_tick, remove_half_minute_tick),
    ]
