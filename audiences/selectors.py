"""Audience reads: the contacts, lists, segments, imports and suppression pages' queries.

Every read takes the organisation and is scoped by it (an index starting with the organisation
serves each): the same address may be a contact of several organisations, and one club never
sees another's people.
"""

from __future__ import annotations

import json

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Lower
from django.db.models.lookups import StartsWith

from audiences.models import Contact, ContactList, ImportJob, Segment, Subscription, Suppression, normalise_email
from organisations.models import Organisation
from organisations.scope import descendant_ids

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


def contacts_of(organisation: Organisation) -> QuerySet[Contact]:
    return Contact.objects.filter(organisation=organisation)


def contacts_search(
    *, organisation: Organisation, query: str = "", list_id: int | None = None, status: str = ""
) -> QuerySet[Contact]:
    """The organisation's contacts matching the contacts page's search box and filters.

    The search is a prefix search (email, first name, last name, or "first last"): prefix
    matches use the organisation-leading pattern-ops indexes (audiences migration 0003) on
    PostgreSQL, whereas a substring search would scan a million rows on every keystroke.
    """
    contacts = contacts_of(organisation)
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
            pk__in=Subscription.objects.filter(
                contact_list_id=list_id,
                contact_list__organisation=organisation,
                status=Subscription.Status.SUBSCRIBED,
            ).values("contact_id")
        )
    if status in Contact.Status.values:
        contacts = contacts.filter(status=status)
    return contacts


def contacts_total(*, organisation: Organisation) -> tuple[int, bool]:
    """(number of the organisation's contacts, is_estimate). Exact when small; estimated when large.

    COUNT(*) reads every row (or index entry) it counts: about a second at a million. The count
    stops at EXACT_COUNT_LIMIT (an index-only scan of (organisation, status, id)); past it, on
    PostgreSQL, the planner's estimate for the organisation (its statistics of organisation_id,
    kept fresh by autovacuum/ANALYZE) stands in, free to read.
    """
    contacts = contacts_of(organisation)
    counted = contacts.order_by()[: EXACT_COUNT_LIMIT + 1].count()
    if counted <= EXACT_COUNT_LIMIT or connection.vendor != "postgresql":
        return (counted, False) if counted <= EXACT_COUNT_LIMIT else (contacts.count(), False)
    sql, params = contacts.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return max(int(plan[0]["Plan"]["Plan Rows"]), counted), True


def lists_of(organisation: Organisation) -> QuerySet[ContactList]:
    return ContactList.objects.filter(organisation=organisation)


def lists_with_counts(*, organisation: Organisation) -> QuerySet[ContactList]:
    return lists_of(organisation).annotate(
        subscribed_count=Count("subscriptions", filter=Q(subscriptions__status=Subscription.Status.SUBSCRIBED)),
        unsubscribed_count=Count("subscriptions", filter=Q(subscriptions__status=Subscription.Status.UNSUBSCRIBED)),
    )


def list_subscription_counts(*, organisation: Organisation, list_id: int) -> dict[str, int]:
    """{subscription status: number of contacts} on one of the organisation's lists."""
    return dict(
        Subscription.objects.filter(contact_list_id=list_id, contact_list__organisation=organisation)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )


def segments_of(organisation: Organisation) -> QuerySet[Segment]:
    return Segment.objects.filter(organisation=organisation)


def imports_of(organisation: Organisation) -> QuerySet[ImportJob]:
    return ImportJob.objects.filter(organisation=organisation).select_related("contact_list")


def suppressions_of(organisation: Organisation) -> QuerySet[Suppression]:
    """Suppressions the organisation may see: of addresses that are its contacts, or caused by its mail.

    Suppression is installation-wide (about the address, not the club), but which addresses are
    suppressed is other clubs' business: an address none of the organisation's contacts has, and
    no mail of its own suppressed, is not shown. An installation with one organisation has no
    other club to hide: it sees every entry, as before organisations.
    """
    if not Organisation.objects.exclude(pk=organisation.pk).exists():
        return Suppression.objects.all()
    is_contact = Exists(Contact.objects.filter(organisation=organisation, email=OuterRef("email")))
    return Suppression.objects.filter(Q(is_contact) | Q(organisation=organisation))


def suppression_liftable(*, organisation: Organisation, entry: Suppression, user) -> bool:
    """Lifting a suppression lets every organisation's mail reach the address again: an
    organisation may lift only what its own mail (or a child organisation's) caused; an entry
    caused by another organisation's mail, or by no campaign, takes a site operator. With one
    organisation there is nobody else to protect."""
    if user.is_superuser or not Organisation.objects.exclude(pk=organisation.pk).exists():
        return True
    return entry.organisation_id is not None and entry.organisation_id in descendant_ids(organisation)


def suppressions_search(*, organisation: Organisation, query: str = "", reason: str = "") -> QuerySet[Suppression]:
    entries = suppressions_of(organisation).select_related("created_by")
    if query.strip():
        entries = entries.filter(email__startswith=normalise_email(query.strip()))
    if reason in Suppression.Reason.values:
        entries = entries.filter(reason=reason)
    return entries


OWN_MAIL = "your organisation’s campaign"
OTHER_MAIL = "another organisation’s mail"
NO_MAIL = "no campaign (added by hand or before organisations)"


def suppression_causes(*, organisation: Organisation) -> dict[int | None, str]:
    """{organisation id: how the suppression page names whose mail caused an entry}.

    The organisation itself and its children at any depth are named; any other organisation is
    "another organisation's mail" (other clubs are not revealed). Look an entry up with
    ``suppression_cause``.
    """
    below = [org_id for org_id in descendant_ids(organisation) if org_id != organisation.id]
    names = dict(Organisation.objects.filter(pk__in=below).values_list("pk", "name"))
    return {None: NO_MAIL, organisation.id: OWN_MAIL, **names}


def suppression_cause(causes: dict[int | None, str], organisation_id: int | None) -> str:
    return causes.get(organisation_id, OTHER_MAIL)
