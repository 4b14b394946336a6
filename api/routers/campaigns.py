"""Campaigns: list, read with the report page's figures, and send or schedule (sender role).

Sending and scheduling go through ``campaigns.services``, as the campaign page's buttons do, and
are audited the same way; a move the life cycle refuses answers 409 in the service's words.
"""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import slugify
from ninja import Field, Query, Schema

from api.auth import Router, needs
from api.problems import Problem
from campaigns import selectors, services
from campaigns.models import Campaign
from organisations import audit
from organisations.models import Role
from organisations.scope import get_or_404
from reports.selectors import headline

router = Router(tags=["campaigns"])
# Single messages (``/messages``) are campaigns of one recipient: not campaigns here.
_CAMPAIGNS = Campaign.objects.filter(kind=Campaign.Kind.CAMPAIGN)


class CampaignOut(Schema):
    id: int
    name: str
    subject: str
    status: str
    status_reason: str
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    recipients: int = Field(description="Recipients frozen when sending started (0 before).")


class CampaignPage(Schema):
    items: list[CampaignOut]
    count: int
    page: int
    next_page: int | None


class Engagement(Schema):
    people: int = Field(description="Recipients with at least one open (click) not flagged as automatic.")
    including_automatic: int = Field(description="Recipients with any open (click), automatic ones included.")
    notifications: int = Field(description="Every open (click) notification recorded.")


class RateOut(Schema):
    name: str
    label: str
    value: float | None = Field(description="0 to 1; null while the divisor is 0.")
    definition: str


class Figures(Schema):
    recipients: int
    left_out: int
    sent: int
    delivered: int
    bounced_hard: int
    bounced_soft: int
    complained: int
    opened: Engagement
    clicked: Engagement
    unsubscribed: int
    last_event_at: datetime | None


class CampaignDetail(CampaignOut):
    figures: Figures
    rates: list[RateOut]


class PageQuery(Schema):
    page: int = Field(1, ge=1, le=1_000_000)
    page_size: int = Field(50, ge=1, le=200)


class ScheduleIn(Schema):
    send_at: datetime = Field(description="ISO 8601 with a zone, e.g. 2026-12-01T18:00:00+01:00.")


def _out(campaign: Campaign, recipients: int) -> dict:
    return {
        "id": campaign.pk,
        "name": campaign.name,
        "subject": campaign.subject,
        "status": campaign.status,
        "status_reason": campaign.status_reason,
        "created_at": campaign.created_at,
        "scheduled_at": campaign.scheduled_at,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
        "recipients": recipients or 0,
    }


def _detail(campaign: Campaign) -> CampaignDetail:
    """The campaign with the report page's figures: ``reports.selectors.headline``, the counters."""
    figures = headline(campaign)
    engagement = {
        name: Engagement(
            people=figures[name].people,
            including_automatic=figures[name].including_automatic,
            notifications=figures[name].notifications,
        )
        for name in ("opened", "clicked")
    }
    plain = {name: figures[name] for name in Figures.model_fields if name not in engagement}
    rates = [
        RateOut(
            name=slugify(rate.label).replace("-", "_"), label=rate.label, value=rate.value, definition=rate.definition
        )
        for rate in figures["rates"]
    ]
    return CampaignDetail(**_out(campaign, figures["recipients"]), figures=Figures(**plain, **engagement), rates=rates)


@router.get(
    "/campaigns",
    response=CampaignPage,
    summary="The organisation's campaigns, newest first",
    url_name="campaigns",
    openapi_extra=needs(Role.VIEWER),
)
def campaigns(request: HttpRequest, query: Query[PageQuery]):
    rows = selectors.campaigns_of(request.organisation).order_by("-created_at", "-pk")
    count = rows.count()
    start = (query.page - 1) * query.page_size
    items = [_out(campaign, campaign.recipient_count) for campaign in rows[start : start + query.page_size]]
    next_page = query.page + 1 if start + query.page_size < count else None
    return CampaignPage(items=items, count=count, page=query.page, next_page=next_page)


@router.get(
    "/campaigns/{campaign_id}",
    response=CampaignDetail,
    summary="One campaign with its figures and rates (as its report page shows them)",
    url_name="campaign",
    openapi_extra=needs(Role.VIEWER),
)
def campaign(request: HttpRequest, campaign_id: int):
    return _detail(get_or_404(request, _CAMPAIGNS, pk=campaign_id))


def _life_cycle(request: HttpRequest, campaign: Campaign, action, audited: tuple[str, str], detail: str = ""):
    try:
        action()
    except services.CampaignError as error:
        raise Problem(409, str(error), campaign_status=campaign.status) from None
    verb = audited[1]
    audit.record(
        request,
        audited[0],
        f"{verb} campaign “{campaign.name}”{detail} (API key {request.api_key.prefix})",
        object_type="campaign",
        object_id=campaign.pk,
    )
    campaign.refresh_from_db()
    return _detail(campaign)


@router.post(
    "/campaigns/{campaign_id}/send",
    response=CampaignDetail,
    summary="Start sending now (a draft or scheduled campaign)",
    url_name="campaign_send",
    openapi_extra=needs(Role.SENDER),
)
def campaign_send(request: HttpRequest, campaign_id: int):
    """409 with the reason when the campaign cannot start (not a draft, an empty audience, …)."""
    campaign = get_or_404(request, _CAMPAIGNS, pk=campaign_id)
    send = lambda: services.campaign_send_now(campaign_id=campaign.pk)  # noqa: E731
    return _life_cycle(request, campaign, send, (audit.Action.SEND, "Started sending"))


@router.post(
    "/campaigns/{campaign_id}/schedule",
    response=CampaignDetail,
    summary="Schedule sending at a time (ISO 8601 with a zone)",
    url_name="campaign_schedule",
    openapi_extra=needs(Role.SENDER),
)
def campaign_schedule(request: HttpRequest, campaign_id: int, payload: ScheduleIn):
    """409 with the reason when the campaign cannot be scheduled; 422 for a time without a zone."""
    campaign = get_or_404(request, _CAMPAIGNS, pk=campaign_id)
    when = payload.send_at
    if timezone.is_naive(when):
        raise Problem(
            422,
            "Fix these fields and send again: send_at: give the time zone, e.g. 2026-12-01T18:00:00+01:00 or …Z.",
            errors=[{"field": "body.payload.send_at", "message": "needs a time zone"}],
        )
    schedule = lambda: services.campaign_schedule(campaign_id=campaign.pk, when=when)  # noqa: E731
    detail = f" for {when.isoformat()}"
    return _life_cycle(request, campaign, schedule, (audit.Action.SCHEDULE, "Scheduled"), detail)
