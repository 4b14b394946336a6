"""Reads for the report pages: figures, rates, chart series. Counters only, never a recount.

Every figure counts recipients ("recipients who bounced"), and every rate divides recipients by
recipients, so none can exceed 100%. The bounce rate set beside SES's 5% review level is hard
bounces only, as SES counts it; soft bounces are shown apart.

Scope (issue 14): a role on an organisation shows the figures of its own campaigns and of its
child organisations' campaigns at any depth (``report_campaigns``, ``report_campaign_or_404``);
never their contacts or recipients, which stay with the own organisation only
(``own_campaign_or_404``). The account-health panel is about the one SES account every
organisation sends through, so it stays installation-wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import QuerySet, Sum
from django.http import HttpRequest
from django.utils import timezone

from campaigns.models import Campaign
from organisations import scope
from organisations.models import Organisation
from stats.breakdowns import MINUTE_WINDOW, breakdown_map, breakdown_rows
from stats.models import CampaignStats


def report_organisation_ids(organisation: Organisation) -> list[int]:
    """The organisations whose campaign figures a role on ``organisation`` shows: it and its
    children at any depth."""
    return scope.descendant_ids(organisation)


def report_campaigns(organisation: Organisation, *, organisation_ids: list[int] | None = None) -> QuerySet:
    """Campaigns whose figures the organisation sees (its own and its children's), newest first.

    Filtered on ``organisation_id IN (…)``: campaign_org_kind_created_idx serves the filter and the
    order. Single messages (API) are not campaigns here.
    """
    ids = organisation_ids if organisation_ids is not None else report_organisation_ids(organisation)
    return Campaign.objects.filter(organisation_id__in=ids, kind=Campaign.Kind.CAMPAIGN).select_related("organisation")


def report_campaign_or_404(request: HttpRequest, pk: int) -> Campaign:
    """One campaign whose figures the request's organisation sees; any other answers 404, audited."""
    found = Campaign.objects.filter(pk=pk).first()
    # The own organisation's campaign (the common case) needs no walk down the tree, nor a join.
    if found is not None and found.organisation_id == request.organisation.id:
        found.organisation = request.organisation
        return found
    if found is not None and found.organisation_id in report_organisation_ids(request.organisation):
        return found
    # Outside the tree: get_or_404 (own organisation only) cannot find it either, so it answers 404
    # and writes the audit entry when the campaign exists in another organisation.
    return scope.get_or_404(request, Campaign, pk=pk)


def report_campaigns_or_404(request: HttpRequest, ids: list[int]) -> list[Campaign]:
    """The campaigns named by ``ids`` (compare), all within reach, else 404 (audited) for the first
    one out of reach."""
    found = list(report_campaigns(request.organisation).filter(pk__in=ids))
    missing = sorted(set(ids) - {campaign.pk for campaign in found})
    if missing:
        scope.get_or_404(request, Campaign, pk=missing[0])
    return found


def own_campaign_or_404(request: HttpRequest, pk: int) -> Campaign:
    """A campaign of the request's own organisation: its recipients are shown only there (a parent
    organisation sees its children's figures, never their recipients)."""
    return scope.get_or_404(request, Campaign.objects.select_related("organisation"), pk=pk)


@dataclass(frozen=True)
class Rate:
    label: str
    value: float | None
    definition: str

    @property
    def percent(self) -> str:
        return "–" if self.value is None else f"{100 * self.value:.1f}%"


@dataclass(frozen=True)
class Engagement:
    """ "Opened" (or "clicked") as every page shows it: the one definition, used everywhere.

    The headline is people: recipients with at least one open (click) not flagged as automatic
    (privacy proxies, link scanners). Beside it, labelled, the raw figures: recipients with any
    open including automatic ones, and every open notification.
    """

    verb: str  # "opened" or "clicked"
    noun: str  # "opens" or "clicks"
    people: int  # the headline
    including_automatic: int
    notifications: int

    @property
    def caption(self) -> str:
        """What stands beside the headline, e.g. "198 opened · 237 incl. automatic opens"."""
        return f"{self.people:,} {self.verb} · {self.including_automatic:,} incl. automatic {self.noun}"

    @property
    def explanation(self) -> str:
        return (
            f"People who {self.verb} at least once. Automatic {self.noun} (mail privacy proxies and link"
            f" scanners) are left out of the headline; {self.notifications:,} {self.noun} were recorded in all."
        )


def opened(stats: CampaignStats) -> Engagement:
    """ "Opened": recipients with a human open (see Engagement)."""
    return Engagement("opened", "opens", stats.unique_human_opens, stats.unique_opens, stats.opens)


def clicked(stats: CampaignStats) -> Engagement:
    """ "Clicked": recipients with a human click (see Engagement)."""
    return Engagement("clicked", "clicks", stats.unique_human_clicks, stats.unique_clicks, stats.clicks)


def _ratio(part: int, whole: int) -> float | None:
    # Capped at 1: SNS does not order events, so a recipient's complaint or open can be counted a
    # moment before their delivery is (the part briefly outgrows the whole it belongs to).
    return min(part / whole, 1.0) if whole else None


def campaign_stats(campaign: Campaign) -> CampaignStats:
    return CampaignStats.objects.filter(campaign=campaign).first() or CampaignStats(campaign=campaign)


def headline(campaign: Campaign) -> dict:
    stats = campaign_stats(campaign)
    total = stats.recipients  # recorded when the audience was frozen (0 before)
    left_out = sum((campaign.left_out or {}).values())
    figures = {
        "recipients": total,
        "left_out": left_out,
        "sent": stats.sent,
        "delivered": stats.delivered,
        "bounced_hard": stats.bounced_hard,
        "bounced_soft": stats.bounced_soft,
        "complained": stats.complained,
        "opens": stats.opens,
        "human_opens": stats.human_opens,
        "unique_opens": stats.unique_opens,
        "unique_human_opens": stats.unique_human_opens,
        "clicks": stats.clicks,
        "human_clicks": stats.human_clicks,
        "unique_clicks": stats.unique_clicks,
        "unique_human_clicks": stats.unique_human_clicks,
        "unique_human_engaged": stats.unique_human_engaged,
        "unsubscribed": stats.unsubscribed,
        "last_event_at": stats.last_event_at,
        "opened": opened(stats),
        "clicked": clicked(stats),
    }
    figures["rates"] = [
        Rate("Delivery rate", _ratio(stats.delivered, stats.sent), "Recipients delivered ÷ recipients sent to SES."),
        Rate(
            "Bounce rate (hard)",
            _ratio(stats.bounced_hard, stats.sent),
            "Recipients whose address bounced permanently ÷ sent. SES's bounce rate: it reviews accounts at 5%.",
        ),
        Rate(
            "Soft bounce rate",
            _ratio(stats.bounced_soft, stats.sent),
            "Recipients with a temporary bounce (mailbox full, server busy) ÷ sent. Not part of SES's bounce rate.",
        ),
        Rate(
            "Complaint rate",
            _ratio(stats.complained, stats.delivered),
            "Recipients who marked it as spam ÷ delivered. SES reviews at 0.1%.",
        ),
        Rate(
            "Open rate (human)",
            _ratio(stats.unique_human_opens, stats.delivered),
            "Recipients with at least one open not flagged as automatic ÷ delivered.",
        ),
        Rate("Open rate (all)", _ratio(stats.unique_opens, stats.delivered), "Recipients with any open ÷ delivered."),
        Rate(
            "Click rate (human)",
            _ratio(stats.unique_human_clicks, stats.delivered),
            "Recipients with at least one click not flagged as automatic ÷ delivered.",
        ),
        Rate(
            "Click-to-open rate",
            _ratio(stats.unique_human_clicks, stats.unique_human_engaged),
            "Recipients who clicked ÷ recipients who opened or clicked (a click with images off shows it was read);"
            " human opens and clicks.",
        ),
        Rate(
            "Unsubscribe rate", _ratio(stats.unsubscribed, stats.delivered), "Recipients who unsubscribed ÷ delivered."
        ),
    ]
    return figures


@dataclass(frozen=True)
class TimeStep:
    size: timedelta
    label: str  # "Opens and clicks per …"
    time_format: str  # for the axis, in the site's time zone
    source: str  # the breakdown counted at this resolution: "minute" or "hour"


# The chart's step, by the campaign's age: up to this age, this step (about 10 to 72 points).
TIME_STEPS = (
    (timedelta(minutes=45), TimeStep(timedelta(minutes=1), "minute", "%H:%M", "minute")),
    (timedelta(hours=2), TimeStep(timedelta(minutes=5), "5 minutes", "%H:%M", "minute")),
    (MINUTE_WINDOW, TimeStep(timedelta(minutes=15), "15 minutes", "%d %b %H:%M", "minute")),
    (timedelta(days=3), TimeStep(timedelta(hours=1), "hour", "%d %b %H:00", "hour")),
)
DAILY = TimeStep(timedelta(days=1), "day", "%d %b", "hour")
# Drawn in this order: the "all" lines (dashed, reports.charts) under the human ones.
SERIES_NAMES = {
    "open": "Opens (all)",
    "click": "Clicks (all)",
    "human_open": "Opens (human)",
    "human_click": "Clicks (human)",
}


def time_step(age: timedelta) -> TimeStep:
    """Minutes in a campaign's first hours, then hours, then days."""
    return next((step for limit, step in TIME_STEPS if age <= limit), DAILY)


def activity_series(campaign: Campaign) -> tuple[list[datetime], dict[str, list[int]], TimeStep]:
    """Opens and clicks over time, at the step that suits the campaign's age (``time_step``).

    Young campaigns are drawn from their start to now (time passing without opens shows too);
    older ones up to their last counted activity.
    """
    now = timezone.now()
    kinds = [f"{source}:{name}" for source in ("minute", "hour") for name in SERIES_NAMES]
    data = breakdown_map(campaign_id=campaign.pk, kinds=kinds)
    hours = sorted({key for name in SERIES_NAMES for key in data[f"hour:{name}"]})
    if not hours:
        return [], {}, time_step(now - (campaign.started_at or now))
    began = campaign.started_at or _parse_key(hours[0])
    step = time_step(now - began)
    if step.source == "minute" and campaign.started_at is None:  # minutes are counted from the start
        step = TIME_STEPS[-1][1]
    last = _parse_key(hours[-1]) + timedelta(hours=1) - timedelta(seconds=1)
    end = now if step.size < timedelta(days=1) else min(now, last)
    keys = sorted({key for name in SERIES_NAMES for key in data[f"{step.source}:{name}"]}) or hours
    first = _floor(min(began, _parse_key(keys[0])), step)
    # round(): a day across a daylight-saving change is 23 or 25 hours long.
    count = round((_floor(max(end, first), step) - first) / step.size) + 1
    buckets = [first + step.size * i for i in range(count)]
    series = {}
    for name, label in SERIES_NAMES.items():
        values = [0] * count
        for key, amount in data[f"{step.source}:{name}"].items():
            index = round((_floor(_parse_key(key), step) - first) / step.size)
            values[min(max(index, 0), count - 1)] += amount
        series[label] = values
    return buckets, series, step


def _floor(moment: datetime, step: TimeStep) -> datetime:
    if step.size >= timedelta(days=1):  # whole days in the site's time zone
        return timezone.localtime(moment).replace(hour=0, minute=0, second=0, microsecond=0)
    seconds = step.size.total_seconds()
    return datetime.fromtimestamp(moment.timestamp() // seconds * seconds, tz=UTC)


def _parse_key(key: str) -> datetime:
    """A breakdown time key ("2026-11-27T14" or "2026-11-27T14:05", UTC)."""
    return datetime.strptime(key, "%Y-%m-%dT%H:%M" if ":" in key else "%Y-%m-%dT%H").replace(tzinfo=UTC)


def funnel(campaign: Campaign, figures: dict) -> list[tuple[str, int]]:
    return [
        ("Recipients", figures["recipients"]),
        ("Sent", figures["sent"]),
        ("Delivered", figures["delivered"]),
        ("Opened", figures["opened"].people),
        ("Clicked", figures["clicked"].people),
    ]


def domain_table(campaign: Campaign, *, limit: int = 10) -> list[dict]:
    data = breakdown_map(campaign_id=campaign.pk, kinds=["domain:recipients", "domain:delivered", "domain:bounced"])
    rows = []
    for domain, recipients in sorted(data["domain:recipients"].items(), key=lambda item: (-item[1], item[0]))[:limit]:
        delivered = data["domain:delivered"].get(domain, 0)
        bounced = data["domain:bounced"].get(domain, 0)
        rows.append(
            {
                "domain": domain,
                "recipients": recipients,
                "delivered": delivered,
                "bounced": bounced,
                "delivery_rate": Rate("", _ratio(delivered, recipients), "").percent,
                "bounce_rate": Rate("", _ratio(bounced, recipients), "").percent,
            }
        )
    return rows


SYSTEM_LINK_LABELS = {
    "system:unsubscribe": "Unsubscribe links",
    "system:preferences": "Preferences links",
    "system:view_online": "View-online links",
}


def top_links(campaign: Campaign, *, limit: int = 10) -> list[tuple[str, int]]:
    """Human clicks per link; the personal system links are one row each (stats.breakdowns)."""
    rows = breakdown_rows(campaign_id=campaign.pk, kind="link:human_click", limit=limit)
    return [(SYSTEM_LINK_LABELS.get(key, key), count) for key, count in rows]


def bounce_reasons(campaign: Campaign, *, limit: int = 10) -> list[tuple[str, int]]:
    return breakdown_rows(campaign_id=campaign.pk, kind="bounce:reason", limit=limit)


def refresh_interval(campaign: Campaign, figures: dict) -> int | None:
    """Seconds until the next live refresh, slower as activity falls; None = stop polling.

    Live while sending and for 48 hours after the last send, then only while events still come.
    """
    now = timezone.now()
    if campaign.status in {Campaign.Status.SENDING, Campaign.Status.SCHEDULED}:
        return 3
    if campaign.status == Campaign.Status.DRAFT:
        return None
    last_event = figures.get("last_event_at")
    finished = campaign.finished_at or campaign.updated_at
    quiet = now - (last_event or finished)
    if now - finished > timedelta(hours=48) and quiet > timedelta(hours=1):
        return None
    if quiet < timedelta(minutes=5):
        return 5
    if quiet < timedelta(hours=1):
        return 15
    return 60


def account_health(*, days: int = 7) -> dict:
    since = timezone.now() - timedelta(days=days)
    totals = CampaignStats.objects.filter(campaign__started_at__gte=since).aggregate(
        sent=Sum("sent"),
        delivered=Sum("delivered"),
        hard=Sum("bounced_hard"),
        soft=Sum("bounced_soft"),
        complained=Sum("complained"),
    )
    sent = totals["sent"] or 0
    delivered = totals["delivered"] or 0
    # SES's bounce rate counts hard bounces only: that is the one compared with its 5% review level.
    bounce_rate = _ratio(totals["hard"] or 0, sent)
    complaint_rate = _ratio(totals["complained"] or 0, delivered)
    return {
        "days": days,
        "sent": sent,
        "bounce_rate": Rate(
            "Bounce rate (hard)",
            bounce_rate,
            "Recipients whose address bounced permanently ÷ sent. SES reviews at 5%, may pause at 10%.",
        ),
        "soft_bounce_rate": Rate(
            "Soft bounce rate", _ratio(totals["soft"] or 0, sent), "Temporary bounces ÷ sent; not in SES's bounce rate."
        ),
        "complaint_rate": Rate(
            "Complaint rate",
            complaint_rate,
            "Recipients who complained ÷ delivered. SES reviews at 0.1%, may pause at 0.5%.",
        ),
        "bounce_warning": (bounce_rate or 0) >= 0.05,
        "complaint_warning": (complaint_rate or 0) >= 0.001,
    }
