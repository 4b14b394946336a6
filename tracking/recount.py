"""Recount a campaign's figures from its stored events and recipients, and repair them.

The invariant: counters and breakdowns always equal a recount. ``manage.py tracking_recount``
proves it (or, with ``--fix``, restores it) through ``counters_repair``; the writes go through
``stats``.
"""

from __future__ import annotations

from datetime import UTC, timedelta

from django.db import transaction
from django.db.models import Count, Min, Q, Value
from django.db.models.functions import Lower, StrIndex, Substr, TruncHour, TruncMinute

from campaigns.models import Campaign, Recipient
from stats.breakdowns import (
    KEY_LENGTH,
    MINUTE_WINDOW,
    bounce_reason,
    breakdown_replace,
    breakdown_stored,
    engagement_kinds,
    hour_key,
    link_key,
    minute_key,
)
from stats.counters import counters_locked, counters_set
from stats.models import CampaignStats, RecipientActivity
from tracking.models import Event


def stats_recount(*, campaign_id: int) -> dict[str, int]:
    """The event-derived counters of a campaign, recounted from its stored events.

    Recipient counters count distinct recipients (SES may notify one bounce twice); opens,
    clicks, delays and rendering failures count notifications. ``unsubscribed`` counts the
    recipients' unsubscribe markers: unsubscribe links leave no event, only the marker. ``sent``
    (the engine's) is recounted from the recipients by ``outcomes_recount``.
    """
    events = Event.objects.filter(campaign_id=campaign_id)
    human = Q(is_machine=False)
    opens, clicks = Q(event_type=Event.Type.OPEN), Q(event_type=Event.Type.CLICK)
    bounces, permanent = Q(event_type=Event.Type.BOUNCE), Q(bounce_type="Permanent")

    def recipients(condition: Q) -> Count:
        return Count("recipient", filter=condition, distinct=True)

    counts = events.aggregate(
        delivered=recipients(Q(event_type=Event.Type.DELIVERY)),
        bounced_hard=recipients(bounces & permanent),
        bounced_soft=recipients(bounces & ~permanent),
        complained=recipients(Q(event_type=Event.Type.COMPLAINT)),
        rejected=recipients(Q(event_type=Event.Type.REJECT)),
        delayed=Count("id", filter=Q(event_type=Event.Type.DELIVERY_DELAY)),
        rendering_failures=Count("id", filter=Q(event_type=Event.Type.RENDERING_FAILURE)),
        opens=Count("id", filter=opens),
        human_opens=Count("id", filter=opens & human),
        unique_opens=recipients(opens),
        unique_human_opens=recipients(opens & human),
        clicks=Count("id", filter=clicks),
        human_clicks=Count("id", filter=clicks & human),
        unique_clicks=recipients(clicks),
        unique_human_clicks=recipients(clicks & human),
        unique_human_engaged=recipients((opens | clicks) & human),
    )
    counts["unsubscribed"] = RecipientActivity.objects.filter(
        recipient__campaign_id=campaign_id, kind=RecipientActivity.Kind.UNSUBSCRIBED
    ).count()
    return counts


def outcomes_recount(*, campaign_id: int) -> dict[str, int]:
    """``sent``, ``failed`` and ``skipped`` recounted from the recipients' statuses."""
    counts = dict(
        Recipient.objects.filter(campaign_id=campaign_id, status__in=CampaignStats.OUTCOME_FIELDS)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {name: counts.get(name, 0) for name in CampaignStats.OUTCOME_FIELDS}


def stats_repair(*, campaign_id: int, fix: bool = False) -> dict[str, tuple[int, int]]:
    """Compare a campaign's counters with a recount of its events and recipients;
    {field: (stored, recounted)} for differences.

    With ``fix`` the stored counters are set to the recount (under a row lock, so events recorded
    meanwhile wait and then add to the repaired values).
    """
    with transaction.atomic():
        stats = counters_locked(campaign_id=campaign_id)
        if stats is None:
            return {}
        recounted = stats_recount(campaign_id=campaign_id) | outcomes_recount(campaign_id=campaign_id)
        differences = {
            name: (getattr(stats, name), value) for name, value in recounted.items() if getattr(stats, name) != value
        }
        if fix and differences:
            counters_set(campaign_id=campaign_id, values={name: value for name, (_, value) in differences.items()})
    return differences


def breakdown_recount(*, campaign_id: int) -> dict[tuple[str, str], int]:
    """The event-derived breakdown of a campaign, recounted from its stored events (GROUP BYs).

    The same rules as ``stats.breakdowns.events_breakdown``: notifications for opens and clicks,
    recipients for domains, and for bounce reasons the reason of each recipient's first hard and
    first soft bounce (the first stored, as the live count takes the first to arrive).
    """
    events = Event.objects.filter(campaign_id=campaign_id).order_by()
    counts: dict[tuple[str, str], int] = {}
    engagement = events.filter(event_type__in=[Event.Type.OPEN, Event.Type.CLICK])
    hourly = engagement.annotate(hour=TruncHour("occurred_at", tzinfo=UTC)).values("event_type", "is_machine", "hour")
    for row in hourly.annotate(n=Count("id")):
        for kind in engagement_kinds(row["event_type"], row["is_machine"], "hour"):
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
            for kind in engagement_kinds(row["event_type"], row["is_machine"], "minute"):
                _add(counts, (kind, minute_key(row["minute"])), row["n"])
    links = engagement.filter(event_type=Event.Type.CLICK).exclude(link="").values("is_machine", "link")
    for row in links.annotate(n=Count("id")):
        for kind in engagement_kinds(Event.Type.CLICK, row["is_machine"], "link"):
            _add(counts, (kind, link_key(row["link"])), row["n"])
    domain = Lower(Substr("recipient__email", StrIndex("recipient__email", Value("@")) + 1))
    domains = (
        events.filter(event_type__in=[Event.Type.DELIVERY, Event.Type.BOUNCE], recipient__isnull=False)
        .annotate(domain=domain)
        .values("event_type", "domain")
    )
    for row in domains.annotate(n=Count("recipient", distinct=True)):
        kind = "domain:delivered" if row["event_type"] == Event.Type.DELIVERY else "domain:bounced"
        _add(counts, (kind, row["domain"][:KEY_LENGTH]), row["n"])
    bounces = events.filter(event_type=Event.Type.BOUNCE, recipient__isnull=False)
    for hard in (True, False):
        subset = bounces.filter(bounce_type="Permanent") if hard else bounces.exclude(bounce_type="Permanent")
        first_ids = subset.values("recipient").annotate(first=Min("id")).values("first")
        reasons = Event.objects.filter(id__in=first_ids).order_by().values("bounce_type", "bounce_subtype")
        for row in reasons.annotate(n=Count("id")):
            _add(counts, ("bounce:reason", bounce_reason(row["bounce_type"], row["bounce_subtype"])), row["n"])
    return counts


def _add(counts: dict, bucket: tuple[str, str], amount: int) -> None:
    counts[bucket] = counts.get(bucket, 0) + amount


def breakdown_repair(*, campaign_id: int, fix: bool = False) -> dict[tuple[str, str], tuple[int, int]]:
    """Compare stored event-derived breakdown rows with a recount: {(kind, key): (stored, recounted)}."""
    recounted = breakdown_recount(campaign_id=campaign_id)
    stored = breakdown_stored(campaign_id=campaign_id)
    differences = {
        bucket: (stored.get(bucket, 0), recounted.get(bucket, 0))
        for bucket in stored.keys() | recounted.keys()
        if stored.get(bucket, 0) != recounted.get(bucket, 0)
    }
    if fix and differences:
        breakdown_replace(campaign_id=campaign_id, counts=recounted)
    return differences


def counters_repair(*, campaign_id: int, fix: bool = False) -> dict[str, tuple[int, int]]:
    """Counters and report breakdowns against a recount: {name: (stored, recounted)}.

    One transaction under the campaign's counter row lock: event batches (which take that lock
    before touching breakdown rows) wait, then add to the repaired values instead of being lost.
    """
    with transaction.atomic():
        differences = stats_repair(campaign_id=campaign_id, fix=fix)  # takes the lock, held to the end
        for (kind, key), pair in breakdown_repair(campaign_id=campaign_id, fix=fix).items():
            differences[f"{kind} {key}"] = pair
    return differences
