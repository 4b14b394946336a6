"""A campaign's recipients with their outcome: filters, the table, CSV export, segment creation."""

from __future__ import annotations

from collections.abc import Iterator

import django_tables2 as tables
from django.db.models import Q, QuerySet
from django.utils.html import format_html

from campaigns.models import Campaign, Recipient, Segment

OUTCOMES: dict[str, tuple[str, Q]] = {
    "delivered": ("Delivered", Q(activity__delivered_at__isnull=False)),
    "bounced": ("Bounced", Q(activity__bounced_at__isnull=False)),
    "complained": ("Complained", Q(activity__complained_at__isnull=False)),
    "opened": ("Opened", Q(activity__first_human_open_at__isnull=False)),
    "clicked": ("Clicked", Q(activity__first_human_click_at__isnull=False)),
    "not_opened": (
        "Delivered, not opened",
        Q(activity__delivered_at__isnull=False, activity__first_human_open_at__isnull=True),
    ),
    "unsubscribed": ("Unsubscribed", Q(activity__unsubscribed_at__isnull=False)),
}

# How an outcome filter becomes segment rules (campaigns.segments rule format).
SEGMENT_RULES = {
    "opened": "opened",
    "clicked": "clicked",
    "not_opened": "not_opened",
    "bounced": "bounced",
}


def recipients_filtered(*, campaign: Campaign, outcome: str = "", search: str = "", link: str = "") -> QuerySet:
    rows = Recipient.objects.filter(campaign=campaign).select_related("activity")
    if outcome in OUTCOMES:
        rows = rows.filter(OUTCOMES[outcome][1])
    if link:
        rows = rows.filter(events__event_type="click", events__link=link).distinct()
    if search.strip():
        rows = rows.filter(email__icontains=search.strip())
    return rows


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
        order_by = ("email",)

    def render_email(self, record: Recipient, value: str):
        return format_html(
            '<a href="#" hx-get="/reports/recipients/{}/timeline/" hx-target="#timeline" hx-swap="innerHTML">{}</a>',
            record.pk,
            value,
        )

    def render_outcome(self, record: Recipient):
        activity = getattr(record, "activity", None)
        return (activity.last_event_type if activity and activity.last_event_type else "—").replace("_", " ")

    def render_when(self, record: Recipient):
        activity = getattr(record, "activity", None)
        if activity and activity.last_event_at:
            return activity.last_event_at.strftime("%d %b %Y %H:%M")
        return record.sent_at.strftime("%d %b %Y %H:%M") if record.sent_at else "—"


def export_rows(rows: QuerySet) -> Iterator[list[str]]:
    yield ["email", "sending_status", "last_event", "last_event_at", "sent_at", "ses_message_id", "error"]
    for recipient in rows.order_by("id").iterator(chunk_size=2000):
        activity = getattr(recipient, "activity", None)
        yield [
            recipient.email,
            recipient.status,
            activity.last_event_type if activity else "",
            activity.last_event_at.isoformat() if activity and activity.last_event_at else "",
            recipient.sent_at.isoformat() if recipient.sent_at else "",
            recipient.ses_message_id or "",
            recipient.error,
        ]


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
    base = f"{label}: {campaign.name}"[:180]
    name, number = base, 1
    while Segment.objects.filter(name=name).exists():
        number += 1
        name = f"{base} ({number})"
    return Segment.objects.create(name=name, match=Segment.Match.ALL, rules=rules)
