"""Upserting and reading the per-campaign breakdown counters (reports.models.CampaignBreakdown)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Min, OuterRef, Subquery, Value
from django.db.models.functions import Lower, StrIndex, Substr, TruncHour, TruncMinute
from django.urls import Resolver404, resolve

from reports.models import CampaignBreakdown

KEY_LENGTH = CampaignBreakdown._meta.get_field("key").max_length


# Opens and clicks are also counted per minute in a campaign's first hours, so that the chart of
# a fresh campaign has minutes to show (at most 6 × 60 rows per kind and campaign).
MINUTE_WINDOW = timedelta(hours=6)


def hour_key(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


def minute_key(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def in_minute_window(moment: datetime, started_at: datetime | None) -> bool:
    # From an hour before the start (clocks of two machines differ) to MINUTE_WINDOW after it.
    return started_at is not None and started_at - timedelta(hours=1) <= moment < started_at + MINUTE_WINDOW


def email_domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


# Every recipient's unsubscribe, preferences and view-online links are personal (a token each):
# counted per address they would be one row per recipient. They are counted under one key each.
SYSTEM_LINKS = {
    "campaigns:unsubscribe": "system:unsubscribe",
    "campaigns:preferences": "system:preferences",
    "campaigns:view_online": "system:view_online",
}


def link_key(link: str) -> str:
    """The key a clicked link is counted under: the address, or a system link's group key."""
    site = settings.SITE_URL.rstrip("/")
    if site and link.lower().startswith(site.lower() + "/"):
        path = link[len(site) :].split("?", 1)[0].split("#", 1)[0]
        try:
            view_name = resolve(path).view_name
        except Resolver404:
            view_name = ""
        if view_name in SYSTEM_LINKS:
            return SYSTEM_LINKS[view_name]
    return link[:KEY_LENGTH]


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


def events_breakdown(events, *, firsts=()) -> None:
    """Move the breakdown counters for freshly stored events (one upsert per campaign).

    Called by tracking.services in the events' own transaction, like the headline counters.
    Opens and clicks count every notification (per hour, per link). Domains and bounce reasons
    count recipients: they move with ``firsts``, the (marker kind, event) pairs whose recipient
    marker this batch inserted, so SES's second notification of one bounce adds nothing.
    """
    from campaigns.models import Campaign
    from tracking.models import Event

    events = list(events)
    starts = dict(
        Campaign.objects.filter(pk__in={event.campaign_id for event in events if event.campaign_id}).values_list(
            "pk", "started_at"
        )
    )
    per_campaign: dict[int, dict[tuple[str, str], int]] = {}

    def add(campaign_id: int, buckets: list[tuple[str, str]]) -> None:
        items = per_campaign.setdefault(campaign_id, {})
        for bucket in buckets:
            items[bucket] = items.get(bucket, 0) + 1

    for event in events:
        if event.campaign_id:
            add(event.campaign_id, _engagement_buckets(event, Event.Type, started_at=starts.get(event.campaign_id)))
    for kind, event in firsts:
        if event.campaign_id:
            add(event.campaign_id, _recipient_buckets(kind, event))
    for campaign_id, items in sorted(per_campaign.items()):
        breakdown_bump(campaign_id=campaign_id, items=[(kind, key, n) for (kind, key), n in sorted(items.items())])


def _engagement_buckets(event, types, *, started_at: datetime | None) -> list[tuple[str, str]]:
    kind = event.event_type
    if kind not in {types.OPEN, types.CLICK}:
        return []
    name = "open" if kind == types.OPEN else "click"
    times = [("hour", hour_key(event.occurred_at))]
    if in_minute_window(event.occurred_at, started_at):
        times.append(("minute", minute_key(event.occurred_at)))
    buckets = []
    for prefix, key in times:
        buckets.append((f"{prefix}:{name}", key))
        if not event.is_machine:
            buckets.append((f"{prefix}:human_{name}", key))
    if kind == types.CLICK and event.link:
        key = link_key(event.link)
        buckets.append(("link:click", key))
        if not event.is_machine:
            buckets.append(("link:human_click", key))
    return buckets


def bounce_reason(bounce_type: str, bounce_subtype: str) -> str:
    return "/".join(part for part in (bounce_type, bounce_subtype) if part) or "Unknown"


def _recipient_buckets(kind: str, event) -> list[tuple[str, str]]:
    # The recipient's own address: the same domain as the "domain:recipients" rows it is divided by.
    domain = email_domain(event.recipient.email)
    if kind == "delivered":
        return [("domain:delivered", domain)]
    if kind == "bounced":
        return [("domain:bounced", domain)]
    if kind in {"bounced_hard", "bounced_soft"}:
        return [("bounce:reason", bounce_reason(event.bounce_type, event.bounce_subtype))]
    return []


def breakdown_recount(*, campaign_id: int) -> dict[tuple[str, str], int]:
    """The event-derived breakdown of a campaign, recounted from its stored events (GROUP BYs).

    The same rules as ``events_breakdown``: notifications for opens and clicks, recipients for
    domains, and for bounce reasons the reason of each recipient's first hard and first soft
    bounce (the first stored, as the live count takes the first to arrive).
    """
    from campaigns.models import Campaign
    from tracking.models import Event

    events = Event.objects.filter(campaign_id=campaign_id).order_by()
    counts: dict[tuple[str, str], int] = {}
    engagement = events.filter(event_type__in=["open", "click"])
    hourly = engagement.annotate(hour=TruncHour("occurred_at", tzinfo=UTC)).values("event_type", "is_machine", "hour")
    for row in hourly.annotate(n=Count("id")):
        for kind in _engagement_kinds(row["event_type"], row["is_machine"], "hour"):
            _add(counts, (kind, hour_key(row["hour"])), row["n"])
    started_at = Campaign.objects.filter(pk=campaign_id).values_list("started_at", flat=True).first()
    if started_at is not None:
        early = engagement.filter(
            occurred_at__gte=started_at - timedelta(hours=1), occurred_at__lt=started_at + MINUTE_WINDOW
        )
        minutes = early.annotate(minute=TruncMinute("occurred_at", tzinfo=UTC)).values(
            "event_type", "is_machine", "minute"
        )
        for row in minutes.annotate(n=Count("id")):
            for kind in _engagement_kinds(row["event_type"], row["is_machine"], "minute"):
                _add(counts, (kind, minute_key(row["minute"])), row["n"])
    links = engagement.filter(event_type="click").exclude(link="").values("is_machine", "link")
    for row in links.annotate(n=Count("id")):
        for kind in _engagement_kinds("click", row["is_machine"], "link"):
            _add(counts, (kind, link_key(row["link"])), row["n"])
    domain = Lower(Substr("recipient__email", StrIndex("recipient__email", Value("@")) + 1))
    domains = (
        events.filter(event_type__in=["delivery", "bounce"], recipient__isnull=False)
        .annotate(domain=domain)
        .values("event_type", "domain")
    )
    for row in domains.annotate(n=Count("recipient", distinct=True)):
        kind = "domain:delivered" if row["event_type"] == "delivery" else "domain:bounced"
        _add(counts, (kind, row["domain"][:KEY_LENGTH]), row["n"])
    bounces = events.filter(event_type="bounce", recipient__isnull=False)
    for hard in (True, False):
        subset = bounces.filter(bounce_type="Permanent") if hard else bounces.exclude(bounce_type="Permanent")
        first_ids = subset.values("recipient").annotate(first=Min("id")).values("first")
        reasons = Event.objects.filter(id__in=first_ids).order_by().values("bounce_type", "bounce_subtype")
        for row in reasons.annotate(n=Count("id")):
            _add(counts, ("bounce:reason", bounce_reason(row["bounce_type"], row["bounce_subtype"])), row["n"])
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
