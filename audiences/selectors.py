"""Audience reads: the contacts, lists and suppression pages' queries."""

from __future__ import annotations

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Lower
from django.db.models.lookups import StartsWith

from audiences.models import Contact, ContactList, Subscription, Suppression, normalise_email

# Below this many rows an exact COUNT(*) is cheap everywhere; above it PostgreSQL's planner
# estimate is used for the unfiltered total (see contacts_total).
EXACT_COUNT_LIMIT = 100_000


def subscribed_to_lists(list_ids: list[int]) -> Exists:
    """Over Contact: subscribed (and not unsubscribed) to at least one of these lists."""
    return Exists(
        Subscription.objects.filter(
            contact=OuterRef("pk"), contact_list_id__in=list_ids, status=Subscription.Status.SUBSCRIBED
        )
    )


def address_suppressed() -> Exists:
    """Over Contact: the address is on the suppression list, so no campaign may reach it."""
    return Exists(Suppression.objects.filter(email=OuterRef("email")))


def contacts_search(*, query: str = "", list_id: int | None = None, status: str = "") -> QuerySet[Contact]:
    """Contacts matching the contacts page's search box and filters.

    The search is a prefix search (email, first name, last name, or "first last"): prefix
    matches use the pattern-ops indexes created by migration 0003 on PostgreSQL, whereas a
    substring search would scan a million rows on every keystroke.
    """
    contacts = Contact.objects.all()
    words = query.strip().lower().split()
    if len(words) == 1:
        word = words[0]
        if "@" in word:
            contacts = contacts.filter(email__startswith=normalise_email(word))
        else:
            contacts = contacts.filter(
                Q(email__startswith=word)
                | Q(StartsWith(Lower("first_name"), word))
                | Q(StartsWith(Lower("last_name"), word))
            )
    elif len(words) > 1:
        contacts = contacts.filter(
            StartsWith(Lower("first_name"), words[0]), StartsWith(Lower("last_name"), " ".join(words[1:]))
        )
    if list_id:
        contacts = contacts.filter(
            pk__in=Subscription.objects.filter(contact_list_id=list_id, status=Subscription.Status.SUBSCRIBED).values(
                "contact_id"
            )
        )
    if status in Contact.Status.values:
        contacts = contacts.filter(status=status)
    return contacts


def contacts_total() -> tuple[int, bool]:
    """(number of contacts, is_estimate). Exact when small; the planner's estimate when large.

    COUNT(*) on PostgreSQL reads the whole table (or index) every time: about a second at a
    million rows. pg_class.reltuples is kept fresh by autovacuum/ANALYZE and is free to read.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [Contact._meta.db_table])
            row = cursor.fetchone()
        estimate = int(row[0]) if row else -1
        if estimate > EXACT_COUNT_LIMIT:
            return estimate, True
    return Contact.objects.count(), False


def lists_with_counts() -> QuerySet[ContactList]:
    return ContactList.objects.annotate(
        subscribed_count=Count("subscriptions", filter=Q(subscriptions__status=Subscription.Status.SUBSCRIBED)),
        unsubscribed_count=Count("subscriptions", filter=Q(subscriptions__status=Subscription.Status.UNSUBSCRIBED)),
    )


def list_subscription_counts(*, list_id: int) -> dict[str, int]:
    """{subscription status: number of contacts} on one list."""
    return dict(
        Subscription.objects.filter(contact_list_id=list_id)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )


def suppressions_search(*, query: str = "", reason: str = "") -> QuerySet[Suppression]:
    entries = Suppression.objects.select_related("created_by")
    if query.strip():
        entries = entries.filter(email__startswith=normalise_email(query.strip()))
    if reason in Suppression.Reason.values:
        entries = entries.filter(reason=reason)
    return entries
