"""Unsubscribe and preferences: the recipient's own choices, reached through signed links."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from campaigns.models import Contact, Recipient, Subscription
from campaigns.tokens import recipient_id_from_token


def recipient_for_token(token: str) -> Recipient | None:
    recipient_id = recipient_id_from_token(token)
    if recipient_id is None:
        return None
    return Recipient.objects.select_related("contact", "campaign").filter(pk=recipient_id).first()


def unsubscribe_recipient(*, recipient: Recipient) -> bool:
    """Unsubscribe the contact from every list at once. Returns False if it already was."""
    from tracking.models import CampaignStats

    contact = recipient.contact
    now = timezone.now()
    with transaction.atomic():
        if contact is None:
            return False
        changed = Contact.objects.filter(pk=contact.pk, status=Contact.Status.ACTIVE).update(
            status=Contact.Status.UNSUBSCRIBED, updated_at=now
        )
        Subscription.objects.filter(contact=contact, status=Subscription.Status.SUBSCRIBED).update(
            status=Subscription.Status.UNSUBSCRIBED, changed_at=now
        )
        if changed:
            CampaignStats.objects.filter(campaign_id=recipient.campaign_id).update(unsubscribed=F("unsubscribed") + 1)
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
