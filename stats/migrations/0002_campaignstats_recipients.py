"""The recipient total moves from a breakdown row (kind "meta", key "recipients") to a column."""

from django.db import migrations, models
from django.db.models import OuterRef, Q, Subquery


def meta_rows_to_column(apps, schema_editor):
    breakdown = apps.get_model("stats", "CampaignBreakdown")
    stats = apps.get_model("stats", "CampaignStats")
    meta = breakdown.objects.filter(kind="meta", key="recipients")
    stats.objects.filter(campaign_id__in=meta.values("campaign_id")).update(
        recipients=Subquery(meta.filter(campaign_id=OuterRef("campaign_id")).values("count")[:1])
    )
    # A campaign frozen before its counter row existed (none should be) gets one now.
    missing = meta.exclude(campaign_id__in=stats.objects.values("campaign_id"))
    stats.objects.bulk_create(
        stats(campaign_id=campaign_id, recipients=count)
        for campaign_id, count in missing.values_list("campaign_id", "count")
    )
    meta.delete()


def column_to_meta_rows(apps, schema_editor):
    breakdown = apps.get_model("stats", "CampaignBreakdown")
    stats = apps.get_model("stats", "CampaignStats")
    # Every frozen campaign had a meta row (0 for an empty audience); others had none.
    frozen = stats.objects.filter(Q(recipients__gt=0) | Q(campaign__snapshot_at__isnull=False))
    breakdown.objects.bulk_create(
        (
            breakdown(campaign_id=campaign_id, kind="meta", key="recipients", count=count)
            for campaign_id, count in frozen.values_list("campaign_id", "recipients")
        ),
        ignore_conflicts=True,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("stats", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="campaignstats",
            name="recipients",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(meta_rows_to_column, column_to_meta_rows),
    ]
