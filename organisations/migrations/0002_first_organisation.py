"""A fresh or upgraded installation has one organisation; every existing row joins it (the
organisation fields' migrations in audiences and campaigns fill it in), and every existing staff
user becomes its administrator, so that nobody loses access on upgrade."""

from django.db import migrations

FIRST_NAME, FIRST_SLUG = "Our organisation", "main"


def first_organisation(apps, schema_editor):
    Organisation = apps.get_model("organisations", "Organisation")
    Membership = apps.get_model("organisations", "Membership")
    User = apps.get_model("auth", "User")
    organisation = Organisation.objects.order_by("id").first()
    if organisation is None:
        organisation = Organisation.objects.create(name=FIRST_NAME, slug=FIRST_SLUG)
    staff = User.objects.filter(is_active=True, is_staff=True).values_list("id", flat=True)
    Membership.objects.bulk_create(
        [Membership(user_id=user_id, organisation=organisation, role="administrator") for user_id in staff],
        ignore_conflicts=True,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("organisations", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(first_organisation, migrations.RunPython.noop)]
