"""Upserting and reading the per-campaign breakdown counters (``CampaignBreakdown``).

Written with the events that move them (``events_breakdown``), at snapshot time (recipients per
domain) and by the repair; the recount from stored events is ``tracking.recount``'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.urls import Resolver404, resolve

from stats.models import CampaignBreakdown

KEY_LENGTH = CampaignBreakdown._meta.get_field("key").max_length
# Counted from the recipients at snapshot time, not from events: the recount leaves them alone.
RECIPIENT_DOMAINS = "domain:recipients"
SNAPSHOT_KINDS = (RECIPIENT_DOMAINS,)


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


def recipient_domains_write(*, campaign_id: int, domains: dict[str, int]) -> None:
    """The campaign's recipients per domain, counted once at snapshot time (replaces earlier rows)."""
    CampaignBreakdown.objects.filter(campaign_id=campaign_id, kind=RECIPIENT_DOMAINS).delete()
    CampaignBreakdown.objects.bulk_create(
        CampaignBreakdown(campaign_id=campaign_id, kind=RECIPIENT_DOMAINS, key=domain[:KEY_LENGTH], count=count)
        for domain, count in domains.items()
    )


def events_breakdown(events, *, firsts=(), starts: dict[int, datetime | None]) -> None:
    """Move the breakdown counters for freshly stored events (one upsert per campaign).

    Called by tracking in the events' own transaction, like the headline counters, with each
    campaign's ``started_at`` in ``starts`` (it decides which events are also counted per minute).
    Opens and clicks count every notification (per hour, per link). Domains and bounce reasons
    count recipients: they move with ``firsts``, the (marker kind, event) pairs whose recipient
    marker this batch inserted, so SES's second notification of one bounce adds nothing.
    """
    per_campaign: dict[int, dict[tuple[str, str], int]] = {}

    def add(campaign_id: int, buckets: list[tuple[str, str]]) -> None:
        items = per_campaign.setdefault(campaign_id, {})
        for bucket in buckets:
            items[bucket] = items.get(bucket, 0) + 1

    for event in events:
        if event.campaign_id:
            add(event.campaign_id, _engagement_buckets(event, started_at=starts.get(event.campaign_id)))
    for kind, event in firsts:
        if event.campaign_id:
            add(event.campaign_id, _recipient_buckets(kind, event))
    for campaign_id, items in sorted(per_campaign.items()):
        breakdown_bump(campaign_id=campaign_id, items=[(kind, key, n) for (kind, key), n in sorted(items.items())])


def _engagement_buckets(event, *, started_at: datetime | None) -> list[tuple[str, str]]:
    kind = event.event_type
    if kind not in {"open", "click"}:
        return []
    times = [("hour", hour_key(event.occurred_at))]
    if in_minute_window(event.occurred_at, started_at):
        times.append(("minute", minute_key(event.occurred_at)))
    buckets = [(name, key) for prefix, key in times for name in engagement_kinds(kind, event.is_machine, prefix)]
    if kind == "click" and event.link:
        key = link_key(event.link)
        buckets += [(name, key) for name in engagement_kinds(kind, event.is_machine, "link")]
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


def engagement_kinds(event_type: str, is_machine: bool, prefix: str) -> list[str]:
    """The breakdown kinds an open or click moves: ``hour:open`` (all), ``hour:human_open`` (people)."""
    name = "open" if event_type == "open" else "click"
    return [f"{prefix}:{name}"] + ([] if is_machine else [f"{prefix}:human_{name}"])


def breakdown_stored(*, campaign_id: int) -> dict[tuple[str, str], int]:
    """The campaign's event-derived breakdown rows (all but the snapshot's): {(kind, key): count}."""
    rows = CampaignBreakdown.objects.filter(campaign_id=campaign_id).exclude(kind__in=SNAPSHOT_KINDS)
    return {(kind, key): count for kind, key, count in rows.values_list("kind", "key", "count")}


def breakdown_replace(*, campaign_id: int, counts: dict[tuple[str, str], int]) -> None:
    """Replace the event-derived breakdown rows with recounted ones (the repair; hold the counter row lock)."""
    with transaction.atomic():
        CampaignBreakdown.objects.filter(campaign_id=campaign_id).exclude(kind__in=SNAPSHOT_KINDS).delete()
        CampaignBreakdown.objects.bulk_create(
            CampaignBreakdown(campaign_id=campaign_id, kind=kind, key=key, count=count)
            for (kind, key), count in counts.items()
        )
