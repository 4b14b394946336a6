"""Reads of the organisation pages, each scoped by the organisation it is given."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

from django.db.models import Count, QuerySet
from django.utils import timezone

from organisations.models import AuditEntry, Membership, Organisation


def members_of(organisation: Organisation) -> QuerySet[Membership]:
    return Membership.objects.filter(organisation=organisation).select_related("user").order_by("user__username")


def membership_in(organisation: Organisation, pk: int) -> Membership | None:
    return Membership.objects.filter(organisation=organisation, pk=pk).select_related("user", "organisation").first()


def children_of(organisation: Organisation) -> QuerySet[Organisation]:
    return Organisation.objects.filter(parent=organisation).annotate(member_count=Count("memberships"))


def all_organisations() -> list[tuple[int, Organisation]]:
    """Every organisation as (depth, organisation), each followed by its children: the operators' tree."""
    rows = list(Organisation.objects.annotate(member_count=Count("memberships")).order_by("name", "id"))
    by_parent: dict[int | None, list[Organisation]] = {}
    for row in rows:
        by_parent.setdefault(row.parent_id, []).append(row)

    def walk(parent_id: int | None, depth: int) -> Iterator[tuple[int, Organisation]]:
        for row in by_parent.get(parent_id, []):
            yield depth, row
            yield from walk(row.pk, depth + 1)

    return list(walk(None, 0))


def _day_start(day: datetime.date) -> datetime.datetime:
    """Midnight of ``day`` in the staff member's time zone (the filter's dates are theirs)."""
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min), timezone.get_current_timezone())


def audit_entries(
    organisation: Organisation,
    *,
    action: str = "",
    username: str = "",
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
) -> QuerySet[AuditEntry]:
    """The organisation's audit entries, newest first, filtered; ``date_to`` is included."""
    entries = AuditEntry.objects.filter(organisation=organisation)
    if action:
        entries = entries.filter(action=action)
    if username:
        entries = entries.filter(username__iexact=username)
    if date_from:
        entries = entries.filter(created_at__gte=_day_start(date_from))
    if date_to:
        entries = entries.filter(created_at__lt=_day_start(date_to + datetime.timedelta(days=1)))
    return entries.order_by("-created_at", "-id")
