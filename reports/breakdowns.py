"""Upserting and reading the per-campaign breakdown counters (reports.models.CampaignBreakdown)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import connection
from django.db.models import Count, Value
from django.db.models.functions import Lower, StrIndex, Substr

from reports.models import CampaignBreakdown

KEY_LENGTH = CampaignBreakdown._meta.get_field("key").max_length


def hour_key(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H")


def email_domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def breakdown_bump(*, campaign_id: int, items: Iterable[tuple[str, str, int]]) -> None:
    """Add to counters in one statement: INSERT … ON CONFLICT DO UPDATE (SQLite and PostgreSQL)."""
    rows = [(campaign_id, kind, key[:KEY_LENGTH], amount) for kind, key, amount in items if amount]
    if not rows:
        return
    table = connection.ops.quote_name(CampaignBreakdown._meta.db_table)
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (campaign_id, kind, key, count) VALUES {values} "
            f"ON CONFLICT (campaign_id, kind, key) DO UPDATE SET count = {table}.count + excluded.count",
            [value for row in rows for value in row],
        )


def breakdown_rows(*, campaign_id: int, kind: str, limit: int | None = None) -> list[tuple[str, int]]:
    rows = CampaignBreakdown.objects.filter(campaign_id=campaign_id, kind=kind).order_by("-count", "key")
    if limit:
        rows = rows[:limit]
    return list(rows.values_list("key", "count"))


def breakdown_map(*, campaign_id: int, kinds: Iterable[str]) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = {kind: {} for kind in kinds}
    for kind, key, count in CampaignBreakdown.objects.filter(
        campaign_id=campaign_id, kind__in=list(result)
    ).values_list("kind", "key", "count"):
        result[kind][key] = count
    return result


def recipient_domains_record(*, campaign_id: int) -> None:
    """Count the campaign's recipients per domain once, at snapshot time (one GROUP BY)."""
    from campaigns.models import Recipient

    domains = (
        Recipient.objects.filter(campaign_id=campaign_id)
        .annotate(domain=Lower(Substr("email", StrIndex("email", Value("@")) + 1)))
        .values("domain")
        .annotate(n=Count("id"))
        .order_by()
    )
    CampaignBreakdown.objects.filter(campaign_id=campaign_id, kind="domain:recipients").delete()
    CampaignBreakdown.objects.bulk_create(
        CampaignBreakdown(
            campaign_id=campaign_id, kind="domain:recipients", key=row["domain"][:KEY_LENGTH], count=row["n"]
        )
        for row in domains
    )
