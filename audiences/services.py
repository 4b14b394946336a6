"""Audience writes: every change to contacts, lists, subscriptions, segments and the
suppression list goes through here (CSV uploads through ``audiences.imports``). Reads are in
``audiences.selectors``, address checks in ``audiences.addresses``.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from audiences.addresses import email_clean
from audiences.models import AddressHealth, Contact, ContactList, Segment, Subscription, Suppression, normalise_email
from audiences.segments import rules_filter


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
    """Create or update a contact typed by staff and add it to the chosen lists."""
    email = email_clean(email)
    if Contact.objects.filter(email=email).exclude(pk=contact.pk).exists():
        raise AudienceError(f"A contact with the address {email} already exists.")
    contact.email, contact.first_name, contact.last_name = email, first_name.strip(), last_name.strip()
    contact.attributes = attributes
    if not contact.pk:
        contact.source = contact.source or "added by staff"
    with transaction.atomic():
        contact.save()
        contacts_add_to_list(contact_ids=[contact.pk], list_id=None, list_ids=list_ids)
    return contact


def contact_delete(*, contact_id: int) -> None:
    """Delete the contact; past Recipient rows keep their email (their FK becomes NULL)."""
    Contact.objects.filter(pk=contact_id).delete()


def contacts_add_to_list(*, contact_ids: Iterable[int], list_id: int | None, list_ids: Iterable[int] = ()) -> int:
    """Subscribe contacts to lists. Contacts who unsubscribed from a list stay unsubscribed.

    Only a contact's own choice (the preference page) re-subscribes; staff adding someone back
    by a bulk action must not undo an unsubscribe. Returns the number of new subscriptions.
    """
    targets = {int(pk) for pk in list_ids}
    if list_id:
        targets.add(int(list_id))
    contact_ids = list(contact_ids)
    if not targets or not contact_ids:
        return 0
    eligible = list(
        Contact.objects.filter(pk__in=contact_ids, status=Contact.Status.ACTIVE)
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


def contacts_remove(*, contact_ids: Iterable[int]) -> int:
    _total, per_model = Contact.objects.filter(pk__in=list(contact_ids)).delete()
    return per_model.get(Contact._meta.label, 0)


def contacts_unsubscribe(*, contact_ids: Iterable[int]) -> int:
    """Staff's bulk "unsubscribe from everything". Returns contacts changed."""
    return contacts_unsubscribe_everywhere(contact_ids=contact_ids)


def contacts_unsubscribe_everywhere(*, emails: Iterable[str] = (), contact_ids: Iterable[int] = ()) -> int:
    """Unsubscribe contacts (by address, by id, or both) from every list at once.

    The one "unsubscribe from everything" behind staff's bulk action, the email's unsubscribe
    link and SES's ``unsubscribeAll``: an active contact becomes unsubscribed (a bounced or
    complained one keeps that stronger status) and every subscription ends. Unsubscribed
    subscriptions stay rows, so no later import or bulk "add to list" subscribes them again.
    Returns the number of contacts whose status changed (0: they already were unsubscribed).
    """
    contacts = _contacts_matching(emails=emails, contact_ids=contact_ids)
    if contacts is None:
        return 0
    now = timezone.now()
    with transaction.atomic():
        # Contacts before subscriptions: the order every writer takes these tables' row locks.
        changed = _contacts_status_set(contacts, Contact.Status.UNSUBSCRIBED, [Contact.Status.ACTIVE], now)
        _subscriptions_end(Subscription.objects.filter(contact__in=contacts), now)
    return changed


def contact_status_mark(*, email: str, status: str, from_statuses: list[str] | None = None) -> int:
    """Set the status of the contact with this address, if its status is one of ``from_statuses``
    (any status when None): a complaint marks every contact complained, a hard bounce does not
    overwrite "complained". Returns the number of contacts changed (0 or 1)."""
    if status not in Contact.Status.values:
        raise AudienceError(f"“{status}” is not a contact status.")
    contacts = Contact.objects.filter(email=normalise_email(email))
    return _contacts_status_set(contacts, status, from_statuses, timezone.now())


def lists_leave(*, email: str, list_names: list[str] | None) -> int:
    """Unsubscribe the address from every list (``None``) or from the lists of these names
    (SES topic opt-outs name the list). The contact's status is left as it is. Returns the
    number of subscriptions ended."""
    subscriptions = Subscription.objects.filter(contact__email=normalise_email(email))
    if list_names is not None:
        subscriptions = subscriptions.filter(contact_list__in=ContactList.objects.filter(name__in=list_names))
    return _subscriptions_end(subscriptions, timezone.now())


def _contacts_matching(*, emails: Iterable[str], contact_ids: Iterable[int]) -> QuerySet[Contact] | None:
    addresses = sorted({normalise_email(email) for email in emails})
    ids = sorted({int(pk) for pk in contact_ids})
    if not addresses and not ids:
        return None
    return Contact.objects.filter(Q(email__in=addresses) | Q(pk__in=ids))


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
    an unsubscribed contact active again; bounced and complained contacts keep their status."""
    now = timezone.now()
    with transaction.atomic():
        subscriptions = Subscription.objects.filter(contact=contact)
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
    name = name.strip()
    if not name:
        raise AudienceError("A list needs a name.")
    if ContactList.objects.filter(name__iexact=name).exclude(pk=contact_list.pk).exists():
        raise AudienceError(f"A list named “{name}” already exists.")
    contact_list.name, contact_list.description = name, description.strip()
    contact_list.save()
    return contact_list


def list_delete(*, list_id: int) -> None:
    """Delete a list and its subscriptions; the contacts themselves stay."""
    ContactList.objects.filter(pk=list_id).delete()


# --- segments -----------------------------------------------------------------------------------


def segment_save(
    *, segment: Segment, name: str, match: str, rules: list[dict], number_if_taken: bool = False
) -> Segment:
    """Create or update a segment: staff's segment form and "save as segment" on a report.

    The rules are checked by building their filter (RuleError names a rule that cannot work).
    A name another segment has is refused, or with ``number_if_taken`` made free by a number:
    "Opened: Spring news (2)".
    """
    name = name.strip()
    if not name:
        raise AudienceError("A segment needs a name.")
    if match not in Segment.Match.values:
        raise AudienceError(f"“{match}” is not a way to combine rules.")
    rules_filter(rules, match=match)
    others = Segment.objects.exclude(pk=segment.pk) if segment.pk else Segment.objects.all()
    base, number = name, 1
    while others.filter(name=name).exists():
        if not number_if_taken:
            raise AudienceError(f"A segment named “{name}” already exists.")
        number += 1
        name = f"{base} ({number})"
    segment.name, segment.match, segment.rules = name, match, rules
    segment.save()
    return segment


def segment_delete(*, segment_id: int) -> None:
    """Delete a segment; campaigns that targeted or excluded it simply lose it."""
    Segment.objects.filter(pk=segment_id).delete()


# --- suppression --------------------------------------------------------------------------------


def address_suppress(*, email: str, reason: str, note: str = "", user=None) -> tuple[Suppression, bool]:
    """Put an address on the suppression list: (entry, True), or (the existing entry, False).

    The one door for every suppression: staff's form, a hard bounce, repeated soft bounces, a
    complaint, SES's ``unsubscribeAll`` and an unsubscribe link whose contact was deleted.
    Duplicates: the first entry stands. An address already suppressed keeps its reason, note,
    date and author, whatever suppresses it again (SES notifies one bounce twice; a complaint
    after a hard bounce adds nothing a campaign could use), so running any of these twice
    changes nothing, and the page shows staff why the address was suppressed in the first place.

    The address is normalised, not validated: staff's input is checked by the form
    (``email_clean``); addresses from SES or a sent recipient are already what we sent to.
    """
    if reason not in Suppression.Reason.values:
        raise AudienceError(f"“{reason}” is not a suppression reason.")
    # get_or_create: a concurrent insert of the same address (two webhook processes) ends in
    # the unique constraint, rolled back to a savepoint, and the other writer's entry is returned.
    return Suppression.objects.get_or_create(
        email=normalise_email(email), defaults={"reason": reason, "note": note.strip()[:500], "created_by": user}
    )


def suppression_remove(*, suppression_id: int) -> str | None:
    """Lift a suppression. Contacts and subscriptions are left exactly as they are: an address
    that was unsubscribed or bounced stays so, and is not put back on any list."""
    entry = Suppression.objects.filter(pk=suppression_id).first()
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
