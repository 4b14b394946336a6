"""Contact, list and suppression services: every write the audience pages make goes through here."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Lower
from django.db.models.lookups import StartsWith
from django.utils import timezone

from campaigns.models import Contact, ContactList, Subscription, normalise_email
from tracking.models import Suppression

EMAIL_MAX_LENGTH = 254
# Below this many rows an exact COUNT(*) is cheap everywhere; above it PostgreSQL's planner
# estimate is used for the unfiltered total (see contacts_total).
EXACT_COUNT_LIMIT = 100_000


class AudienceError(ValueError):
    """A request the audience services refuse; the message is shown to staff as is."""


class CheckedEmail(NamedTuple):  # a tuple: built once per imported row, cheaper than a dataclass
    email: str  # normalised: lower case, domain in punycode
    rewritten: bool  # the text was "Name <address>" or "<address>", reduced to the address


# Why an address is refused, in the words shown per rejected import row and under the form field.
EMAIL_MISSING = "missing email"
EMAIL_TOO_LONG = f"email longer than {EMAIL_MAX_LENGTH} characters"
EMAIL_SEVERAL = "more than one address in the cell"
EMAIL_INVALID = "invalid email address"
EMAIL_NON_ASCII_LOCAL = "SES cannot send to addresses with non-ASCII characters before the @ (such as é or ü)"
EMAIL_NO_DOT = "no dot in the domain “{domain}”: SES only sends to internet domains, such as example.org"
EMAIL_BAD_DOMAIN = "the domain “{domain}” is not a valid internet domain"
# "Ann Smith <ann@example.org>", "<ann@example.org>", '"Smith, Ann" <ann@example.org>'.
NAMED_ADDRESS = re.compile(r"^[^<>]*<([^<>]*)>$")


def email_check(raw: str) -> CheckedEmail:
    """The address SES can send to, or ValidationError whose message says why not.

    The one check behind imports, the contact and suppression forms and import_contacts. SES
    has no SMTPUTF8, so the part before the @ must be ASCII; internationalised domains are
    converted to punycode (IDNA), which SES accepts. A domain without a dot ("localhost") is no
    internet address. Django's validate_email alone accepts both. ASCII addresses, nearly all of
    a large import, take the short path without the IDNA codec.
    """
    text = (raw or "").strip()
    if not text:
        raise ValidationError(EMAIL_MISSING, code="missing")
    if len(text) > 4 * EMAIL_MAX_LENGTH:
        raise ValidationError(EMAIL_TOO_LONG, code="too_long")
    rewritten = False
    if "<" in text or ">" in text:
        named = NAMED_ADDRESS.match(text)
        if named is None:
            raise ValidationError(EMAIL_INVALID, code="invalid")
        text, rewritten = named.group(1).strip(), True
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise ValidationError(EMAIL_INVALID, code="invalid")
    if "@" in local and any(separator in text for separator in ",; "):
        raise ValidationError(EMAIL_SEVERAL, code="several")
    if not local.isascii():
        raise ValidationError(EMAIL_NON_ASCII_LOCAL, code="non_ascii_local")
    if not domain.isascii():
        domain = _domain_ascii(domain)
    email = f"{local}@{domain}".lower()
    if len(email) > EMAIL_MAX_LENGTH:
        raise ValidationError(EMAIL_TOO_LONG, code="too_long")
    if "." not in domain.strip("."):
        raise ValidationError(EMAIL_NO_DOT.format(domain=domain[:100]), code="no_dot")
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError(EMAIL_INVALID, code="invalid") from None
    return CheckedEmail(email=email, rewritten=rewritten)


def _domain_ascii(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(EMAIL_BAD_DOMAIN.format(domain=domain[:100]), code="bad_domain") from None


def email_clean(raw: str) -> str:
    """The normalised address for a form field, or ValidationError worded as a sentence."""
    text = (raw or "").strip()
    if not text:
        raise ValidationError("Enter an email address.", code="missing")
    try:
        return email_check(text).email
    except ValidationError as error:
        shown = text[:100]
        if error.code == "invalid":
            raise ValidationError(f"“{shown}” is not a valid email address.", code=error.code) from None
        if error.code == "too_long":
            raise ValidationError(
                f"The address is longer than {EMAIL_MAX_LENGTH} characters.", code=error.code
            ) from None
        raise ValidationError(f"“{shown}” cannot be used: {error.messages[0]}.", code=error.code) from None


# --- reading ------------------------------------------------------------------------------------


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
    """Mark contacts unsubscribed and end every list subscription. Returns contacts changed."""
    ids = list(contact_ids)
    now = timezone.now()
    with transaction.atomic():
        changed = Contact.objects.filter(pk__in=ids, status=Contact.Status.ACTIVE).update(
            status=Contact.Status.UNSUBSCRIBED, updated_at=now
        )
        Subscription.objects.filter(contact_id__in=ids, status=Subscription.Status.SUBSCRIBED).update(
            status=Subscription.Status.UNSUBSCRIBED, changed_at=now
        )
    return changed


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


# --- suppression --------------------------------------------------------------------------------


def suppression_add(*, email: str, reason: str, note: str = "", user=None) -> tuple[Suppression, bool]:
    """Suppress an address (created, True) or return the existing entry (entry, False)."""
    email = email_clean(email)
    if reason not in Suppression.Reason.values:
        raise AudienceError(f"“{reason}” is not a suppression reason.")
    return Suppression.objects.get_or_create(
        email=email, defaults={"reason": reason, "note": note.strip()[:500], "created_by": user}
    )


def suppression_remove(*, suppression_id: int) -> str | None:
    """Lift a suppression. Contacts and subscriptions are left exactly as they are: an address
    that was unsubscribed or bounced stays so, and is not put back on any list."""
    entry = Suppression.objects.filter(pk=suppression_id).first()
    if entry is None:
        return None
    entry.delete()
    return entry.email


def suppressions_search(*, query: str = "", reason: str = "") -> QuerySet[Suppression]:
    entries = Suppression.objects.select_related("created_by")
    if query.strip():
        entries = entries.filter(email__startswith=normalise_email(query.strip()))
    if reason in Suppression.Reason.values:
        entries = entries.filter(reason=reason)
    return entries
