"""Record SES events, keep the per-campaign counters and act on what the events say.

``event_record`` stores one SES record (event publishing ``eventType`` or identity
``notificationType`` format), matches it to a campaign and recipient, moves the campaign's
counters and applies the policies, all in one transaction: either the event and everything it
caused are committed, or nothing is (and SNS retries).

Matching: the ``campaign`` and ``recipient`` tags (``mail.tags``, set by the engine through
``X-SES-MESSAGE-TAGS``) when they name a recipient of that campaign; otherwise the SES message id
stored on ``Recipient.ses_message_id`` (identity notifications carry no tags). Events that match
nothing are stored with no campaign and counted by ``unmatched_count``.

Machine opens and clicks (``Event.is_machine``; reports show human figures beside raw ones):

1. Open or click whose user agent is a known mail-privacy proxy or image cache:
   ``GoogleImageProxy`` / ``ggpht.com`` (Gmail), ``YahooMailProxy``, ``Yahoo! Slurp``; these fetch
   images for the reader's privacy whether or not a person ever looks at the message.
2. Apple Mail Privacy Protection: the open comes with the bare user agent ``Mozilla/5.0`` (MPP's
   prefetcher sends nothing else) or from Apple's network ``17.0.0.0/8``.
3. Open or click whose user agent names an automated client or security scanner: ``bot``,
   ``crawler``, ``spider``, ``preview``, ``python-requests``, ``curl``, ``wget``, ``Go-http-client``,
   ``HeadlessChrome``, ``Barracuda``, ``Proofpoint``, ``Mimecast``, ``urldefense``, ``safelinks``,
   ``scanner``, or an empty user agent.
4. Timing: an open within ``MACHINE_OPEN_SECONDS`` (5 s) or a click within
   ``MACHINE_CLICK_SECONDS`` (10 s) of SES accepting the message (``mail.timestamp``; delivery
   follows within a second or two) is a prefetch or a link scanner, not a person. The send time is
   used rather than the Delivery event because SNS does not order events: an open may arrive first.

Policies (thresholds are settings):

- Permanent bounce: every bounced address is suppressed (``hard_bounce``) and its contact marked
  bounced (a complained contact stays complained).
- Transient or undetermined bounce: the address's consecutive soft-bounce count goes up once per
  message (across campaigns; a delivery resets it); at ``SOFT_BOUNCE_LIMIT`` the address is
  suppressed.
- Complaint: suppressed, contact marked complained, unsubscribed from every list.
- SES Subscription event: ``unsubscribeAll`` unsubscribes the contact from every list and
  suppresses the address; a topic opt-out unsubscribes from the list named like the topic.
- Reputation guard: after a hard bounce or complaint of a sending campaign, it pauses when the
  evidence says the true rate is above the limit, not on the first unlucky ratio: the Wilson 95%
  lower bound of hard bounces / (deliveries + hard bounces) above ``GUARD_BOUNCE_RATE`` with at
  least ``GUARD_MIN_BOUNCES`` hard bounces, or of complaints / deliveries above
  ``GUARD_COMPLAINT_RATE`` with at least ``GUARD_MIN_COMPLAINTS`` complaints, in both cases after
  ``GUARD_MIN_DELIVERIES`` outcomes (SES's own reputation figures count hard bounces only). When a
  person resumes, the counts restart from a baseline (``reputation_guard_rebase``).

Figures count recipients, not notifications: SES sends two notifications for one bounce,
complaint or delivery when both a configuration set and the identity's own topic are set up.
Both are stored (different SNS messages), but the delivered, bounced hard / soft, complained,
rejected and unsubscribed counters (and the unique opens and clicks) move only when a
notification claims its recipient's marker (``RecipientActivity``, one row per recipient and
kind, INSERT ... ON CONFLICT DO NOTHING RETURNING in the batch's transaction). Raw opens and
clicks count every notification.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from campaigns.models import Campaign, Contact, ContactList, Recipient, Subscription, normalise_email
from reports.breakdowns import breakdown_repair, events_breakdown
from tracking.models import AddressHealth, CampaignStats, Event, RecipientActivity, Suppression

logger = logging.getLogger(__name__)

MACHINE_OPEN_SECONDS = 5
MACHINE_CLICK_SECONDS = 10
PROXY_AGENTS = re.compile(r"GoogleImageProxy|ggpht\.com|YahooMailProxy|Yahoo! Slurp", re.IGNORECASE)
AUTOMATED_AGENTS = re.compile(
    r"bot\b|bot/|crawler|spider|preview|python-requests|curl/|wget|go-http-client|headlesschrome|"
    r"barracuda|proofpoint|mimecast|urldefense|safelinks|scanner",
    re.IGNORECASE,
)
APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")

EVENT_TYPES = {
    "Send": (Event.Type.SEND, "send"),
    "Delivery": (Event.Type.DELIVERY, "delivery"),
    "Bounce": (Event.Type.BOUNCE, "bounce"),
    "Complaint": (Event.Type.COMPLAINT, "complaint"),
    "Reject": (Event.Type.REJECT, "reject"),
    "Open": (Event.Type.OPEN, "open"),
    "Click": (Event.Type.CLICK, "click"),
    "Rendering Failure": (Event.Type.RENDERING_FAILURE, "failure"),
    "DeliveryDelay": (Event.Type.DELIVERY_DELAY, "deliveryDelay"),
    "Subscription": (Event.Type.SUBSCRIPTION, "subscription"),
}


class EventRefused(Exception):
    """The SES record is not one we understand; nothing was stored."""


@dataclass
class ParsedEvent:
    event_type: str
    ses_message_id: str
    occurred_at: datetime
    sent_at: datetime | None
    addresses: list[str]
    tags: dict[str, list[str]]
    detail: dict[str, Any]
    fields: dict[str, str] = field(default_factory=dict)


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
    _policies_apply(fresh)
    # The markers decide which notifications count: the first of each kind per recipient.
    firsts = _markers_insert(fresh)
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
    events_breakdown(stored, firsts=[(kind, event) for (_, kind), event in firsts.items()])
    return results


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
        counters = {name: amount for name, amount in deltas[campaign_id].items() if amount}
        if not counters:
            continue
        updates = {name: F(name) + amount for name, amount in counters.items()}
        CampaignStats.objects.filter(campaign_id=campaign_id).update(last_event_at=received_at, **updates)
        if {"bounced_hard", "complained"} & counters.keys():
            reputation_guard(campaign_id=campaign_id)


def event_parse(*, record: dict) -> ParsedEvent:
    if not isinstance(record, dict):
        raise EventRefused("The SES record is not a JSON object.")
    kind = record.get("eventType") or record.get("notificationType")
    if kind not in EVENT_TYPES:
        raise EventRefused(f"Unknown SES event type {str(kind)[:40]!r}.")
    event_type, detail_key = EVENT_TYPES[kind]
    mail = record.get("mail")
    detail = record.get(detail_key) or {}
    if not isinstance(mail, dict) or not isinstance(mail.get("messageId"), str) or not isinstance(detail, dict):
        raise EventRefused("The SES record has no usable 'mail' object or event details.")
    tags = mail.get("tags") if isinstance(mail.get("tags"), dict) else {}
    sent_at = _time(mail.get("timestamp"))
    parsed = ParsedEvent(
        event_type=event_type,
        ses_message_id=mail["messageId"],
        occurred_at=_time(detail.get("timestamp")) or sent_at or timezone.now(),
        sent_at=sent_at,
        addresses=_addresses(event_type, detail, mail),
        tags=tags,
        detail=detail,
    )
    parsed.fields = _event_fields(parsed)
    return parsed


def _addresses(event_type: str, detail: dict, mail: dict) -> list[str]:
    lists = {
        Event.Type.BOUNCE: ("bouncedRecipients", "emailAddress"),
        Event.Type.COMPLAINT: ("complainedRecipients", "emailAddress"),
        Event.Type.DELIVERY_DELAY: ("delayedRecipients", "emailAddress"),
    }
    if event_type in lists:
        key, inner = lists[event_type]
        found = [item.get(inner) for item in detail.get(key) or [] if isinstance(item, dict)]
    elif event_type == Event.Type.DELIVERY:
        found = detail.get("recipients") or []
    else:
        found = mail.get("destination") or []
    return [normalise_email(address) for address in found if isinstance(address, str) and address][:50]


def _event_fields(parsed: ParsedEvent) -> dict[str, Any]:
    detail = parsed.detail
    kind = parsed.event_type
    fields: dict[str, Any] = {}
    if kind == Event.Type.BOUNCE:
        fields["bounce_type"] = str(detail.get("bounceType", ""))[:20]
        fields["bounce_subtype"] = str(detail.get("bounceSubType", ""))[:40]
        first = (detail.get("bouncedRecipients") or [{}])[0]
        if isinstance(first, dict):
            fields["detail"] = " ".join(str(first.get(k, "")) for k in ("status", "diagnosticCode")).strip()[:1000]
    elif kind == Event.Type.COMPLAINT:
        fields["detail"] = str(detail.get("complaintFeedbackType", ""))[:1000]
    elif kind in {Event.Type.REJECT, Event.Type.RENDERING_FAILURE}:
        fields["detail"] = str(detail.get("reason") or detail.get("errorMessage") or "")[:1000]
    elif kind == Event.Type.DELIVERY_DELAY:
        fields["detail"] = str(detail.get("delayType", ""))[:1000]
    elif kind == Event.Type.DELIVERY:
        fields["detail"] = str(detail.get("smtpResponse", ""))[:1000]
    elif kind == Event.Type.SUBSCRIPTION:
        fields["detail"] = str(detail.get("source", ""))[:1000]
    if kind in {Event.Type.OPEN, Event.Type.CLICK}:
        fields["ip_address"] = str(detail.get("ipAddress", ""))[:45]
        fields["user_agent"] = str(detail.get("userAgent", ""))[:500]
        if kind == Event.Type.CLICK:
            fields["link"] = str(detail.get("link", ""))[:2000]
        fields["is_machine"] = is_machine(
            kind=kind, user_agent=fields["user_agent"], ip_address=fields["ip_address"],
            occurred_at=parsed.occurred_at, sent_at=parsed.sent_at,
        )  # fmt: skip
    return fields


def is_machine(*, kind: str, user_agent: str, ip_address: str, occurred_at: datetime, sent_at: datetime | None) -> bool:
    """The machine-open rules of the module docstring."""
    agent = user_agent.strip()
    if not agent or PROXY_AGENTS.search(agent) or AUTOMATED_AGENTS.search(agent):
        return True
    if kind == Event.Type.OPEN and agent == "Mozilla/5.0":
        return True
    try:
        if ipaddress.ip_address(ip_address) in APPLE_NETWORK and kind == Event.Type.OPEN:
            return True
    except ValueError:
        pass
    if sent_at is not None:
        window = MACHINE_OPEN_SECONDS if kind == Event.Type.OPEN else MACHINE_CLICK_SECONDS
        if (occurred_at - sent_at).total_seconds() < window:
            return True
    return False


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
        return [Kind.UNSUBSCRIBED] if _opted_out(parsed) else []
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


def markers_claim(*, rows: dict[tuple[int, str], datetime]) -> set[tuple[int, str]]:
    """INSERT the (recipient id, kind) markers ON CONFLICT DO NOTHING; returns the ones inserted.

    One statement for the batch, in key order (concurrent batches lock in the same order).
    """
    if not rows:
        return set()
    quote = connection.ops.quote_name
    keys = sorted(rows)
    params: list[Any] = []
    for recipient_id, kind in keys:
        params += [recipient_id, kind, connection.ops.adapt_datetimefield_value(rows[(recipient_id, kind)])]
    sql = (
        f"INSERT INTO {quote(RecipientActivity._meta.db_table)} "
        f"({quote('recipient_id')}, {quote('kind')}, {quote('occurred_at')}) "
        f"VALUES {', '.join(['(%s, %s, %s)'] * len(keys))} "
        f"ON CONFLICT ({quote('recipient_id')}, {quote('kind')}) DO NOTHING "
        f"RETURNING {quote('recipient_id')}, {quote('kind')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {(recipient_id, kind) for recipient_id, kind in cursor.fetchall()}


def unsubscribe_recorded(*, recipient_id: int, campaign_id: int, occurred_at: datetime) -> bool:
    """Count a recipient who unsubscribed (through the email's link) once, however often they
    come back and leave again; call inside the unsubscribe's transaction. True if it counted.
    """
    if not markers_claim(rows={(recipient_id, Kind.UNSUBSCRIBED): occurred_at}):
        return False
    CampaignStats.objects.filter(campaign_id=campaign_id).update(unsubscribed=F("unsubscribed") + 1)
    return True


# Tables in the order every batch locks them, address by address (see _policies_apply).
HEALTH, SUPPRESSION, CONTACT, SUBSCRIPTIONS = range(4)


def _policies_apply(fresh: list[tuple[Event, ParsedEvent]]) -> None:
    """What bounces, complaints and unsubscribes do to addresses, contacts, lists and the suppression list.

    The steps of the whole batch run table by table (soft-bounce streaks, suppression list,
    contacts, subscriptions) and, within a table, in address order: two webhook processes
    whose batches hold the same addresses (SES's two notifications of one bounce) then take
    their row locks in the same order and wait for each other instead of deadlocking.
    Every step is idempotent or conditional, so a second notification of the same bounce,
    complaint or unsubscribe changes nothing.
    """
    steps: list[tuple[int, str, int, Callable[[], None]]] = []

    def step(table: int, address: str, action: Callable[[], None]) -> None:
        steps.append((table, address, len(steps), action))

    delivered = {a for e, p in fresh if e.event_type == Event.Type.DELIVERY for a in p.addresses}
    if delivered:
        # A delivery ends the address's soft-bounce streak, before this batch's bounces count.
        streaks = AddressHealth.objects.filter(email__in=delivered, consecutive_soft_bounces__gt=0)
        for address in streaks.values_list("email", flat=True):
            step(HEALTH, address, partial(_streak_end, address))
    for event, parsed in fresh:
        for address in parsed.addresses:
            for table, action in _policy_steps(event, parsed, address):
                step(table, address, action)
    for _, _, _, action in sorted(steps, key=lambda item: item[:3]):
        action()


def _policy_steps(event: Event, parsed: ParsedEvent, address: str) -> list[tuple[int, Callable[[], None]]]:
    kind = event.event_type
    if kind == Event.Type.BOUNCE and event.bounce_type == "Permanent":
        return [
            (SUPPRESSION, partial(_suppress, address, Suppression.Reason.HARD_BOUNCE)),
            (CONTACT, partial(_contact_bounced, address)),
        ]
    if kind == Event.Type.BOUNCE:
        counted: dict[str, int] = {}
        return [
            (HEALTH, partial(_soft_bounce_count, address, event.ses_message_id, counted)),
            (SUPPRESSION, partial(_soft_bounce_limit, address, counted)),
        ]
    if kind == Event.Type.COMPLAINT:
        return [
            (SUPPRESSION, partial(_suppress, address, Suppression.Reason.COMPLAINT)),
            (CONTACT, partial(_contact_set, address, Contact.Status.COMPLAINED, from_statuses=None)),
            (SUBSCRIPTIONS, partial(_lists_leave, address, None)),
        ]
    if kind == Event.Type.SUBSCRIPTION:
        return _subscription_steps(parsed, address)
    return []


def _suppress(address: str, reason: str, note: str = "") -> None:
    # ignore_conflicts: an address suppressed earlier (for any reason) stays as it was.
    Suppression.objects.bulk_create([Suppression(email=address, reason=reason, note=note[:500])], ignore_conflicts=True)


def _contact_bounced(address: str) -> None:
    Contact.objects.filter(email=address).exclude(
        status__in=[Contact.Status.COMPLAINED, Contact.Status.BOUNCED]
    ).update(status=Contact.Status.BOUNCED, updated_at=timezone.now())


def _contact_set(address: str, status: str, *, from_statuses: list[str] | None) -> None:
    contacts = Contact.objects.filter(email=address)
    if from_statuses is not None:
        contacts = contacts.filter(status__in=from_statuses)
    contacts.update(status=status, updated_at=timezone.now())


def _lists_leave(address: str, list_names: list[str] | None) -> None:
    """Unsubscribe the address from every list (``None``) or from the lists of these names."""
    subscriptions = Subscription.objects.filter(contact__email=address, status=Subscription.Status.SUBSCRIBED)
    if list_names is not None:
        subscriptions = subscriptions.filter(contact_list__in=ContactList.objects.filter(name__in=list_names))
    subscriptions.update(status=Subscription.Status.UNSUBSCRIBED, changed_at=timezone.now())


def _streak_end(address: str) -> None:
    AddressHealth.objects.filter(email=address, consecutive_soft_bounces__gt=0).update(consecutive_soft_bounces=0)


def _soft_bounce_count(address: str, ses_message_id: str, counted: dict[str, int]) -> None:
    """One more soft bounce in a row, unless this message's bounce was already counted.

    A conditional UPDATE (the message id differs from the last one counted) whose row count
    decides: SES's second notification of the same bounce, in this batch or a concurrent one,
    is not a second bounce in a row.
    """
    AddressHealth.objects.bulk_create([AddressHealth(email=address)], ignore_conflicts=True)
    rows = AddressHealth.objects.filter(email=address)
    if ses_message_id:
        rows = rows.exclude(last_soft_bounce_message_id=ses_message_id)
    if rows.update(
        consecutive_soft_bounces=F("consecutive_soft_bounces") + 1,
        last_soft_bounce_message_id=ses_message_id[:100],
        updated_at=timezone.now(),
    ):
        health = AddressHealth.objects.filter(email=address).values_list("consecutive_soft_bounces", flat=True)
        counted["streak"] = health.first() or 0


def _soft_bounce_limit(address: str, counted: dict[str, int]) -> None:
    streak = counted.get("streak", 0)
    if streak >= settings.SOFT_BOUNCE_LIMIT:
        _suppress(address, Suppression.Reason.SOFT_BOUNCES, f"{streak} consecutive soft bounces")


def _opted_out(parsed: ParsedEvent) -> bool:
    """An SES subscription event saying the recipient opted out (of everything or of a topic)."""
    preferences = parsed.detail.get("newTopicPreferences") or {}
    if not isinstance(preferences, dict):
        return False
    topics = preferences.get("topicSubscriptionStatus")
    topics = topics if isinstance(topics, list) else []
    return preferences.get("unsubscribeAll") is True or any(
        isinstance(topic, dict) and topic.get("subscriptionStatus") == "OptOut" for topic in topics
    )


def _subscription_steps(parsed: ParsedEvent, address: str) -> list[tuple[int, Callable[[], None]]]:
    """Honour an unsubscribe made through SES subscription management: ``unsubscribeAll`` leaves
    every list and suppresses the address; a topic opt-out leaves the list named like the topic."""
    preferences = parsed.detail.get("newTopicPreferences") or {}
    if not isinstance(preferences, dict):
        return []
    if preferences.get("unsubscribeAll") is True:
        note = "Unsubscribed through SES subscription management"
        return [
            (SUPPRESSION, partial(_suppress, address, Suppression.Reason.UNSUBSCRIBED, note)),
            (
                CONTACT,
                partial(_contact_set, address, Contact.Status.UNSUBSCRIBED, from_statuses=[Contact.Status.ACTIVE]),
            ),
            (SUBSCRIPTIONS, partial(_lists_leave, address, None)),
        ]
    topics = preferences.get("topicSubscriptionStatus")
    opted_out = [
        str(topic.get("topicName"))
        for topic in (topics if isinstance(topics, list) else [])
        if isinstance(topic, dict) and topic.get("subscriptionStatus") == "OptOut"
    ]
    return [(SUBSCRIPTIONS, partial(_lists_leave, address, opted_out))] if opted_out else []


WILSON_Z = 1.96  # the 95% interval


def wilson_lower_bound(events: int, trials: int, *, z: float = WILSON_Z) -> float:
    """The lower end of the Wilson score interval for a rate of ``events`` in ``trials``.

    Unlike ``events / trials`` it stays low when few trials back a high ratio: 1 complaint in
    312 deliveries is 0.32%, but a true rate as low as 0.06% would often produce it.
    """
    if trials <= 0:
        return 0.0
    ratio = events / trials
    spread = z * z / trials
    centre = ratio + spread / 2
    margin = z * math.sqrt(ratio * (1 - ratio) / trials + spread / (4 * trials))
    return max(0.0, (centre - margin) / (1 + spread))


def reputation_guard_reason(
    *, delivered: int, bounced_hard: int, complained: int, resumed_at: datetime | None = None
) -> str | None:
    """Why the guard pauses, given the recipients counted since sending started (or was resumed),
    or None while the evidence does not show a rate above the limits.

    Pause when the Wilson 95% lower bound of hard bounces / (deliveries + hard bounces) is above
    ``GUARD_BOUNCE_RATE``, with at least ``GUARD_MIN_BOUNCES`` hard bounces, or that of
    complaints / deliveries is above ``GUARD_COMPLAINT_RATE``, with at least
    ``GUARD_MIN_COMPLAINTS`` complaints; either needs ``GUARD_MIN_DELIVERIES`` outcomes first.
    """
    since = "since sending started"
    if resumed_at:
        since = f"since sending was resumed at {timezone.localtime(resumed_at):%d %b %Y %H:%M}"
    outcomes = delivered + bounced_hard
    if outcomes < settings.GUARD_MIN_DELIVERIES:
        return None
    bounce_floor = wilson_lower_bound(bounced_hard, outcomes)
    if bounced_hard >= settings.GUARD_MIN_BOUNCES and bounce_floor > settings.GUARD_BOUNCE_RATE:
        return (
            f"Paused automatically: {bounced_hard:,} hard bounces from {outcomes:,} messages with an outcome "
            f"({bounced_hard / outcomes:.1%}) {since}. Even the low end of the 95% range of the true rate "
            f"(Wilson lower bound, {bounce_floor:.1%}) is above the {settings.GUARD_BOUNCE_RATE:.1%} limit; "
            f"the guard pauses only then, and with at least {settings.GUARD_MIN_BOUNCES} hard bounces and "
            f"{settings.GUARD_MIN_DELIVERIES} outcomes. SES reviews accounts from about 5% hard bounces: clean "
            "the list before resuming. After a resume the guard counts afresh."
        )
    complaint_floor = wilson_lower_bound(complained, delivered)
    if complained >= settings.GUARD_MIN_COMPLAINTS and complaint_floor > settings.GUARD_COMPLAINT_RATE:
        return (
            f"Paused automatically: {complained:,} complaints from {delivered:,} deliveries "
            f"({complained / delivered:.2%}) {since}. Even the low end of the 95% range of the true rate "
            f"(Wilson lower bound, {complaint_floor:.2%}) is above the {settings.GUARD_COMPLAINT_RATE:.2%} limit; "
            f"the guard pauses only then, and with at least {settings.GUARD_MIN_COMPLAINTS} complaints and "
            f"{settings.GUARD_MIN_DELIVERIES} outcomes. SES reviews accounts from about 0.1%: find out why "
            "people complain before resuming. After a resume the guard counts afresh."
        )
    return None


def reputation_guard(*, campaign_id: int) -> bool:
    """Pause a sending campaign whose figures since it started (or was last resumed) show a bounce
    or complaint rate above the limits (``reputation_guard_reason``). Returns True if it paused it.
    """
    from campaigns.services import CampaignError, campaign_pause

    stats = CampaignStats.objects.filter(campaign_id=campaign_id).first()
    if not stats:
        return False
    reason = reputation_guard_reason(
        delivered=max(0, stats.delivered - stats.guard_base_delivered),
        bounced_hard=max(0, stats.bounced_hard - stats.guard_base_bounced_hard),
        complained=max(0, stats.complained - stats.guard_base_complained),
        resumed_at=stats.guard_resumed_at,
    )
    if reason is None:
        return False
    if not Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.SENDING).exists():
        return False
    try:
        campaign_pause(campaign_id=campaign_id, reason=reason)
    except CampaignError:
        return False  # paused, finished or cancelled meanwhile
    logger.warning("Campaign %s paused by the reputation guard: %s", campaign_id, reason)
    return True


def reputation_guard_rebase(*, campaign_id: int) -> None:
    """A person resumed the campaign: from now on the guard judges only what happens next.

    Call in the resume's transaction. The counters are copied in one UPDATE, so events committed
    concurrently land either before the baseline (reviewed) or after it (judged).
    """
    CampaignStats.objects.filter(campaign_id=campaign_id).update(
        guard_base_delivered=F("delivered"),
        guard_base_bounced_hard=F("bounced_hard"),
        guard_base_complained=F("complained"),
        guard_resumed_at=timezone.now(),
    )


def subscription_confirm(*, topic_arn: str, subscribe_url: str) -> None:
    """Confirm an SNS subscription to an allowed topic by visiting its SubscribeURL.

    The URL must be an SNS endpoint (or a trusted local prefix): fetching whatever URL a message
    names would let anyone make this server request internal addresses.
    """
    import requests

    from tracking import sns

    if not sns.url_trusted(subscribe_url, query=True):
        raise sns.SNSRefused("The SubscribeURL is not an SNS endpoint.", status=403)
    try:
        response = requests.get(subscribe_url, timeout=10)
        response.raise_for_status()
    except requests.RequestException as error:
        logger.warning("Confirming the SNS subscription to %s failed: %s", topic_arn, error)
        raise sns.SNSRefused("The subscription could not be confirmed with SNS; try again.", status=502) from None
    logger.info("Confirmed the SNS subscription to %s", topic_arn)


def unmatched_count() -> int:
    """Events that matched no campaign (kept for investigation, not dropped)."""
    return Event.objects.filter(campaign__isnull=True).count()


def without_nul(value: Any) -> Any:
    """``value`` with NUL characters removed from every string (keys included)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    return value


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    # A time SES cannot have written (and one that would overflow once converted to UTC).
    return parsed if 2000 <= parsed.year <= 2200 else None


def stats_recount(*, campaign_id: int) -> dict[str, int]:
    """The event-derived counters of a campaign, recounted from its stored events.

    Recipient counters count distinct recipients (SES may notify one bounce twice); opens,
    clicks, delays and rendering failures count notifications. ``unsubscribed`` counts the
    recipients' unsubscribe markers: unsubscribe links leave no event, only the marker. ``sent``
    (the engine's) is recounted from the recipients by ``outcomes_recount``.
    """
    from django.db.models import Count, Q

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
    from django.db.models import Count

    from campaigns.models import Recipient

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
        stats = CampaignStats.objects.select_for_update().filter(campaign_id=campaign_id).first()
        if stats is None:
            return {}
        recounted = stats_recount(campaign_id=campaign_id) | outcomes_recount(campaign_id=campaign_id)
        differences = {
            name: (getattr(stats, name), value) for name, value in recounted.items() if getattr(stats, name) != value
        }
        if fix and differences:
            for name, (_, value) in differences.items():
                setattr(stats, name, value)
            stats.save(update_fields=list(differences))
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
