"""Upserting and reading the per-campaign breakdown counters (reports.models.CampaignBreakdown)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import connection, transaction
from django.db.models import Count, OuterRef, Subquery, Value
from django.db.models.functions import Lower, StrIndex, Substr, TruncHour

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


def recipient_total_expression() -> Subquery:
    """Annotation: a campaign's frozen recipient count, as recorded at snapshot time."""
    meta = CampaignBreakdown.objects.filter(campaign=OuterRef("pk"), kind="meta", key="recipients")
    return Subquery(meta.values("count")[:1])


def snapshot_recorded(*, campaign_id: int, recipients: int) -> None:
    """Once the audience is frozen: the recipient total and the count per domain, for reports."""
    with transaction.atomic():
        CampaignBreakdown.objects.update_or_create(
            campaign_id=campaign_id, kind="meta", key="recipients", defaults={"count": recipients}
        )
        recipient_domains_record(campaign_id=campaign_id)


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


def events_breakdown(events) -> None:
    """Move the breakdown counters for freshly stored events (one upsert per campaign).

    Called by tracking.services in the events' own transaction, like the headline counters.
    """
    from tracking.models import Event

    per_campaign: dict[int, dict[tuple[str, str], int]] = {}
    for event in events:
        if not event.campaign_id:
            continue
        items = per_campaign.setdefault(event.campaign_id, {})
        for kind, key in _event_buckets(event, Event.Type):
            items[(kind, key)] = items.get((kind, key), 0) + 1
    for campaign_id, items in sorted(per_campaign.items()):
        breakdown_bump(campaign_id=campaign_id, items=[(kind, key, n) for (kind, key), n in sorted(items.items())])


def _event_buckets(event, types) -> list[tuple[str, str]]:
    kind = event.event_type
    if kind in {types.OPEN, types.CLICK}:
        name = "open" if kind == types.OPEN else "click"
        hour = hour_key(event.occurred_at)
        buckets = [(f"hour:{name}", hour)]
        if not event.is_machine:
            buckets.append((f"hour:human_{name}", hour))
        if kind == types.CLICK and event.link:
            buckets.append(("link:click", event.link))
            if not event.is_machine:
                buckets.append(("link:human_click", event.link))
        return buckets
    if kind == types.DELIVERY:
        return [("domain:delivered", email_domain(event.email))]
    if kind == types.BOUNCE:
        reason = "/".join(part for part in (event.bounce_type, event.bounce_subtype) if part) or "Unknown"
        return [("domain:bounced", email_domain(event.email)), ("bounce:reason", reason)]
    return []


def breakdown_recount(*, campaign_id: int) -> dict[tuple[str, str], int]:
    """The event-derived breakdown of a campaign, recounted from its stored events (GROUP BYs)."""
    from tracking.models import Event

    events = Event.objects.filter(campaign_id=campaign_id).order_by()
    counts: dict[tuple[str, str], int] = {}
    engagement = events.filter(event_type__in=["open", "click"])
    hourly = engagement.annotate(hour=TruncHour("occurred_at", tzinfo=UTC)).values("event_type", "is_machine", "hour")
    for row in hourly.annotate(n=Count("id")):
        for kind in _engagement_kinds(row["event_type"], row["is_machine"], "hour"):
            _add(counts, (kind, hour_key(row["hour"])), row["n"])
    links = engagement.filter(event_type="click").exclude(link="").values("is_machine", "link")
    for row in links.annotate(n=Count("id")):
        for kind in _engagement_kinds("click", row["is_machine"], "link"):
            _add(counts, (kind, row["link"][:KEY_LENGTH]), row["n"])
    domain = Lower(Substr("email", StrIndex("email", Value("@")) + 1))
    domains = (
        events.filter(event_type__in=["delivery", "bounce"]).annotate(domain=domain).values("event_type", "domain")
    )
    for row in domains.annotate(n=Count("id")):
        kind = "domain:delivered" if row["event_type"] == "delivery" else "domain:bounced"
        _add(counts, (kind, row["domain"]), row["n"])
    reasons = events.filter(event_type="bounce").values("bounce_type", "bounce_subtype")
    for row in reasons.annotate(n=Count("id")):
        reason = "/".join(part for part in (row["bounce_type"], row["bounce_subtype"]) if part) or "Unknown"
        _add(counts, ("bounce:reason", reason), row["n"])
    return counts


def _engagement_kinds(event_type: str, is_machine: bool, prefix: str) -> list[str]:
    name = "open" if event_type == "open" else "click"
    return [f"{prefix}:{name}"] + ([] if is_machine else [f"{prefix}:human_{name}"])


def _add(counts: dict, bucket: tuple[str, str], amount: int) -> None:
    counts[bucket] = counts.get(bucket, 0) + amount


def breakdown_repair(*, campaign_id: int, fix: bool = False) -> dict[tuple[str, str], tuple[int, int]]:
    """Compare stored event-derived breakdown rows with a recount: {(kind, key): (stored, recounted)}."""
    recounted = breakdown_recount(campaign_id=campaign_id)
    stored_rows = CampaignBreakdown.objects.filter(campaign_id=campaign_id).exclude(
        kind__in=["meta", "domain:recipients"]
    )
    stored = {(kind, key): count for kind, key, count in stored_rows.values_list("kind", "key", "count")}
    differences = {
        bucket: (stored.get(bucket, 0), recounted.get(bucket, 0))
        for bucket in stored.keys() | recounted.keys()
        if stored.get(bucket, 0) != recounted.get(bucket, 0)
    }
    if fix and differences:
        with transaction.atomic():
            stored_rows.delete()
            CampaignBreakdown.objects.bulk_create(
                CampaignBreakdown(campaign_id=campaign_id, kind=kind, key=key, count=count)
                for (kind, key), count in recounted.items()
            )
    return differences
