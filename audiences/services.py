"""Audience writes: every change to contacts, lists, subscriptions, segments and the
suppression list goes through here (CSV uploads through ``audiences.imports``). Reads are in
``audiences.selectors``, address checks in ``audiences.addresses``.

Every write is scoped by an organisation: contacts, lists and segments carry theirs (a new one
is given it by the caller), and the functions acting on several take ``organisation`` and touch
only its rows. The same address may be a contact of several organisations, each with its own
consent: unsubscribing acts on one organisation's contact. Suppression is installation-wide (it
is about the address and the SES account's reputation) and records whose mail caused it.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from audiences.addresses import email_clean
from audiences.models import AddressHealth, Contact, ContactList, Segment, Subscription, Suppression, normalise_email
from audiences.segments import rules_filter
from audiences.selectors import suppressions_of
from organisations.models import Organisation

# An organisation, or its id (tracking knows only the campaign's organisation id).
OrganisationRef = Organisation | int


def _organisation_id(organisation: OrganisationRef | None) -> int | None:
    return organisation.pk if isinstance(organisation, Organisation) else organisation


class AudienceError(ValueError):
    """A request the audience services refuse; the message is shown to staff as is."""


# --- contacts -----------------------------------------------------------------------------------


def contact_save(
    *,
    contact: Contact,
    email: str,
    first_name: str,
    last_name: str,
    attributes: dict,
    list_ids: Iterable[int] = (),
) -> Contact:
    """Create or update a contact typed by staff (in its organisation) and add it to the chosen lists."""
    if contact.organisation_id is None:
        raise AudienceError("A contact belongs to an organisation: choose one first.")
    email = email_clean(email)
    if Contact.objects.filter(organisation_id=contact.organisation_id, email=email).exclude(pk=contact.pk).exists():
        raise AudienceError(f"A contact with the address {email} already exists.")
    contact.email, contact.first_name, contact.last_name = email, first_name.strip(), last_name.strip()
    contact.attributes = attributes
    if not contact.pk:
        contact.source = contact.source or "added by staff"
    with transaction.atomic():
        contact.save()
        contacts_add_to_list(
            organisation=contact.organisation_id, contact_ids=[contact.pk], list_id=None, list_ids=list_ids
        )
    return contact


def contact_delete(*, organisation: OrganisationRef, contact_id: int) -> int:
    """Delete the organisation's contact; past Recipient rows keep their email (their FK becomes NULL)."""
    return contacts_remove(organisation=organisation, contact_ids=[contact_id])


def contacts_add_to_list(
    *, organisation: OrganisationRef, contact_ids: Iterable[int], list_id: int | None, list_ids: Iterable[int] = ()
) -> int:
    """Subscribe the organisation's contacts to its lists. Contacts who unsubscribed from a list stay unsubscribed.

    Only a contact's own choice (the preference page) re-subscribes; staff adding someone back
    by a bulk action must not undo an unsubscribe. Ids of another organisation's contacts or
    lists are ignored. Returns the number of new subscriptions.
    """
    organisation_id = _organisation_id(organisation)
    targets = {int(pk) for pk in list_ids}
    if list_id:
        targets.add(int(list_id))
    targets = set(
        ContactList.objects.filter(organisation_id=organisation_id, pk__in=targets).values_list("pk", flat=True)
    )
    contact_ids = list(contact_ids)
    if not targets or not contact_ids:
        return 0
    eligible = list(
        Contact.objects.filter(organisation_id=organisation_id, pk__in=contact_ids, status=Contact.Status.ACTIVE)
        .exclude(email__in=Suppression.objects.values("email"))
        .values_list("pk", flat=True)
    )
    # Any existing row counts: "subscribed" needs nothing, "unsubscribed" must stay so.
    existing = set(
        Subscription.objects.filter(contact_id__in=eligible, contact_list_id__in=targets).values_list(
            "contact_id", "contact_list_id"
        )
    )
    now = timezone.now()
    new = [
        Subscription(contact_id=contact_id, contact_list_id=list_id, changed_at=now)
        for contact_id in eligible
        for list_id in targets
        if (contact_id, list_id) not in existing
    ]
    Subscription.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


def contacts_remove(*, organisation: OrganisationRef, contact_ids: Iterable[int]) -> int:
    """Delete the organisation's contacts among these ids. Returns the number deleted."""
    contacts = Contact.objects.filter(organisation_id=_organisation_id(organisation), pk__in=list(contact_ids))
    _total, per_model = contacts.delete()
    return per_model.get(Contact._meta.label, 0)


def contacts_unsubscribe(*, organisation: OrganisationRef, contact_ids: Iterable[int]) -> int:
    """Staff's bulk "unsubscribe from everything". Returns contacts changed."""
    return contacts_unsubscribe_everywhere(organisation=organisation, contact_ids=contact_ids)


def contacts_unsubscribe_everywhere(
    *, organisation: OrganisationRef, emails: Iterable[str] = (), contact_ids: Iterable[int] = ()
) -> int:
    """Unsubscribe the organisation's contacts (by address, by id, or both) from all its lists at once.

    The one "unsubscribe from everything" behind staff's bulk action, the email's unsubscribe
    link and SES's ``unsubscribeAll``: an active contact becomes unsubscribed (a bounced or
    complained one keeps that stronger status) and every subscription ends. Unsubscribed
    subscriptions stay rows, so no later import or bulk "add to list" subscribes them again.
    The same address's contacts in other organisations keep their own lists and consent.
    Returns the number of contacts whose status changed (0: they already were unsubscribed).
    """
    contacts = _contacts_matching(organisation=organisation, emails=emails, contact_ids=contact_ids)
    if contacts is None:
        return 0
    now = timezone.now()
    with transaction.atomic():
        # Contacts before subscriptions: the order every writer takes these tables' row locks.
        changed = _contacts_status_set(contacts, Contact.Status.UNSUBSCRIBED, [Contact.Status.ACTIVE], now)
        _subscriptions_end(Subscription.objects.filter(contact__in=contacts), now)
    return changed


def contact_status_mark(
    *, organisation: OrganisationRef | None, email: str, status: str, from_statuses: list[str] | None = None
) -> int:
    """Set the status of the organisation's contact with this address, if its status is one of
    ``from_statuses`` (any status when None): a complaint marks the contact complained, a hard
    bounce does not overwrite "complained".

    ``organisation=None`` marks every organisation's contact of the address: for hard bounces
    and complaints, which are about the address and stay installation-wide, and for mail that
    names no organisation. Returns the number of contacts changed."""
    if status not in Contact.Status.values:
        raise AudienceError(f"“{status}” is not a contact status.")
    contacts = Contact.objects.filter(email=normalise_email(email))
    if organisation is not None:
        contacts = contacts.filter(organisation_id=_organisation_id(organisation))
    return _contacts_status_set(contacts, status, from_statuses, timezone.now())


def lists_leave(*, organisation: OrganisationRef | None, email: str, list_names: list[str] | None) -> int:
    """Unsubscribe the organisation's contact of the address from all its lists (``None``) or
    from its lists of these names (SES topic opt-outs name the list). The contact's status is
    left as it is. ``organisation=None`` (mail that names no organisation: an event matching no
    campaign) acts on every organisation's contact of the address. Returns the number of
    subscriptions ended."""
    subscriptions = Subscription.objects.filter(contact__email=normalise_email(email))
    if organisation is not None:
        subscriptions = subscriptions.filter(contact__organisation_id=_organisation_id(organisation))
    if list_names is not None:
        subscriptions = subscriptions.filter(contact_list__name__in=list_names)
    return _subscriptions_end(subscriptions, timezone.now())


def _contacts_matching(
    *, organisation: OrganisationRef, emails: Iterable[str], contact_ids: Iterable[int]
) -> QuerySet[Contact] | None:
    addresses = sorted({normalise_email(email) for email in emails})
    ids = sorted({int(pk) for pk in contact_ids})
    if not addresses and not ids:
        return None
    scoped = Contact.objects.filter(organisation_id=_organisation_id(organisation))
    return scoped.filter(Q(email__in=addresses) | Q(pk__in=ids))


def _contacts_status_set(contacts: QuerySet[Contact], status: str, from_statuses: list[str] | None, now) -> int:
    if from_statuses is not None:
        contacts = contacts.filter(status__in=from_statuses)
    return contacts.exclude(status=status).update(status=status, updated_at=now)


def _subscriptions_end(subscriptions: QuerySet[Subscription], now) -> int:
    return subscriptions.filter(status=Subscription.Status.SUBSCRIBED).update(
        status=Subscription.Status.UNSUBSCRIBED, changed_at=now
    )


def preferences_save(*, contact: Contact, list_ids: set[int]) -> None:
    """The contact's own choice on the preference page: subscribed to exactly the chosen lists
    (among those it was ever on). The only write that re-subscribes, and the only one that makes
    an unsubscribed contact active again; bounced and complained contacts keep their status.
    Only the contact's own organisation's lists are touched: another club's consent is its own."""
    now = timezone.now()
    with transaction.atomic():
        subscriptions = Subscription.objects.filter(contact=contact, contact_list__organisation=contact.organisation_id)
        subscriptions.filter(contact_list_id__in=list_ids).exclude(status=Subscription.Status.SUBSCRIBED).update(
            status=Subscription.Status.SUBSCRIBED, changed_at=now
        )
        subscriptions.exclude(contact_list_id__in=list_ids).exclude(status=Subscription.Status.UNSUBSCRIBED).update(
            status=Subscription.Status.UNSUBSCRIBED, changed_at=now
        )
        if list_ids and contact.status == Contact.Status.UNSUBSCRIBED:
            # The contact asked to hear from us again; bounced/complained stay as they are.
            Contact.objects.filter(pk=contact.pk).update(status=Contact.Status.ACTIVE, updated_at=now)


# --- lists --------------------------------------------------------------------------------------


def list_save(*, contact_list: ContactList, name: str, description: str = "") -> ContactList:
    """Create or update a list of ``contact_list.organisation``; names are unique within it."""
    name = name.strip()
    if not name:
        raise AudienceError("A list needs a name.")
    if contact_list.organisation_id is None:
        raise AudienceError("A list belongs to an organisation: choose one first.")
    others = ContactList.objects.filter(organisation_id=contact_list.organisation_id, name__iexact=name)
    if others.exclude(pk=contact_list.pk).exists():
        raise AudienceError(f"A list named “{name}” already exists.")
    contact_list.name, contact_list.description = name, description.strip()
    contact_list.save()
    return contact_list


def list_delete(*, organisation: OrganisationRef, list_id: int) -> int:
    """Delete the organisation's list and its subscriptions; the contacts themselves stay."""
    _total, per_model = ContactList.objects.filter(organisation_id=_organisation_id(organisation), pk=list_id).delete()
    return per_model.get(ContactList._meta.label, 0)


# --- segments -----------------------------------------------------------------------------------


def segment_save(
    *, segment: Segment, name: str, match: str, rules: list[dict], number_if_taken: bool = False
) -> Segment:
    """Create or update a segment of ``segment.organisation``: staff's segment form and "save as
    segment" on a report.

    The rules are checked by building their filter (RuleError names a rule that cannot work).
    A name another segment of the organisation has is refused, or with ``number_if_taken`` made
    free by a number: "Opened: Spring news (2)".
    """
    name = name.strip()
    if not name:
        raise AudienceError("A segment needs a name.")
    if match not in Segment.Match.values:
        raise AudienceError(f"“{match}” is not a way to combine rules.")
    if segment.organisation_id is None:
        raise AudienceError("A segment belongs to an organisation: choose one first.")
    rules_filter(rules, match=match, organisation=segment.organisation_id)
    others = Segment.objects.filter(organisation_id=segment.organisation_id)
    others = others.exclude(pk=segment.pk) if segment.pk else others
    base, number = name, 1
    while others.filter(name=name).exists():
        if not number_if_taken:
            raise AudienceError(f"A segment named “{name}” already exists.")
        number += 1
        name = f"{base} ({number})"
    segment.name, segment.match, segment.rules = name, match, rules
    segment.save()
    return segment


def segment_delete(*, organisation: OrganisationRef, segment_id: int) -> int:
    """Delete the organisation's segment; campaigns that targeted or excluded it simply lose it."""
    _total, per_model = Segment.objects.filter(organisation_id=_organisation_id(organisation), pk=segment_id).delete()
    return per_model.get(Segment._meta.label, 0)


# --- suppression --------------------------------------------------------------------------------


def address_suppress(
    *, email: str, reason: str, note: str = "", user=None, organisation: OrganisationRef | None = None
) -> tuple[Suppression, bool]:
    """Put an address on the suppression list: (entry, True), or (the existing entry, False).

    The one door for every suppression: staff's form, a hard bounce, repeated soft bounces, a
    complaint, SES's ``unsubscribeAll`` and an unsubscribe link whose contact was deleted.
    Duplicates: the first entry stands. An address already suppressed keeps its reason, note,
    date and author, whatever suppresses it again (SES notifies one bounce twice; a complaint
    after a hard bounce adds nothing a campaign could use), so running any of these twice
    changes nothing, and the page shows staff why the address was suppressed in the first place.

    The address is normalised, not validated: staff's input is checked by the form
    (``email_clean``); addresses from SES or a sent recipient are already what we sent to.

    Suppression is installation-wide; ``organisation`` records whose mail (or staff) caused it
    (None: unknown, e.g. an event that matched no campaign).
    """
    if reason not in Suppression.Reason.values:
        raise AudienceError(f"“{reason}” is not a suppression reason.")
    # get_or_create: a concurrent insert of the same address (two webhook processes) ends in
    # the unique constraint, rolled back to a savepoint, and the other writer's entry is returned.
    return Suppression.objects.get_or_create(
        email=normalise_email(email),
        defaults={
            "reason": reason,
            "note": note.strip()[:500],
            "created_by": user,
            "organisation_id": _organisation_id(organisation),
        },
    )


def suppression_remove(*, organisation: Organisation, suppression_id: int) -> str | None:
    """Lift a suppression the organisation may see (``selectors.suppressions_of``). Contacts and
    subscriptions are left exactly as they are: an address that was unsubscribed or bounced
    stays so, and is not put back on any list."""
    entry = suppressions_of(organisation).filter(pk=suppression_id).first()
    if entry is None:
        return None
    entry.delete()
    return entry.email


# --- address health (soft bounces in a row, across campaigns) ----------------------------------


def soft_bounce_streak_end(*, email: str) -> int:
    """A delivery ends the address's run of soft bounces."""
    return AddressHealth.objects.filter(email=email, consecutive_soft_bounces__gt=0).update(consecutive_soft_bounces=0)


def soft_bounce_count(*, email: str, ses_message_id: str) -> int | None:
    """One more soft bounce in a row, unless this message's bounce was already counted.

    Returns the new streak, or None when nothing was counted. A conditional UPDATE (the message id
    differs from the last one counted) whose row count decides: SES's second notification of the
    same bounce, in this batch or a concurrent one, is not a second bounce in a row.
    """
    AddressHealth.objects.bulk_create([AddressHealth(email=email)], ignore_conflicts=True)
    rows = AddressHealth.objects.filter(email=email)
    if ses_message_id:
        rows = rows.exclude(last_soft_bounce_message_id=ses_message_id)
    if not rows.update(
        consecutive_soft_bounces=F("consecutive_soft_bounces") + 1,
        last_soft_bounce_message_id=ses_message_id[:100],
        updated_at=timezone.now(),
    ):
        return None
    return AddressHealth.objects.filter(email=email).values_list("consecutive_soft_bounces", flat=True).first() or 0
