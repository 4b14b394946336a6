"""The SES tenants' check (campaigns.delivery.tenants.tenants_check) every five minutes.

It does nothing while SES_TENANTS is off; with it on, it asks SES about every tenant's sending status.
"""

from django.db import migrations


def create_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name="ses-tenants-check",
        defaults={
            "func": "campaigns.delivery.tenants.tenants_check",
            "schedule_type": "I",  # minutes
            "minutes": 5,
            "repeats": -1,
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="ses-tenants-check").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0015_ses_tenants"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
