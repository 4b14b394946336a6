"""A campaign's audience: who it would reach now, and the frozen recipient snapshot at send time."""

from __future__ import annotations

from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet, Value
from django.db.models.functions import Lower, StrIndex, Substr
from django.utils import timezone

from audiences.models import Contact
from audiences.segments import segment_filter
from audiences.selectors import address_suppressed, subscribed_to_lists
from campaigns.models import Campaign, Recipient
from stats.counters import snapshot_recorded


def _selection(campaign: Campaign) -> QuerySet[Contact]:
    """Contacts chosen by the include/exclude lists and segments, before any status filtering.

    Only the campaign's organisation's contacts, through its own lists and segments: a list or
    segment of another organisation (never offered by the forms) includes nobody.
    """
    own = campaign.organisation_id
    include_lists = list(campaign.include_lists.filter(organisation_id=own).values_list("pk", flat=True))
    exclude_lists = list(campaign.exclude_lists.filter(organisation_id=own).values_list("pk", flat=True))
    include = Q(pk__in=[])
    if include_lists:
        include |= Q(subscribed_to_lists(include_lists))
    for segment in campaign.include_segments.filter(organisation_id=own):
        include |= segment_filter(segment)
    contacts = Contact.objects.filter(include, organisation_id=own)
    if exclude_lists:
        contacts = contacts.exclude(subscribed_to_lists(exclude_lists))
    for segment in campaign.exclude_segments.filter(organisation_id=own):
        contacts = contacts.exclude(segment_filter(segment))
    return contacts


def audience_queryset(campaign: Campaign) -> QuerySet[Contact]:
    """Who would receive the campaign if it were sent now."""
    return _selection(campaign).filter(status=Contact.Status.ACTIVE).exclude(address_suppressed())


def audience_count(campaign: Campaign) -> int:
    return audience_queryset(campaign).count()


def audience_left_out(campaign: Campaign) -> dict[str, int]:
    """How many selected contacts are left out, and why (status, or the suppression list)."""
    selection = _selection(campaign)
    counts = {
        status: selection.filter(status=status).count()
        for status in (Contact.Status.UNSUBSCRIBED, Contact.Status.BOUNCED, Contact.Status.COMPLAINED)
    }
    counts["suppressed"] = selection.filter(status=Contact.Status.ACTIVE).filter(address_suppressed()).count()
    return {key: value for key, value in counts.items() if value}


def audience_snapshot(*, campaign_id: int) -> int:
    """Freeze the audience into Recipient rows with one INSERT … SELECT; safe to run twice.

    Contacts are unique on their normalised email, so the snapshot is deduplicated by
    construction. Returns the number of recipients of the campaign.
    """
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.snapshot_at is not None:
            return campaign.recipients.count()
        if campaign.status == Campaign.Status.CANCELLED:  # cancelled before its start task ran
            return 0
        # Django keeps the values_list() order (fields and annotations) in the SELECT.
        select_sql, params = (
            audience_queryset(campaign)
            .order_by()
            .annotate(
                snapshot_campaign=Value(campaign.pk),
                snapshot_status=Value(str(Recipient.Status.QUEUED)),
                snapshot_attempts=Value(0),
                snapshot_error=Value(""),
            )
            .values_list("snapshot_campaign", "pk", "email", "snapshot_status", "snapshot_attempts", "snapshot_error")
            .query.sql_with_params()
        )
        table = connection.ops.quote_name(Recipient._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (campaign_id, contact_id, email, status, attempts, error) {select_sql}",
                params,
            )
        campaign.snapshot_at = timezone.now()
        campaign.left_out = audience_left_out(campaign)
        campaign.save(update_fields=["snapshot_at", "left_out"])
        count = campaign.recipients.count()
        # The counter row, with the total that progress divides, and the domains for reports.
        snapshot_recorded(campaign_id=campaign.pk, recipients=count, domains=recipient_domains(campaign_id=campaign.pk))
        return count


def recipient_domains(*, campaign_id: int) -> dict[str, int]:
    """The campaign's recipients per domain (one GROUP BY), recorded once at snapshot time."""
    domains = (
        Recipient.objects.filter(campaign_id=campaign_id)
        .annotate(domain=Lower(Substr("email", StrIndex("email", Value("@")) + 1)))
        .values("domain")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["domain"]: row["n"] for row in domains}
