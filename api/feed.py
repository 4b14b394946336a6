"""The events feed: an organisation's mail events in order, resumable with a cursor.

Read by ``GET /api/v1/events`` and by the webhooks, which deliver the same items.

Where each type is stored:
- bounce, complaint, delivery: ``tracking.Event`` rows of the organisation's campaigns;
- unsubscribe: an SES opt-out is an ``Event`` of type subscription that claimed the recipient's
  "unsubscribed" marker; the email's unsubscribe link leaves only the marker
  (``stats.RecipientActivity`` of kind unsubscribed, written with the time of the click);
- campaign_finished: ``Campaign.finished_at`` (sent or cancelled).

The order and the cursor. Items are ordered by the time they were *written* (an event's
``received_at``, a link unsubscribe's marker time, a campaign's ``finished_at``), then by source
and id; the cursor is that triple. SES's own ``occurred_at`` is reported but cannot order a feed:
SES may notify hours late, so an event could land behind a cursor that has moved on.
Ids and write times are taken before the transaction commits, so a row with an earlier key can
become visible after a later one was read. The feed therefore only returns rows written before
``now - SETTLE``: a transaction that takes less than SETTLE to commit (an event batch takes
milliseconds) is visible before the reader can pass its key. A client polling with ``after``
gets every item once: each item's key is strictly greater than the cursor it was read after.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from campaigns.models import Campaign
from stats.models import RecipientActivity
from tracking.models import Event

FEED_TYPES: tuple[str, ...] = ("bounce", "complaint", "unsubscribe", "delivery", "campaign_finished")

# How long behind "now" the feed reads: longer than any transaction that writes a feed item takes to
# commit, plus the clock difference between the machines that write them.
SETTLE = timedelta(seconds=10)

# Sources, in the order they sort at one instant.
_EVENTS, _LINK_UNSUBSCRIBES, _CAMPAIGNS = 0, 1, 2
_AFTER_ALL_SOURCES = 9  # a cursor "after everything written at this instant"
_CURSOR = re.compile(r"v1\.(-?\d{1,19})\.(\d)\.(\d{1,19})")
_EVENT_TYPES = {"bounce": Event.Type.BOUNCE, "complaint": Event.Type.COMPLAINT, "delivery": Event.Type.DELIVERY}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FeedItem:
    cursor: str  # opaque; pass to feed_after(after=…) to resume after this item
    type: str
    occurred_at: datetime
    data: dict  # JSON-ready


@dataclass(frozen=True, order=True)
class _Key:
    written_at: datetime
    source: int
    id: int

    def encode(self) -> str:
        return f"v1.{_micros(self.written_at)}.{self.source}.{self.id}"


def feed_start(organisation) -> str:
    """A cursor at "now": what is written from now on comes after it (a new webhook starts here)."""
    return _Key(timezone.now(), _AFTER_ALL_SOURCES, 0).encode()


def feed_after(
    organisation, *, after: str | None, types: Iterable[str] | None = None, limit: int = 500
) -> list[FeedItem]:
    """Up to ``limit`` items of the organisation written after the cursor ``after`` (None: from
    the beginning), oldest first. Raises ValueError for a malformed cursor or an unknown type."""
    wanted = feed_types_parse(types)
    position = cursor_parse(after) if after else None
    horizon = timezone.now() - SETTLE
    limit = max(1, min(int(limit), 1000))
    organisation_id = getattr(organisation, "pk", organisation)
    found: list[tuple[_Key, str, datetime, dict]] = []
    if wanted & {"bounce", "complaint", "delivery", "unsubscribe"}:
        found += _events(organisation_id, wanted, position, horizon, limit)
    if "unsubscribe" in wanted:
        found += _link_unsubscribes(organisation_id, position, horizon, limit)
    if "campaign_finished" in wanted:
        found += _finished_campaigns(organisation_id, position, horizon, limit)
    found.sort(key=lambda item: item[0])
    return [
        FeedItem(cursor=key.encode(), type=kind, occurred_at=occurred_at, data=data)
        for key, kind, occurred_at, data in found[:limit]
    ]


def feed_next_cursor(items: list[FeedItem], *, after: str | None, limit: int) -> str | None:
    """The cursor to pass next: the last item's when the page is full; otherwise the settle
    horizon (everything written before it has been read), never behind ``after``."""
    if len(items) >= limit:
        return items[-1].cursor
    horizon = _Key(timezone.now() - SETTLE, _AFTER_ALL_SOURCES, 0)
    if items:
        horizon = max(horizon, cursor_parse(items[-1].cursor))
    if after:
        horizon = max(horizon, cursor_parse(after))
    return horizon.encode()


def feed_types_parse(types: Iterable[str] | None) -> set[str]:
    if types is None:
        return set(FEED_TYPES)
    wanted = {name.strip() for name in types if name.strip()}
    unknown = sorted(wanted - set(FEED_TYPES))
    if unknown:
        raise ValueError(f"Unknown event type {', '.join(unknown)}; the types are {', '.join(FEED_TYPES)}.")
    return wanted or set(FEED_TYPES)


def cursor_parse(cursor: str) -> _Key:
    match = _CURSOR.fullmatch(cursor or "")
    if match is None:
        raise ValueError(
            "The cursor is not one this feed gave out. Pass the `next_cursor` (or an item's `cursor`) "
            "of an earlier answer, or leave `after` out to start from the beginning."
        )
    micros, source, pk = (int(part) for part in match.groups())
    try:
        written_at = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise ValueError("The cursor's time is out of range; pass a cursor this feed gave out.") from None
    if written_at > timezone.now() + timedelta(hours=1):
        # Only a made-up cursor lies in the future; following it would hide every item until then.
        raise ValueError("The cursor lies in the future; pass a cursor this feed gave out.")
    return _Key(written_at, source, pk)


# --- the sources ----------------------------------------------------------------------------------


def _after(position: _Key | None, source: int, time_field: str) -> Q:
    """Rows of ``source`` whose key (time, source, id) is greater than ``position``."""
    if position is None:
        return Q()
    if source > position.source:
        return Q(**{f"{time_field}__gte": position.written_at})
    if source < position.source:
        return Q(**{f"{time_field}__gt": position.written_at})
    return Q(**{f"{time_field}__gt": position.written_at}) | Q(
        **{time_field: position.written_at, "pk__gt": position.id}
    )


def _events(organisation_id, wanted: set[str], position, horizon, limit) -> list:
    kinds = Q(event_type__in=[_EVENT_TYPES[name] for name in wanted if name in _EVENT_TYPES])
    if "unsubscribe" in wanted:
        # An SES opt-out: the subscription notification that claimed the recipient's marker.
        opted_out = RecipientActivity.objects.filter(
            recipient_id=OuterRef("recipient_id"),
            kind=RecipientActivity.Kind.UNSUBSCRIBED,
            occurred_at=OuterRef("occurred_at"),
        )
        kinds |= Q(event_type=Event.Type.SUBSCRIPTION) & Q(Exists(opted_out))
    rows: QuerySet[Event] = (
        Event.objects.filter(kinds, _after(position, _EVENTS, "received_at"), campaign__organisation_id=organisation_id)
        .filter(received_at__lte=horizon)
        .select_related("campaign")
        .order_by("received_at", "pk")[:limit]
    )
    return [
        (
            _Key(event.received_at, _EVENTS, event.pk),
            "unsubscribe" if event.event_type == Event.Type.SUBSCRIPTION else str(event.event_type),
            event.occurred_at,
            _event_data(event),
        )
        for event in rows
    ]


def _event_data(event: Event) -> dict:
    data = {
        "email": str(event.email),
        "campaign_id": event.campaign_id,
        "campaign_name": str(event.campaign.name) if event.campaign else None,
        "ses_message_id": str(event.ses_message_id),
        # A single message (POST /messages) is a campaign of one: its id is the message's id.
        "message_id": event.campaign_id if event.campaign and event.campaign.kind == Campaign.Kind.MESSAGE else None,
    }
    if event.event_type == Event.Type.BOUNCE:
        data.update(
            bounce_type=str(event.bounce_type), bounce_subtype=str(event.bounce_subtype), diagnostic=str(event.detail)
        )
    elif event.event_type == Event.Type.COMPLAINT:
        data.update(feedback_type=str(event.detail))
    elif event.event_type == Event.Type.SUBSCRIPTION:
        data.update(source="ses")
    return data


def _link_unsubscribes(organisation_id, position, horizon, limit) -> list:
    from_ses = Event.objects.filter(
        recipient_id=OuterRef("recipient_id"), event_type=Event.Type.SUBSCRIPTION, occurred_at=OuterRef("occurred_at")
    )
    rows = (
        RecipientActivity.objects.filter(
            _after(position, _LINK_UNSUBSCRIBES, "occurred_at"),
            kind=RecipientActivity.Kind.UNSUBSCRIBED,
            recipient__campaign__organisation_id=organisation_id,
            occurred_at__lte=horizon,
        )
        .exclude(Exists(from_ses))
        .select_related("recipient__campaign")
        .order_by("occurred_at", "pk")[:limit]
    )
    return [
        (
            _Key(row.occurred_at, _LINK_UNSUBSCRIBES, row.pk),
            "unsubscribe",
            row.occurred_at,
            {
                "email": str(row.recipient.email),
                "campaign_id": row.recipient.campaign_id,
                "campaign_name": str(row.recipient.campaign.name),
                "message_id": row.recipient.campaign_id
                if row.recipient.campaign.kind == Campaign.Kind.MESSAGE
                else None,
                "source": "link",
            },
        )
        for row in rows
    ]


def _finished_campaigns(organisation_id, position, horizon, limit) -> list:
    rows = (
        Campaign.objects.filter(
            _after(position, _CAMPAIGNS, "finished_at"),
            organisation_id=organisation_id,
            kind=Campaign.Kind.CAMPAIGN,  # a single message's end is its delivery event
            finished_at__lte=horizon,
        )
        .only("pk", "name", "status", "started_at", "finished_at")
        .order_by("finished_at", "pk")[:limit]
    )
    return [
        (
            _Key(campaign.finished_at, _CAMPAIGNS, campaign.pk),
            "campaign_finished",
            campaign.finished_at,
            {
                "campaign_id": campaign.pk,
                "campaign_name": str(campaign.name),
                "status": str(campaign.status),
                "started_at": campaign.started_at.isoformat() if campaign.started_at else None,
                "finished_at": campaign.finished_at.isoformat(),
            },
        )
        for campaign in rows
    ]


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
