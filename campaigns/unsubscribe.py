"""Unsubscribe and preferences: the recipient's own choices, reached through signed links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns.models import Contact, Recipient, Subscription
from campaigns.tokens import LinkExpired, LinkPurpose, link_token, link_token_read


@dataclass(frozen=True)
class RecipientLink:
    """What a public link opens: a recipient, or why not (``problem``: "invalid" or "expired")."""

    recipient: Recipient | None
    problem: str = ""
    legacy: bool = False  # a token of the old single-token scheme (campaigns/tokens.py)


def recipient_for_link(token: str, *, purpose: LinkPurpose) -> RecipientLink:
    """The recipient a ``purpose`` link was made for; a token of another purpose opens nothing."""
    try:
        read = link_token_read(token, purpose=purpose)
    except LinkExpired:
        return RecipientLink(None, problem="expired")
    if read is None:
        return RecipientLink(None, problem="invalid")
    recipient = Recipient.objects.select_related("contact", "campaign").filter(pk=read.recipient_id).first()
    if recipient is None:
        return RecipientLink(None, problem="invalid")
    if read.legacy and purpose is LinkPurpose.UNSUBSCRIBE and _legacy_unsubscribe_expired(recipient):
        return RecipientLink(None, problem="expired")
    return RecipientLink(recipient, legacy=read.legacy)


def _legacy_unsubscribe_expired(recipient: Recipient) -> bool:
    # Old tokens carry no date: the recipient's sending time stands in for it, so they expire as new ones do.
    limit = timezone.now() - timedelta(days=settings.UNSUBSCRIBE_TOKEN_DAYS)
    return recipient.sent_at is not None and recipient.sent_at < limit


def preferences_token_for(recipient: Recipient) -> str:
    """A fresh preference-page token, for the unsubscribe pages' "choose your lists" link."""
    return link_token(recipient_id=recipient.pk, purpose=LinkPurpose.PREFERENCES)


def masked_email(address: str) -> str:
    """``j•••@example.org``: enough to recognise one's own address, not to learn someone else's."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "•••"
    return f"{local[:1]}•••@{domain}"


def unsubscribe_recipient(*, recipient: Recipient) -> bool:
    """Unsubscribe the contact from every list at once. Returns False if it already was."""
    from tracking.models import Suppression
    from tracking.services import unsubscribe_recorded

    # The contact may have been deleted (and perhaps re-imported) since the email was sent.
    contact = recipient.contact or Contact.objects.filter(email=recipient.email).first()
    now = timezone.now()
    with transaction.atomic():
        if contact is None:
            # Nobody to mark: suppress the address, so that a later import cannot mail it again.
            _, created = Suppression.objects.get_or_create(
                email=recipient.email,
                defaults={"reason": Suppression.Reason.UNSUBSCRIBED, "note": "unsubscribe link, contact deleted"},
            )
            return created
        changed = Contact.objects.filter(pk=contact.pk, status=Contact.Status.ACTIVE).update(
            status=Contact.Status.UNSUBSCRIBED, updated_at=now
        )
        Subscription.objects.filter(contact=contact, status=Subscription.Status.SUBSCRIBED).update(
            status=Subscription.Status.UNSUBSCRIBED, changed_at=now
        )
        if changed:
            # Counted once per recipient (their marker also lists them in the campaign report), however
            # often they resubscribe and leave again.
            unsubscribe_recorded(recipient_id=recipient.pk, campaign_id=recipient.campaign_id, occurred_at=now)
    return bool(changed)


def preferences_save(*, contact: Contact, list_ids: set[int]) -> None:
    """Subscribe to exactly the chosen lists (among those the contact was ever on)."""
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
