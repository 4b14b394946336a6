"""A campaign's recipients with their outcome: filters, the table, CSV export, segment creation."""

from __future__ import annotations

from collections.abc import Iterator

import django_tables2 as tables
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.urls import reverse
from django.utils.html import format_html
from django.utils.timezone import localtime

from audiences.models import Segment
from audiences.services import segment_save
from campaigns.models import Campaign, Recipient
from stats.models import RecipientActivity
from tracking.models import Event


def _had(kind: str) -> Q:
    return Q(Exists(RecipientActivity.objects.filter(recipient=OuterRef("pk"), kind=kind)))


Kind = RecipientActivity.Kind
OUTCOMES: dict[str, tuple[str, Q]] = {
    "delivered": ("Delivered", _had(Kind.DELIVERED)),
    "bounced": ("Bounced", _had(Kind.BOUNCED)),
    "complained": ("Complained", _had(Kind.COMPLAINED)),
    "opened": ("Opened", _had(Kind.HUMAN_OPEN)),
    "clicked": ("Clicked", _had(Kind.HUMAN_CLICK)),
    "not_opened": ("Delivered, not opened", _had(Kind.DELIVERED) & ~_had(Kind.HUMAN_OPEN)),
    "unsubscribed": ("Unsubscribed", _had(Kind.UNSUBSCRIBED)),
}

# How an outcome filter becomes segment rules (audiences.segments rule format).
SEGMENT_RULES = {
    "opened": "opened",
    "clicked": "clicked",
    "not_opened": "not_opened",
    "bounced": "bounced",
}


def recipients_filtered(*, campaign: Campaign, outcome: str = "", search: str = "", link: str = "") -> QuerySet:
    rows = Recipient.objects.filter(campaign=campaign)
    if outcome in OUTCOMES:
        rows = rows.filter(OUTCOMES[outcome][1])
    if link:
        rows = rows.filter(Exists(Event.objects.filter(recipient=OuterRef("pk"), event_type="click", link=link)))
    if search.strip():
        rows = rows.filter(email__icontains=search.strip())
    # The last event of each row shown: one index look-up per row of the page, not a join.
    last = Event.objects.filter(recipient=OuterRef("pk")).order_by("-occurred_at", "-id")
    return rows.annotate(
        last_event_type=Subquery(last.values("event_type")[:1]),
        last_event_at=Subquery(last.values("occurred_at")[:1]),
    )


class RecipientTable(tables.Table):
    email = tables.Column(verbose_name="Email")
    status = tables.Column(verbose_name="Sending")
    outcome = tables.Column(verbose_name="Last event", empty_values=(), orderable=False)
    when = tables.Column(verbose_name="When", empty_values=(), orderable=False)

    class Meta:
        model = Recipient
        fields = ("email", "status")
        sequence = ("email", "status", "outcome", "when")
        attrs = {"class": "table is-fullwidth is-hoverable is-narrow"}

    def render_email(self, record: Recipient, value: str):
        # static/js/reports.js opens the timeline in a row under this one (a second click closes it).
        url = reverse("reports:timeline", args=[record.pk])
        return format_html(
            '<a href="{}" data-timeline-url="{}" data-recipient="{}" aria-expanded="false">{}</a>',
            url,
            url,
            record.pk,
            value,
        )

    def render_outcome(self, record: Recipient):
        return (record.last_event_type or "—").replace("_", " ")

    def render_when(self, record: Recipient):
        moment = record.last_event_at or record.sent_at
        return localtime(moment).strftime("%d %b %Y %H:%M") if moment else "—"


EXPORT_CHUNK = 2000


def export_rows(rows: QuerySet) -> Iterator[list[str]]:
    """The CSV rows: a header, then one row per recipient, read in chunks of ``EXPORT_CHUNK``.

    ``error`` says what went wrong: the send error if SES refused the message, then (one query per
    chunk) the recipient's last bounce (type, subtype, SES's diagnostic) and complaint (feedback type).
    """
    yield ["email", "sending_status", "last_event", "last_event_at", "sent_at", "ses_message_id", "error"]
    chunk: list[Recipient] = []
    for recipient in rows.order_by("id").iterator(chunk_size=EXPORT_CHUNK):
        chunk.append(recipient)
        if len(chunk) == EXPORT_CHUNK:
            yield from _export_chunk(chunk)
            chunk = []
    yield from _export_chunk(chunk)


def _export_chunk(chunk: list[Recipient]) -> Iterator[list[str]]:
    problems = delivery_problems([recipient.pk for recipient in chunk])
    for recipient in chunk:
        yield [
            recipient.email,
            recipient.status,
            recipient.last_event_type or "",
            recipient.last_event_at.isoformat() if recipient.last_event_at else "",
            recipient.sent_at.isoformat() if recipient.sent_at else "",
            recipient.ses_message_id or "",
            "; ".join(part for part in (recipient.error, *problems.get(recipient.pk, ())) if part),
        ]


def delivery_problems(recipient_ids: list[int]) -> dict[int, list[str]]:
    """{recipient id: ["Bounce Permanent/General: 5.1.1 smtp; 550 …", "Complaint: abuse"]}, from each
    recipient's last bounce and last complaint event (as tracking.storing stored them)."""
    if not recipient_ids:
        return {}
    last: dict[tuple[int, str], Event] = {}
    events = Event.objects.filter(
        recipient_id__in=recipient_ids, event_type__in=[Event.Type.BOUNCE, Event.Type.COMPLAINT]
    ).only("recipient_id", "event_type", "bounce_type", "bounce_subtype", "detail")
    for event in events.order_by("occurred_at", "id"):
        last[(event.recipient_id, event.event_type)] = event
    problems: dict[int, list[str]] = {}
    for (recipient_id, kind), event in sorted(last.items()):
        problems.setdefault(recipient_id, []).append(_problem_text(kind, event))
    return problems


def _problem_text(kind: str, event: Event) -> str:
    if kind == Event.Type.BOUNCE:
        reason = "/".join(part for part in (event.bounce_type, event.bounce_subtype) if part) or "type not given"
        return f"Bounce {reason}: {event.detail}" if event.detail else f"Bounce {reason}"
    return f"Complaint: {event.detail}" if event.detail else "Complaint: no feedback type given"


def segment_from_filter(*, campaign: Campaign, outcome: str, link: str = "", search: str = "") -> Segment:
    """Save the filtered view as a segment, so the next campaign can target (or skip) it."""
    rules = []
    if outcome in SEGMENT_RULES:
        value = {"campaign": campaign.pk}
        if link and outcome == "clicked":
            value["link"] = link
        rules.append({"field": "engagement", "operator": SEGMENT_RULES[outcome], "value": value})
    elif outcome:
        raise ValueError(f"“{OUTCOMES.get(outcome, (outcome,))[0]}” cannot be saved as a segment yet.")
    if search.strip():
        rules.append({"field": "email", "operator": "contains", "value": search.strip()})
    if not rules:
        raise ValueError("Choose an outcome (opened, clicked, did not open, bounced) to save as a segment.")
    label = OUTCOMES[outcome][0] if outcome else "Matching"
    name = f"{label}: {campaign.name}"[:180]
    return segment_save(
        segment=Segment(organisation_id=campaign.organisation_id),
        name=name,
        match=Segment.Match.ALL,
        rules=rules,
        number_if_taken=True,
    )
