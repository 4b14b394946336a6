"""Store SES events, match them to campaign recipients and move the campaign's figures.

``events_store`` stores a batch of parsed records (the webhook's group commit hands over many at
once), matches each to a campaign and recipient, applies the policies (``tracking.policies``) and
moves the counters and breakdowns (through ``stats``), all in one transaction: either the events
and everything they caused are committed, or nothing is (and SNS retries).

Matching: the ``campaign`` and ``recipient`` tags (``mail.tags``, set by the engine through
``X-SES-MESSAGE-TAGS``) when they name a recipient of that campaign; otherwise the SES message id
stored on ``Recipient.ses_message_id`` (identity notifications carry no tags). Events that match
nothing are stored with no campaign and counted by ``unmatched_count``.

Figures count recipients, not notifications: SES sends two notifications for one bounce,
complaint or delivery when both a configuration set and the identity's own topic are set up.
Both are stored (different SNS messages), but the recipient counters (and the unique opens and
clicks) move only when a notification claims its recipient's marker (``RecipientActivity``, one
row per recipient and kind, ``stats.counters.markers_claim``). Raw opens and clicks count every
notification.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from campaigns.models import Campaign, Recipient
from campaigns.services import organisation_reputation_enforce
from stats.breakdowns import events_breakdown
from stats.counters import events_counted, markers_claim, usage_day, usage_rows_add
from stats.models import RecipientActivity
from tracking.guard import reputation_guard
from tracking.models import Event
from tracking.parsing import EventRefused, ParsedEvent, event_parse, opted_out
from tracking.policies import policies_apply


def event_record(*, sns_message_id: str, record: dict, received_at: datetime | None = None) -> Event | None:
    """Store one SES record and apply its effects. Returns None when the SNS message was seen."""
    parsed = event_parse(record=record)
    return events_store(items=[(sns_message_id, record, parsed)], received_at=received_at)[0]


def events_store(
    *, items: list[tuple[str, dict, ParsedEvent]], received_at: datetime | None = None
) -> list[Event | None]:
    """Store parsed records in one transaction (the webhook's group commit hands over many at once).

    Returns, per item, the stored Event or None for an SNS message already recorded. One
    transaction means one WAL flush and one UPDATE of each campaign's counter row for the whole
    batch, instead of one per event: with every event of a campaign incrementing the same row,
    that row's lock (held until the commit is on disk) is what limits the webhook's throughput.
    """
    try:
        with transaction.atomic():
            return _store(items, received_at or timezone.now())
    except IntegrityError:
        # At-least-once delivery: a copy of one of these SNS messages was committed concurrently.
        if len(items) > 1:
            return [events_store(items=[item], received_at=received_at)[0] for item in items]
        if Event.objects.filter(sns_message_id=items[0][0][:100]).exists():
            return [None]
        raise
    except DataError as error:
        # Input the database cannot hold (PostgreSQL refuses \u0000 in JSON text, for one).
        if len(items) > 1:
            raise
        raise EventRefused("The SES record holds data that cannot be stored.") from error


def _store(items: list[tuple[str, dict, ParsedEvent]], received_at: datetime) -> list[Event | None]:
    # No look-up of known MessageIds first: replays are rare, and the unique index catches them
    # (events_store then retries the batch one message at a time).
    message_ids = [message_id[:100] for message_id, _, _ in items]
    seen: set[str] = set()
    recipients = _recipients_match([parsed for _, _, parsed in items])
    results: list[Event | None] = []
    fresh: list[tuple[Event, ParsedEvent]] = []
    for message_id, (_, record, parsed), recipient in zip(message_ids, items, recipients, strict=True):
        if message_id in seen:
            results.append(None)
            continue
        seen.add(message_id)
        event = Event(
            sns_message_id=message_id,
            event_type=parsed.event_type,
            campaign_id=recipient.campaign_id if recipient else None,
            recipient=recipient,
            ses_message_id=parsed.ses_message_id[:100],
            email=(parsed.addresses[0] if parsed.addresses else "")[:254],
            occurred_at=parsed.occurred_at,
            received_at=received_at,
            payload=record,
            **parsed.fields,
        )
        results.append(event)
        fresh.append((event, parsed))
    stored = [event for event, _ in fresh]
    _events_insert(stored)
    policies_apply(fresh)
    # The markers decide which notifications count: the first of each kind per recipient.
    _figures_move(stored, _markers_insert(fresh), received_at)
    return results


def _figures_move(stored: list[Event], firsts: dict[tuple[int, str], Event], received_at: datetime) -> None:
    """Move the campaigns' counters, then their breakdowns, for the batch's events and first markers."""
    deltas: dict[int, dict[str, int]] = {}

    def add(campaign_id: int | None, name: str | None, amount: int = 1) -> None:
        if campaign_id and name and amount:
            campaign = deltas.setdefault(campaign_id, {})
            campaign[name] = campaign.get(name, 0) + amount

    for event in stored:
        for name, amount in _raw_counters(event).items():
            add(event.campaign_id, name, amount)
    for (_, kind), event in firsts.items():
        add(event.campaign_id, MARKER_COUNTERS[kind])
    # Counters before breakdowns: the same lock order as counters_repair (stats row first).
    _counters_add(deltas, received_at)
    campaign_ids = {event.campaign_id for event in stored if event.campaign_id}
    campaigns = list(Campaign.objects.filter(pk__in=campaign_ids).values_list("pk", "started_at", "organisation_id"))
    starts = {pk: started_at for pk, started_at, _ in campaigns}
    events_breakdown(stored, firsts=[(kind, event) for (_, kind), event in firsts.items()], starts=starts)
    # The organisations' daily usage last, as every writer takes those rows last.
    usage = _usage_rows(firsts, {pk: organisation_id for pk, _, organisation_id in campaigns})
    usage_rows_add(rows=usage)
    # Their reputation once this commits: a hold pauses campaigns, and no campaign row may be locked
    # after the usage rows. The engine tick judges again if this is lost.
    judged = {key[0] for key, counts in usage.items() if counts.get("bounced_hard") or counts.get("complained")}
    for organisation_id in sorted(judged):
        transaction.on_commit(partial(organisation_reputation_enforce, organisation_id=organisation_id), robust=True)


def _usage_rows(firsts: dict[tuple[int, str], Event], organisations: dict[int, int]) -> dict:
    """{(organisation id, day): counts} of the recipients first delivered, hard-bounced or complaining
    in this batch, on the installation's local day the event happened."""
    rows: dict[tuple[int, Any], dict[str, int]] = {}
    for (_, kind), event in firsts.items():
        name = USAGE_MARKERS.get(kind)
        organisation_id = organisations.get(event.campaign_id)
        if name and organisation_id:
            counts = rows.setdefault((organisation_id, usage_day(event.occurred_at)), {})
            counts[name] = counts.get(name, 0) + 1
    return rows


EVENT_COLUMNS = (
    "sns_message_id", "event_type", "campaign_id", "recipient_id", "ses_message_id", "email", "occurred_at",
    "received_at", "bounce_type", "bounce_subtype", "detail", "link", "ip_address", "user_agent", "is_machine",
    "payload",
)  # fmt: skip


def _events_insert(events: list[Event]) -> None:
    """One multi-row INSERT ... RETURNING id for the batch.

    Equivalent to ``bulk_create`` but without building the statement through the ORM's compiler,
    which costs more CPU than the rest of the event's handling in the webhook's busiest path.
    """
    if not events:
        return
    quote = connection.ops.quote_name
    fields = [Event._meta.get_field(name) for name in EVENT_COLUMNS]  # attnames (campaign_id) resolve too
    params: list[Any] = []
    for event in events:
        for name, model_field in zip(EVENT_COLUMNS, fields, strict=True):
            params.append(model_field.get_db_prep_save(getattr(event, name), connection))
    row = f"({', '.join(['%s'] * len(EVENT_COLUMNS))})"
    sql = (
        f"INSERT INTO {quote(Event._meta.db_table)} ({', '.join(quote(name) for name in EVENT_COLUMNS)}) "
        f"VALUES {', '.join([row] * len(events))} RETURNING {quote('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = [found[0] for found in cursor.fetchall()]
    for event, pk in zip(events, ids, strict=True):
        event.pk = pk
        event._state.adding = False
        event._state.db = connection.alias


def _counters_add(deltas: dict[int, dict[str, int]], received_at: datetime) -> None:
    """One UPDATE per campaign, last in the transaction and in id order (no deadlocks, short locks)."""
    for campaign_id in sorted(deltas):
        counts = deltas[campaign_id]
        if events_counted(campaign_id=campaign_id, counts=counts, received_at=received_at) and (
            counts.get("bounced_hard") or counts.get("complained")
        ):
            reputation_guard(campaign_id=campaign_id)


def _recipients_match(events: list[ParsedEvent]) -> list[Recipient | None]:
    """Recipient per event: by the campaign/recipient tags, else by SES message id (two queries)."""
    columns = ("id", "campaign_id", "contact_id", "email")
    tagged = [(_tag_int(p.tags, "campaign"), _tag_int(p.tags, "recipient")) for p in events]
    wanted = {recipient for campaign, recipient in tagged if campaign and recipient}
    by_id = {r.pk: r for r in Recipient.objects.filter(pk__in=wanted).only(*columns)} if wanted else {}
    found: list[Recipient | None] = []
    for campaign_id, recipient_id in tagged:
        recipient = by_id.get(recipient_id)
        found.append(recipient if recipient and recipient.campaign_id == campaign_id else None)
    missing = {p.ses_message_id for p, r in zip(events, found, strict=True) if r is None and p.ses_message_id}
    if missing:
        by_message = {
            r.ses_message_id: r
            for r in Recipient.objects.filter(ses_message_id__in=missing).only(*columns, "ses_message_id")
        }
        found = [r or by_message.get(p.ses_message_id) for p, r in zip(events, found, strict=True)]
    return found


def _tag_int(tags: dict, name: str) -> int | None:
    values = tags.get(name)
    value = values[0] if isinstance(values, list) and values else values
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**62 else None


def _raw_counters(event: Event) -> dict[str, int]:
    """Counters of notifications rather than recipients: every open, click, delay, rendering failure."""
    kind = event.event_type
    if kind in {Event.Type.OPEN, Event.Type.CLICK}:
        name = "opens" if kind == Event.Type.OPEN else "clicks"
        return {name: 1, f"human_{name}": int(not event.is_machine)}
    if kind == Event.Type.DELIVERY_DELAY:
        return {"delayed": 1}
    if kind == Event.Type.RENDERING_FAILURE:
        return {"rendering_failures": 1}
    return {}


Kind = RecipientActivity.Kind
# The counter each marker moves when a notification inserts it (None: report filter only).
MARKER_COUNTERS: dict[str, str | None] = {
    Kind.OPEN: "unique_opens",
    Kind.HUMAN_OPEN: "unique_human_opens",
    Kind.CLICK: "unique_clicks",
    Kind.HUMAN_CLICK: "unique_human_clicks",
    Kind.HUMAN_ENGAGED: "unique_human_engaged",
    Kind.DELIVERED: "delivered",
    Kind.BOUNCED: None,
    Kind.BOUNCED_HARD: "bounced_hard",
    Kind.BOUNCED_SOFT: "bounced_soft",
    Kind.COMPLAINED: "complained",
    Kind.REJECTED: "rejected",
    Kind.UNSUBSCRIBED: "unsubscribed",
}
# The markers the organisations' usage counts (stats.models.OrganisationDay: reputation per organisation).
USAGE_MARKERS = {Kind.DELIVERED: "delivered", Kind.BOUNCED_HARD: "bounced_hard", Kind.COMPLAINED: "complained"}
OUTCOME_MARKERS = {
    Event.Type.DELIVERY: [Kind.DELIVERED],
    Event.Type.COMPLAINT: [Kind.COMPLAINED],
    Event.Type.REJECT: [Kind.REJECTED],
}


def _marker_kinds(event: Event, parsed: ParsedEvent) -> list[str]:
    """The markers a notification claims for its recipient (only the first claim of each counts)."""
    kind = event.event_type
    if kind in {Event.Type.OPEN, Event.Type.CLICK}:
        name = Kind.OPEN if kind == Event.Type.OPEN else Kind.CLICK
        human = [Kind.HUMAN_OPEN if kind == Event.Type.OPEN else Kind.HUMAN_CLICK, Kind.HUMAN_ENGAGED]
        return [name] + ([] if event.is_machine else human)
    if kind == Event.Type.BOUNCE:
        return [Kind.BOUNCED, Kind.BOUNCED_HARD if event.bounce_type == "Permanent" else Kind.BOUNCED_SOFT]
    if kind == Event.Type.SUBSCRIPTION:
        return [Kind.UNSUBSCRIBED] if opted_out(parsed) else []
    return OUTCOME_MARKERS.get(kind, [])


def _markers_insert(fresh: list[tuple[Event, ParsedEvent]]) -> dict[tuple[int, str], Event]:
    """Claim each (recipient, kind) marker of the batch; returns the ones this batch inserted,
    each with the notification that counts (the batch's first for that marker).

    Two notifications of one bounce in the same batch claim one marker; in two concurrent
    batches, the unique constraint makes the second wait for the first's commit and insert nothing.
    """
    first: dict[tuple[int, str], Event] = {}
    earliest: dict[tuple[int, str], datetime] = {}
    for event, parsed in fresh:
        if not event.recipient_id:
            continue  # unmatched: no campaign, no counter
        for kind in _marker_kinds(event, parsed):
            key = (event.recipient_id, kind)
            first.setdefault(key, event)
            earliest[key] = min(earliest.get(key, event.occurred_at), event.occurred_at)
    inserted = markers_claim(rows=earliest)
    return {key: first[key] for key in sorted(inserted)}


def unmatched_count() -> int:
    """Events that matched no campaign (kept for investigation, not dropped)."""
    return Event.objects.filter(campaign__isnull=True).count()
