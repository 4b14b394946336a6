"""Suppressions: is an address suppressed, and did it unsubscribe from this organisation?"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpRequest
from ninja import Field, Schema

from api.auth import Router, needs
from api.problems import Problem
from audiences import selectors
from audiences.models import Contact, Subscription, normalise_email
from organisations.models import Role

router = Router(tags=["suppressions"])


class SuppressionOut(Schema):
    email: str
    suppressed: bool = Field(description="No campaign of any organisation reaches this address.")
    reason: str | None = Field(None, description="hard_bounce, soft_bounces, complaint, manual, imported, unsubscribed")
    reason_label: str | None = None
    since: datetime | None = None
    caused_by: str | None = Field(
        None, description="Whose mail caused it: this organisation's, a child organisation's by name, or another's."
    )
    caused_by_this_organisation: bool = False
    contact: bool = Field(description="The address is a contact of this organisation.")
    contact_status: str | None = Field(None, description="active, unsubscribed, bounced or complained")
    unsubscribed: bool = Field(description="The address unsubscribed from this organisation (all its lists).")
    unsubscribed_lists: list[str] = Field(description="This organisation's lists the address left.")


@router.get(
    "/suppressions/{email}",
    response=SuppressionOut,
    summary="Whether an address is suppressed, and whether it unsubscribed from this organisation",
    url_name="suppression",
    openapi_extra=needs(Role.VIEWER),
)
def suppression(request: HttpRequest, email: str):
    """Suppression is installation-wide, but whose mail caused it is named only when it was this
    organisation's (or a child's). As on the suppression page, an entry is shown only for an
    address that is a contact of this organisation or whose suppression its own mail caused
    (any other address answers 404): which other addresses are suppressed is other organisations'
    business."""
    address = normalise_email(email)
    try:
        validate_email(address)
    except ValidationError:
        raise Problem(
            422,
            f"Fix these fields and send again: email: “{email[:100]}” is not an email address.",
            errors=[{"field": "path.email", "message": "is not an email address"}],
        ) from None
    organisation = request.organisation
    entry = selectors.suppressions_of(organisation).filter(email=address).first()
    contact = Contact.objects.filter(organisation=organisation, email=address).first()
    left = []
    if contact is not None:
        left = list(
            Subscription.objects.filter(contact=contact, status=Subscription.Status.UNSUBSCRIBED)
            .order_by("contact_list__name")
            .values_list("contact_list__name", flat=True)
        )
    if entry is None and contact is None:
        # Nothing this organisation may learn about the address (not even that it is unknown elsewhere).
        raise Problem(404, "This address is neither a contact of this organisation nor suppressed because of its mail.")
    answer = SuppressionOut(
        email=address,
        suppressed=entry is not None,
        contact=contact is not None,
        contact_status=contact.status if contact else None,
        unsubscribed=bool(contact and contact.status == Contact.Status.UNSUBSCRIBED),
        unsubscribed_lists=left,
    )
    if entry is not None:
        causes = selectors.suppression_causes(organisation=organisation)
        answer.reason, answer.reason_label, answer.since = entry.reason, entry.get_reason_display(), entry.created_at
        answer.caused_by = selectors.suppression_cause(causes, entry.organisation_id)
        answer.caused_by_this_organisation = entry.organisation_id == organisation.pk
    return answer
