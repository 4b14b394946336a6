"""A fair share of the send rate between the campaigns sending at the same time.

The installation's clock (``ratelimit.py``) stays the one guard of SES's limit. On top of it, when
several campaigns want to send at once, each is paced by a clock of its own at its share of the
rate: the organisations wanting to send split the rate by their weights (``Organisation.send_weight``,
set by site operators; 1 each by default), and each organisation's share is split equally between
its campaigns. A campaign alone takes the whole rate without a clock of its own (as before).

"Wanting to send" is a campaign whose dispatchers held unsent messages within the last
``SEEN_SECONDS`` (``Campaign.demand_at``, written with the quarter-second status check): a share
nobody uses goes back to the others within that time, and a campaign that finishes, pauses or only
waits for retries stops counting at once or within it. Single messages go ahead of every share
(the express lane) and take none.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from campaigns.models import Campaign

# How long a campaign keeps its share after its dispatchers last held unsent messages.
SEEN_SECONDS = 0.75


def share_split(wanting: list[tuple[int, int, int]]) -> dict[int, float]:
    """{campaign id: share of the rate} for (campaign id, organisation id, organisation weight) rows."""
    campaigns: dict[int, list[int]] = {}
    weights: dict[int, int] = {}
    for campaign_id, organisation_id, weight in wanting:
        campaigns.setdefault(organisation_id, []).append(campaign_id)
        weights[organisation_id] = max(int(weight or 1), 1)
    total = sum(weights.values())
    return {
        campaign_id: weights[organisation_id] / total / len(ids)
        for organisation_id, ids in campaigns.items()
        for campaign_id in ids
    }


def campaign_share(campaign: Campaign, *, weight: int) -> float:
    """This campaign's share of the rate now, counting it as wanting to send (one small read);
    ``weight``: its organisation's."""
    since = timezone.now() - timedelta(seconds=SEEN_SECONDS)
    wanting = list(
        Campaign.objects.filter(kind=Campaign.Kind.CAMPAIGN, status=Campaign.Status.SENDING, demand_at__gte=since)
        .exclude(pk=campaign.pk)
        .values_list("pk", "organisation_id", "organisation__send_weight")
    )
    if not wanting:
        return 1.0
    wanting.append((campaign.pk, campaign.organisation_id, weight))
    return share_split(wanting)[campaign.pk]


# A campaign nobody dispatches for this long, while it is sending, waits for a worker; after
# WAITING_GIVE_UP_SECONDS the engine tick restarts its dispatchers instead (lost tasks).
WAITING_SECONDS = 2.0
WAITING_GIVE_UP_SECONDS = 300


def campaign_waiting_for_worker(*, exclude: int) -> bool:
    """True if another campaign is sending (or starting) but none of its dispatchers has beaten for
    ``WAITING_SECONDS``: its tasks wait in the queue behind dispatchers that hold every worker.

    Only for a few minutes after it last beat (or started): a campaign whose tasks were lost is the
    engine tick's to restart, not a reason to keep handing workers over.
    """
    now = timezone.now()
    quiet, recent = now - timedelta(seconds=WAITING_SECONDS), now - timedelta(seconds=WAITING_GIVE_UP_SECONDS)
    sending = Campaign.objects.filter(kind=Campaign.Kind.CAMPAIGN, status=Campaign.Status.SENDING).exclude(pk=exclude)
    never_beaten = Q(heartbeat_at__isnull=True, started_at__gte=recent, started_at__lt=quiet)
    stopped_beating = Q(heartbeat_at__gte=recent, heartbeat_at__lt=quiet)
    return sending.filter(never_beaten | stopped_beating).exists()
