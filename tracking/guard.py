"""The reputation guard: pause a sending campaign whose bounce or complaint rate is shown to be too high.

After a counted hard bounce or complaint, it pauses when the evidence says the true rate is above
the limit, not on the first unlucky ratio (``reputation_guard_reason``). When a person resumes,
the counts restart from a baseline (``stats.counters.reputation_guard_rebase``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services import CampaignError, campaign_pause
from common.rates import wilson_lower_bound  # one definition: the organisations judge with it too
from stats.models import CampaignStats

logger = logging.getLogger(__name__)


def reputation_guard_reason(
    *, delivered: int, bounced_hard: int, complained: int, resumed_at: datetime | None = None
) -> str | None:
    """Why the guard pauses, given the recipients counted since sending started (or was resumed),
    or None while the evidence does not show a rate above the limits.

    Pause when the Wilson 95% lower bound of hard bounces / (deliveries + hard bounces) is above
    ``GUARD_BOUNCE_RATE``, with at least ``GUARD_MIN_BOUNCES`` hard bounces, or that of
    complaints / deliveries is above ``GUARD_COMPLAINT_RATE``, with at least
    ``GUARD_MIN_COMPLAINTS`` complaints; either needs ``GUARD_MIN_DELIVERIES`` outcomes first.
    """
    since = "since sending started"
    if resumed_at:
        since = f"since sending was resumed at {timezone.localtime(resumed_at):%d %b %Y %H:%M}"
    outcomes = delivered + bounced_hard
    if outcomes < settings.GUARD_MIN_DELIVERIES:
        return None
    bounce_floor = wilson_lower_bound(bounced_hard, outcomes)
    if bounced_hard >= settings.GUARD_MIN_BOUNCES and bounce_floor > settings.GUARD_BOUNCE_RATE:
        return (
            f"Paused automatically: {bounced_hard:,} hard bounces from {outcomes:,} messages with an outcome "
            f"({bounced_hard / outcomes:.1%}) {since}. Even the low end of the 95% range of the true rate "
            f"(Wilson lower bound, {bounce_floor:.1%}) is above the {settings.GUARD_BOUNCE_RATE:.1%} limit; "
            f"the guard pauses only then, and with at least {settings.GUARD_MIN_BOUNCES} hard bounces and "
            f"{settings.GUARD_MIN_DELIVERIES} outcomes. SES reviews accounts from about 5% hard bounces: clean "
            "the list before resuming. After a resume the guard counts afresh."
        )
    complaint_floor = wilson_lower_bound(complained, delivered)
    if complained >= settings.GUARD_MIN_COMPLAINTS and complaint_floor > settings.GUARD_COMPLAINT_RATE:
        return (
            f"Paused automatically: {complained:,} complaints from {delivered:,} deliveries "
            f"({complained / delivered:.2%}) {since}. Even the low end of the 95% range of the true rate "
            f"(Wilson lower bound, {complaint_floor:.2%}) is above the {settings.GUARD_COMPLAINT_RATE:.2%} limit; "
            f"the guard pauses only then, and with at least {settings.GUARD_MIN_COMPLAINTS} complaints and "
            f"{settings.GUARD_MIN_DELIVERIES} outcomes. SES reviews accounts from about 0.1%: find out why "
            "people complain before resuming. After a resume the guard counts afresh."
        )
    return None


def reputation_guard(*, campaign_id: int) -> bool:
    """Pause a sending campaign whose figures since it started (or was last resumed) show a bounce
    or complaint rate above the limits (``reputation_guard_reason``). Returns True if it paused it.
    """
    stats = CampaignStats.objects.filter(campaign_id=campaign_id).first()
    if not stats:
        return False
    reason = reputation_guard_reason(
        delivered=max(0, stats.delivered - stats.guard_base_delivered),
        bounced_hard=max(0, stats.bounced_hard - stats.guard_base_bounced_hard),
        complained=max(0, stats.complained - stats.guard_base_complained),
        resumed_at=stats.guard_resumed_at,
    )
    if reason is None:
        return False
    if not Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.SENDING).exists():
        return False
    try:
        campaign_pause(campaign_id=campaign_id, reason=reason)
    except CampaignError:
        return False  # paused, finished or cancelled meanwhile
    logger.warning("Campaign %s paused by the reputation guard: %s", campaign_id, reason)
    return True
