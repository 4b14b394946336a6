"""Single messages sent through the API (``POST /api/v1/messages``): the staff page's rows and table.

A message is a campaign of one recipient (``Campaign.Kind.MESSAGE``); its row shows that recipient's
sending status and what SES reported about it, read from its counters row, not from its events.
"""

from __future__ import annotations

import django_tables2 as tables
from django.db.models import OuterRef, QuerySet, Subquery
from django.urls import reverse
from django.utils.html import format_html

from campaigns.models import Campaign, Recipient
from campaigns.selectors import messages_of
from organisations.models import Organisation
from stats.models import CampaignStats

SEARCH_MAX = 254
DATE_FORMAT = "j M Y H:i"

# What SES reported, in words, and the counters that say it (any of them above zero).
OUTCOMES = [
    ("Delivered", ("delivered",)),
    ("Bounced", ("bounced_hard", "bounced_soft")),
    ("Marked as spam", ("complained",)),
    ("Opened", ("unique_opens",)),
    ("Clicked", ("unique_clicks",)),
]


def messages_listed(*, organisation: Organisation, search: str = "") -> QuerySet[Campaign]:
    """The organisation's single messages, newest first, each with its one recipient's fields.

    ``search``: addresses starting with it (an exact address included). Addresses are stored
    normalised to lower case, so a case-sensitive LIKE 'ann%' on the lowered input finds them
    without LOWER() on the column. The recipient's fields come from one look-up per row of the page
    on its (campaign, email) index, not a join the newest-first index could not serve.
    """
    rows = (
        messages_of(organisation)
        .select_related("stats")
        .defer("html_body", "text_body", "body_source", "left_out")  # the bodies stay in the database
        .order_by("-created_at", "-id")
    )
    search = search.strip().lower()
    if search:
        # merge_data is set on messages' recipients only: the condition of recipient_message_email_idx.
        rows = rows.filter(recipients__email__startswith=search, recipients__merge_data__isnull=False)
    recipient = Recipient.objects.filter(campaign=OuterRef("pk"))
    return rows.annotate(
        to=Subquery(recipient.values("email")[:1]),
        sending=Subquery(recipient.values("status")[:1]),
        sending_error=Subquery(recipient.values("error")[:1]),
        sent_at=Subquery(recipient.values("sent_at")[:1]),
    )


def status_words(status: str | None, error: str) -> str:
    if status == Recipient.Status.SENT:
        return "Sent"
    if status == Recipient.Status.FAILED:
        return f"Failed: {error or 'no reason recorded'}"
    if status == Recipient.Status.SKIPPED:
        return f"Not sent: {error or 'no reason recorded'}"
    return "Waiting to send"  # queued, or handed to a worker that has not finished


def outcome_words(stats: CampaignStats | None) -> str:
    if stats is None:
        return "Nothing yet"
    found = [words for words, counters in OUTCOMES if any(getattr(stats, name) for name in counters)]
    return ", ".join(found) or "Nothing yet"


class MessageTable(tables.Table):
    created_at = tables.DateTimeColumn(verbose_name="Queued", format=DATE_FORMAT)
    to = tables.Column(verbose_name="To")
    name = tables.Column(verbose_name="Template")
    sending = tables.Column(verbose_name="Status", empty_values=())
    sent_at = tables.DateTimeColumn(verbose_name="Sent at", format=DATE_FORMAT)
    outcome = tables.Column(verbose_name="What SES reported", empty_values=())
    details = tables.Column(verbose_name="Report", empty_values=())

    class Meta:
        # Newest first only: another order would sort every message of the organisation.
        orderable = False
        attrs = {"class": "table is-fullwidth is-hoverable is-narrow"}

    def render_sending(self, record: Campaign) -> str:
        return status_words(record.sending, record.sending_error)

    def render_outcome(self, record: Campaign) -> str:
        return outcome_words(getattr(record, "stats", None))

    def render_details(self, record: Campaign):
        return format_html(
            '<a href="{}" aria-label="Details of the message to {}">Details</a>',
            reverse("reports:campaign", args=[record.pk]),
            record.to,
        )
