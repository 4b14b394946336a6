from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0003_audiences"),
        ("campaigns", "0003_composer"),
    ]

    operations = []
