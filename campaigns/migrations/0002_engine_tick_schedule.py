from django.db import migrations


def create_tick(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="engine-tick",
        defaults={
            "func": "campaigns.tasks.engine_tick",
            "schedule_type": "I",  # minutes
            "minutes": 1,
            "repeats": -1,
        },
    )


def remove_tick(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="engine-tick").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_tick, remove_tick)]
