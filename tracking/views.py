"""The SNS webhook: SES events arrive here, are verified, deduplicated, stored and acted on.

Every refusal is a 4xx with a plain-text reason and stores nothing; see ``tracking.sns`` for the
checks and ``tracking.storing`` for what an event does.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.core.paginator import EmptyPage
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from django_tables2.paginators import LazyPaginator

from campaigns.models import Campaign
from common.params import id_param
from organisations import scope
from organisations.models import Organisation
from tracking import groupcommit, sns
from tracking.models import Event
from tracking.parsing import EventRefused, event_parse, without_nul
from tracking.rejections import rejection_record
from tracking.storing import events_store, unmatched_count

logger = logging.getLogger(__name__)


def _text(message: str, status: int) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def webhook_handle(*, body: bytes) -> tuple[int, str]:
    """Everything the webhook does, independent of the HTTP layer: returns (status, message).

    Shared by the Django view and the lean WSGI path (``tracking.wsgi``), so both behave alike.
    """
    try:
        envelope = sns.envelope_verify(fields=sns.envelope_parse(body=body))
        if envelope.type == sns.SUBSCRIPTION_CONFIRMATION:
            sns.subscription_confirm(topic_arn=envelope.topic_arn, subscribe_url=envelope.subscribe_url)
            return 200, "Subscription confirmed."
        if envelope.type == sns.UNSUBSCRIBE_CONFIRMATION:
            logger.warning("SNS reports the subscription to %s was removed.", envelope.topic_arn)
            return 200, "Noted."
        try:
            record = json.loads(envelope.message)
        except ValueError:
            return 400, "The SNS Message is not JSON."
        if "\\u0000" in envelope.message:
            record = without_nul(record)  # PostgreSQL cannot store NUL in JSON text
        if isinstance(record, dict) and record.get("notificationType") == "AMAZON_SES_SETUP_NOTIFICATION":
            return 200, "SES setup notification noted."  # sent once when feedback is configured
        item = (envelope.message_id, record, event_parse(record=record))
        if getattr(settings, "SNS_GROUP_COMMIT", not settings.TESTING):
            event = groupcommit.writer.submit(item)
        else:
            (event,) = events_store(items=[item])
    except groupcommit.GroupCommitUnavailable as problem:
        return 503, f"{problem} Please retry."
    except sns.SNSRefused as refusal:
        return refusal.status, str(refusal)  # logged by the caller, which knows the address
    except EventRefused as refusal:
        return 400, str(refusal)
    return 200, "Recorded." if event else "Already recorded."


def rejection_log(*, status: int, reason: str, meta: dict) -> None:
    """One line per refused webhook request (4xx), with the reason and the sender's address.

    ``meta`` is the WSGI environ (``request.META`` is one). Behind the TLS proxy the address is
    the last X-Forwarded-For entry, the one the proxy appended (earlier ones can be forged).
    """
    if not 400 <= status < 500:
        return
    address = meta.get("REMOTE_ADDR", "")
    if settings.BEHIND_TLS_PROXY:
        address = meta.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip() or address
    context = {"reason": reason, "status": status, "remote_address": address[:64]}
    logger.info("SNS webhook request refused (%s): %s", status, reason, extra=context)


def announced_too_large(content_length: str | None) -> tuple[int, str] | None:
    """Refuse an announced oversized (or nonsensical) body before reading it."""
    try:
        announced = int(content_length or 0)
    except ValueError:
        return 400, "The Content-Length header is not a number."
    if announced > settings.SNS_MAX_BODY_BYTES:
        return 413, f"The body is larger than {settings.SNS_MAX_BODY_BYTES} bytes."
    return None


@csrf_exempt
@require_POST
def ses_webhook(request: HttpRequest) -> HttpResponse:
    refusal = announced_too_large(request.META.get("CONTENT_LENGTH"))
    status, message = refusal or webhook_handle(body=request.body)
    rejection_log(status=status, reason=message, meta=request.META)
    rejection_record(status=status)  # counted for /metrics
    return _text(message, status)


def events_of(*, organisation: Organisation, unmatched: bool = False) -> QuerySet:
    """The events of the organisation's own campaigns (events follow their campaign), newest first;
    with ``unmatched``, the events matched to no campaign instead.

    A parent organisation sees its children's figures on the reports, never their events: each
    event carries an address. The organisation's campaign ids come from an index on the campaign's
    organisation, their events from event_campaign_idx; the page's campaigns are fetched apart
    (prefetch): joined in, PostgreSQL planned a scan of every campaign or every event instead.
    """
    if unmatched:
        events = Event.objects.filter(campaign__isnull=True)
    else:
        own = Campaign.objects.filter(organisation=organisation).values("id")
        events = Event.objects.filter(campaign_id__in=own)
    return events.prefetch_related("campaign").order_by("-received_at", "-id")


@require_GET
def event_list(request: HttpRequest) -> HttpResponse:
    """The stored SES events of the organisation's campaigns, newest first, filtered by campaign or
    type. Events matched to no campaign belong to no organisation: site operators see them."""
    operator = request.user.is_superuser
    campaign_id = request.GET.get("campaign", "")
    events = events_of(organisation=request.organisation, unmatched=operator and campaign_id == "none")
    if id_param(campaign_id) is not None:
        # Another organisation's campaign answers 404 (audited), like every page with its id.
        campaign = scope.get_or_404(request, Campaign, pk=id_param(campaign_id))
        events = events.filter(campaign_id=campaign.pk)
    event_type = request.GET.get("type", "")
    if event_type in Event.Type.values:
        events = events.filter(event_type=event_type)
    # Newer/older links without "of N": a COUNT(*) of millions of events on every view is not worth it.
    paginator = LazyPaginator(events, 50)
    try:
        page = paginator.page(id_param(request.GET.get("page")) or 1)
    except EmptyPage:  # past the last page (e.g. an old link after a filter change)
        page = paginator.page(1)
    context = {
        "page": page,
        "types": Event.Type.choices,
        "selected_type": event_type,
        "selected_campaign": campaign_id,
        "unmatched": unmatched_count() if operator else None,
    }
    return render(request, "tracking/event_list.html", context)
