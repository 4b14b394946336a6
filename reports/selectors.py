"""Reads for the report pages: figures, rates, chart series. Counters only, never a recount.

Every figure counts recipients ("recipients who bounced"), and every rate divides recipients by
recipients, so none can exceed 100%. The bounce rate set beside SES's 5% review level is hard
bounces only, as SES counts it; soft bounces are shown apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Sum
from django.utils import timezone

from campaigns.models import Campaign
from reports.breakdowns import breakdown_map, breakdown_rows
from tracking.models import CampaignStats

# Hourly points for the first days of a campaign, then daily.
HOURLY_DAYS = 3


@dataclass(frozen=True)
class Rate:
    label: str
    value: float | None
    definition: str

    @property
    def percent(self) -> str:
        return "–" if self.value is None else f"{100 * self.value:.1f}%"


def _ratio(part: int, whole: int) -> float | None:
    # Capped at 1: SNS does not order events, so a recipient's complaint or open can be counted a
    # moment before their delivery is (the part briefly outgrows the whole it belongs to).
    return min(part / whole, 1.0) if whole else None


def campaign_stats(campaign: Campaign) -> CampaignStats:
    return CampaignStats.objects.filter(campaign=campaign).first() or CampaignStats(campaign=campaign)


def recipient_total(campaign: Campaign) -> int:
    """The recipient count recorded when the audience was frozen (0 before)."""
    return breakdown_map(campaign_id=campaign.pk, kinds=["meta"])["meta"].get("recipients", 0)


def headline(campaign: Campaign) -> dict:
    stats = campaign_stats(campaign)
    total = recipient_total(campaign)
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


def activity_series(campaign: Campaign) -> tuple[list[datetime], dict[str, list[int]], str]:
    """Opens and clicks over time: hourly during the first days, then per day."""
    kinds = ["hour:open", "hour:human_open", "hour:click", "hour:human_click"]
    data = breakdown_map(campaign_id=campaign.pk, kinds=kinds)
    hours = sorted({key for values in data.values() for key in values})
    if not hours:
        return [], {}, "hour"
    first = _parse_hour(hours[0])
    last = max(_parse_hour(hours[-1]), first)
    daily = last - first > timedelta(days=HOURLY_DAYS)
    step = timedelta(days=1) if daily else timedelta(hours=1)
    start = first.replace(hour=0) if daily else first
    buckets: list[datetime] = []
    moment = start
    while moment <= last:
        buckets.append(moment)
        moment += step
    index = {bucket: i for i, bucket in enumerate(buckets)}
    names = {
        "hour:human_open": "Opens (human)",
        "hour:open": "Opens (all)",
        "hour:human_click": "Clicks (human)",
        "hour:click": "Clicks (all)",
    }
    series = {}
    for kind in ("hour:human_open", "hour:open", "hour:human_click", "hour:click"):
        values = [0] * len(buckets)
        for key, count in data[kind].items():
            moment = _parse_hour(key)
            bucket = moment.replace(hour=0) if daily else moment
            values[index[bucket]] += count
        series[names[kind]] = values
    return buckets, series, "day" if daily else "hour"


def _parse_hour(key: str) -> datetime:
    return datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=UTC)


def funnel(campaign: Campaign, figures: dict) -> list[tuple[str, int]]:
    return [
        ("Recipients", figures["recipients"]),
        ("Sent", figures["sent"]),
        ("Delivered", figures["delivered"]),
        ("Opened (human)", figures["unique_human_opens"]),
        ("Clicked (human)", figures["unique_human_clicks"]),
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


def top_links(campaign: Campaign, *, limit: int = 10) -> list[tuple[str, int]]:
    return breakdown_rows(campaign_id=campaign.pk, kind="link:human_click", limit=limit)


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
