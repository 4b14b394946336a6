"""Single messages: one message to one address from a saved template, and the templates to choose from.

``POST /messages`` needs an ``Idempotency-Key`` header: the same key within 24 hours answers the
first call's answer again and sends nothing more (a retried request after a timeout never sends
twice); the same key with a different body is refused. The message is a campaign of one recipient
(``campaigns.services.message_send``), so it takes the campaigns' path (suppression list and
opt-outs, the engine's claims and the one rate limiter, tracking and the events feed), ahead of bulk
work: the engine's express lane hands it to SES within a second or two even while every worker is
sending a large campaign.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, Header, Schema, Status

from api.auth import Router, needs
from api.models import IdempotentRequest
from api.problems import Problem
from audiences.addresses import email_check
from audiences.imports.rows import ATTRIBUTE_MAX, NAME_MAX
from campaigns import selectors, services
from campaigns.models import Campaign, Recipient
from campaigns.quotas import quota_room
from organisations.models import Role
from organisations.scope import get_or_404
from organisations.senders import sender_allowed, sender_refusal, shared_addresses

router = Router(tags=["messages"])

IDEMPOTENCY_HOURS = 24
KEY_MAX = IdempotentRequest._meta.get_field("key").max_length
CONTEXT_KEY_MAX = 100
_MESSAGES = Campaign.objects.filter(kind=Campaign.Kind.MESSAGE)


class TemplateOut(Schema):
    id: int
    name: str
    subject: str = Field(description="The template's subject line, before its merge fields are filled in.")
    created_at: datetime


class MessageIn(Schema):
    template: int = Field(description="The id of one of the organisation's saved templates (GET /templates).")
    to: str = Field(max_length=1000, description="The address to send to.")
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="The message's merge fields: `first_name` and `last_name` fill {{ first_name }} and "
        "{{ last_name }}; every other key is {{ attributes.<key> }} in the template.",
    )
    from_email: str | None = Field(
        None,
        description="One of the installation's shared sender addresses (GET /me), the first by default, "
        "or one the organisation verified (Organisation → Senders: an address, or any address at a domain).",
    )
    reply_to: str | None = Field(None, max_length=254)


class MessageEvents(Schema):
    delivered: bool
    bounced: bool
    complained: bool
    opened: bool
    clicked: bool
    unsubscribed: bool


class MessageOut(Schema):
    id: int
    status: str = Field(description="queued, sending, sent (handed to SES), failed or skipped.")
    to: str
    template: str = Field(description="The template's name when it was sent.")
    subject: str = Field(description="The template's subject line, before its merge fields are filled in.")
    created_at: datetime
    sent_at: datetime | None
    error: str = Field(description="Why it failed or was skipped; empty otherwise.")
    events: MessageEvents = Field(description="What SES reported about it so far.")


def _out(campaign: Campaign, recipient: Recipient) -> dict:
    stats = getattr(campaign, "stats", None)

    def seen(*names: str) -> bool:
        return stats is not None and any(getattr(stats, name) for name in names)

    return {
        "id": campaign.pk,
        "status": recipient.status,
        "to": recipient.email,
        "template": campaign.name,
        "subject": campaign.subject,
        "created_at": campaign.created_at,
        "sent_at": recipient.sent_at,
        "error": recipient.error,
        "events": {
            "delivered": seen("delivered"),
            "bounced": seen("bounced_hard", "bounced_soft"),
            "complained": seen("complained"),
            "opened": seen("unique_opens"),
            "clicked": seen("unique_clicks"),
            "unsubscribed": seen("unsubscribed"),
        },
    }


@router.get(
    "/templates",
    response=list[TemplateOut],
    summary="The organisation's saved templates (for single messages)",
    url_name="templates",
    openapi_extra=needs(Role.VIEWER),
)
def templates(request: HttpRequest):
    rows = selectors.templates_of(request.organisation).order_by("name", "pk")
    return [TemplateOut(id=row.pk, name=row.name, subject=row.subject, created_at=row.created_at) for row in rows]


def _invalid(field: str, message: str) -> Problem:
    return Problem(
        422, f"Fix these fields and send again: {field}: {message}", errors=[{"field": field, "message": message}]
    )


def _checked(request: HttpRequest, body: MessageIn) -> dict:
    """The message's parts, checked; a 422 naming the field otherwise."""
    template = selectors.templates_of(request.organisation).filter(pk=body.template).first()
    if template is None:
        raise _invalid("template", f"there is no template {body.template} in this organisation (GET /templates)")
    try:
        email = email_check(body.to).email
    except ValidationError as error:
        raise _invalid("to", error.messages[0]) from None
    # The installation's shared addresses, and the key's organisation's verified senders
    # (organisations.senders: the same rule as campaigns).
    senders = shared_addresses() or [settings.DEFAULT_FROM_EMAIL]
    from_email = (body.from_email or senders[0]).strip()
    if from_email not in senders and not sender_allowed(request.organisation, from_email):
        raise _invalid("from_email", sender_refusal(request.organisation, from_email))
    reply_to = (body.reply_to or "").strip()
    if reply_to:
        try:
            reply_to = email_check(reply_to).email
        except ValidationError as error:
            raise _invalid("reply_to", error.messages[0]) from None
    context = dict(body.context)
    names = {}
    for name in ("first_name", "last_name"):
        value = context.pop(name, "")
        if not isinstance(value, str) or len(value) > NAME_MAX:
            raise _invalid(f"context.{name}", f"must be text of at most {NAME_MAX} characters")
        names[name] = value.strip()
    for name, value in context.items():
        if len(name) > CONTEXT_KEY_MAX or not name.isidentifier():
            raise _invalid("context", f"“{name[:40]}” is not a field name a template can use (letters, digits, _)")
        if len(json.dumps(value)) > ATTRIBUTE_MAX * 10:
            raise _invalid(f"context.{name}", f"longer than {ATTRIBUTE_MAX * 10} characters")
    return {
        "template": template,
        "email": email,
        "from_email": from_email,
        "reply_to": reply_to,
        "attributes": context,
        **names,
    }


def _replay(request: HttpRequest, key: str, fingerprint: str) -> HttpResponse | None:
    """The first answer under this key (within 24 h), or None if the key is free."""
    since = timezone.now() - timedelta(hours=IDEMPOTENCY_HOURS)
    earlier = IdempotentRequest.objects.filter(
        organisation=request.organisation, key=key, created_at__gte=since
    ).first()
    if earlier is None:
        return None
    if earlier.fingerprint != fingerprint:
        raise Problem(
            422,
            f"The Idempotency-Key “{key}” was used in the last {IDEMPOTENCY_HOURS} hours for a different "
            "request. Use a new key for a new message; retry a failed call with exactly the same body.",
            errors=[{"field": "Idempotency-Key", "message": "already used for a different request"}],
        )
    response = HttpResponse(json.dumps(earlier.answer), status=earlier.status, content_type="application/json")
    response["Idempotent-Replayed"] = "true"
    return response


def _check_quota(request: HttpRequest) -> None:
    """429 with Retry-After (until the quota renews) when the organisation's quota is used up."""
    room = quota_room(request.organisation.pk)
    if room is None or room.left >= 1:
        return
    wait = max(1, math.ceil((room.renews_at - timezone.now()).total_seconds()))
    raise Problem(
        429,
        f"This organisation's quota of {room.quota:,} messages {'a day' if room.period == 'today' else 'a month'} "
        f"is used up; {room.renews}. Nothing was sent: send it again after that, or ask a site operator or the "
        "parent organisation's administrators to raise the quota.",
        headers={"Retry-After": str(wait)},
    )


@router.post(
    "/messages",
    response={202: MessageOut},
    summary="Send one message to one address from a saved template",
    url_name="messages",
    openapi_extra=needs(Role.SENDER),
)
def message_send(
    request: HttpRequest,
    body: MessageIn,
    idempotency_key: str | None = Header(
        None,
        alias="Idempotency-Key",
        description="Required: a unique key per message (e.g. `entry-1234-confirmation`). The same key within "
        "24 hours returns the first answer and sends nothing more.",
    ),
):
    """Queued at once (202) and handed to SES ahead of any campaign that is sending. Suppressed
    addresses and contacts who unsubscribed from this organisation are refused (422), and everything
    while its sending is on hold for its bounce or complaint rate (409, with the figures); the message
    counts in the events feed and webhooks like a campaign's (bounce, complaint, delivery)."""
    key = (idempotency_key or "").strip()
    if not key or len(key) > KEY_MAX:
        raise Problem(
            422,
            f"Send an Idempotency-Key header of 1 to {KEY_MAX} characters, unique per message "
            "(e.g. entry-1234-confirmation): a retried call with the same key never sends twice.",
            errors=[{"field": "Idempotency-Key", "message": "required, 1 to 255 characters"}],
        )
    # The parsed body, keys sorted: a retry from another HTTP library (other spacing or key order)
    # is the same request.
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
    replayed = _replay(request, key, fingerprint)
    if replayed is not None:
        return replayed
    parts = _checked(request, body)
    _check_quota(request)
    try:
        with transaction.atomic():
            expired = timezone.now() - timedelta(hours=IDEMPOTENCY_HOURS)
            IdempotentRequest.objects.filter(
                organisation=request.organisation, key=key, created_at__lt=expired
            ).delete()
            # Taken first: a second call with the same key at the same moment waits here for this
            # transaction (PostgreSQL's unique index) and then answers with its result.
            record = IdempotentRequest.objects.create(
                organisation=request.organisation, key=key, fingerprint=fingerprint, status=202, answer={}
            )
            campaign = services.message_send(**parts)
            # As the API writes it (DjangoJSONEncoder's dates), so that a replay is the same bytes.
            answer = json.loads(json.dumps(_out(campaign, campaign.recipients.get()), cls=DjangoJSONEncoder))
            record.answer = answer
            record.save(update_fields=["answer"])
    except IntegrityError:
        replayed = _replay(request, key, fingerprint)
        if replayed is not None:
            return replayed
        raise Problem(409, "Another call with this Idempotency-Key is being handled; retry in a moment.") from None
    except services.MessageRefused as refused:
        raise _invalid(refused.field, str(refused)) from None
    except services.CampaignError as refused:  # the organisation's sending is on hold (its reputation)
        raise Problem(409, str(refused)) from None
    return Status(202, answer)


@router.get(
    "/messages/{message_id}",
    response=MessageOut,
    summary="A single message: whether it went out, and what SES reported",
    url_name="message",
    openapi_extra=needs(Role.VIEWER),
)
def message(request: HttpRequest, message_id: int):
    campaign = get_or_404(request, _MESSAGES.select_related("stats"), pk=message_id)
    return _out(campaign, campaign.recipients.get())
