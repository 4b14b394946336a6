"""Reads of the organisation pages, each scoped by the organisation it is given."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils import timezone

from organisations.models import AuditEntry, Membership, Organisation
from stats.counters import usage_day
from stats.models import OrganisationDay


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


# --- usage: messages per organisation, from the daily counters (stats.models.OrganisationDay) ----

ALL_MESSAGES = F("sent") + F("test_sent")  # what SES accepted: campaigns, single messages, tests


def month_start(day: datetime.date, months: int = 0) -> datetime.date:
    """The first day of ``day``'s month, moved by ``months`` (-1: the month before)."""
    index = day.year * 12 + day.month - 1 + months
    return datetime.date(index // 12, index % 12 + 1, 1)


@dataclass
class UsageNode:
    """An organisation on the Usage page: its own figures and, beside them, its subtree's."""

    organisation: Organisation
    depth: int
    parent: Organisation | None
    children: list[UsageNode]
    own: dict[str, int]
    with_children: dict[str, int]


def usage_tree(organisation: Organisation, *, everyone: bool) -> list[UsageNode]:
    """The organisations the Usage page covers, each followed by its children (depth first):
    ``organisation`` and every organisation below it, or (site operators) every organisation.

    One query, whatever the depth: the tree is walked in memory.
    """
    rows = list(Organisation.objects.order_by("name", "id"))
    by_id = {row.pk: row for row in rows}
    by_parent: dict[int | None, list[Organisation]] = {}
    for row in rows:
        by_parent.setdefault(row.parent_id, []).append(row)
    roots = by_parent.get(None, []) if everyone else [by_id[organisation.pk]]
    found: list[UsageNode] = []
    seen: set[int] = set()  # a parent loop (made by hand in the database) must not loop here

    def walk(row: Organisation, depth: int) -> UsageNode:
        seen.add(row.pk)
        node = UsageNode(row, depth, by_id.get(row.parent_id), [], {}, {})
        found.append(node)
        node.children = [walk(child, depth + 1) for child in by_parent.get(row.pk, []) if child.pk not in seen]
        return node

    for root in roots:
        walk(root, 0)
    return found


def _totals(nodes: list[UsageNode], own: dict[int, dict[str, int]], names: tuple[str, ...]) -> None:
    """Set each node's own figures and its subtree's (children are after their parent: sum backwards)."""
    for node in reversed(nodes):
        node.own = {name: own.get(node.organisation.pk, {}).get(name) or 0 for name in names}
        node.with_children = dict(node.own)
        for child in node.children:
            for name in names:
                node.with_children[name] += child.with_children[name]


def _scoped(queryset: QuerySet, nodes: list[UsageNode], everyone: bool) -> QuerySet:
    return queryset if everyone else queryset.filter(organisation_id__in=[node.organisation.pk for node in nodes])


def usage_summary(nodes: list[UsageNode], *, everyone: bool, today: datetime.date | None = None) -> None:
    """Messages today, this month and last month for each node and its subtree (one query)."""
    today = today or usage_day()
    this_month, last_month = month_start(today), month_start(today, -1)
    figures = (
        _scoped(OrganisationDay.objects.filter(day__gte=last_month, day__lte=today), nodes, everyone)
        .values("organisation_id")
        .annotate(
            today=Sum(ALL_MESSAGES, filter=Q(day=today)),
            this_month=Sum(ALL_MESSAGES, filter=Q(day__gte=this_month)),
            last_month=Sum(ALL_MESSAGES, filter=Q(day__lt=this_month)),
        )
        .order_by()
    )
    own = {row.pop("organisation_id"): row for row in figures}
    _totals(nodes, own, ("today", "this_month", "last_month"))


def usage_month(nodes: list[UsageNode], *, everyone: bool, month: datetime.date) -> None:
    """Each node's messages sent and test messages in ``month``, and its subtree's total (one query)."""
    figures = (
        _scoped(OrganisationDay.objects.filter(day__gte=month, day__lt=month_start(month, 1)), nodes, everyone)
        .values("organisation_id")
        # Not named after the columns: an annotation "sent" would stand for the column in ALL_MESSAGES.
        .annotate(messages=Sum("sent"), tests=Sum("test_sent"), total=Sum(ALL_MESSAGES))
        .order_by()
    )
    own = {row.pop("organisation_id"): row for row in figures}
    _totals(nodes, own, ("messages", "tests", "total"))


@dataclass(frozen=True)
class UsageDay:
    day: datetime.date
    sent: int
    test_sent: int
    with_children: int  # every message of the organisation and those below it, tests included


def usage_days(node: UsageNode, month: datetime.date, *, today: datetime.date | None = None) -> list[UsageDay]:
    """The organisation's figures for each day of ``month`` (to today, in the current month), one query."""
    today = today or usage_day()
    subtree, frontier = [], [node]
    while frontier:
        subtree += [item.organisation.pk for item in frontier]
        frontier = [child for item in frontier for child in item.children]
    own = Q(organisation_id=node.organisation.pk)
    figures = {
        row["day"]: row
        for row in OrganisationDay.objects.filter(
            organisation_id__in=subtree, day__gte=month, day__lt=month_start(month, 1)
        )
        .values("day")
        .annotate(messages=Sum("sent", filter=own), tests=Sum("test_sent", filter=own), total=Sum(ALL_MESSAGES))
        .order_by()
    }
    last = min(month_start(month, 1) - datetime.timedelta(days=1), today)
    days = [month + datetime.timedelta(days=offset) for offset in range((last - month).days + 1)]
    return [
        UsageDay(
            day,
            figures.get(day, {}).get("messages") or 0,
            figures.get(day, {}).get("tests") or 0,
            figures.get(day, {}).get("total") or 0,
        )
        for day in days
    ]
