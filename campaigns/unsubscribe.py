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
    from tracking.models import CampaignStats, RecipientActivity, Suppression

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
            CampaignStats.objects.filter(campaign_id=recipient.campaign_id).update(unsubscribed=F("unsubscribed") + 1)
            # The campaign report can then list who unsubscribed from this campaign's link.
            RecipientActivity.objects.bulk_create(
                [RecipientActivity(recipient=recipient, kind=RecipientActivity.Kind.UNSUBSCRIBED, occurred_at=now)],
                ignore_conflicts=True,
            )
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
