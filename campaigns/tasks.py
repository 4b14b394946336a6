"""django-q2 tasks: thin wrappers that fetch by id and call a service."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from audiences.imports import imports_discard_abandoned, imports_restart_stale
from audiences.sync import sync_runs_discard_abandoned
from campaigns import services
from campaigns.composer import linkcheck
from campaigns.delivery import claims, engine
from campaigns.models import Campaign
from campaigns.snapshot import audience_snapshot

logger = logging.getLogger(__name__)

# Longer than any snapshot takes (1,000,000 recipients: about a minute on PostgreSQL).
SNAPSHOT_SECONDS_AT_MOST = 600


def campaign_start(campaign_id: int) -> int:
    """Freeze the audience (only if every list and segment is the campaign's organisation's), then
    start the dispatchers."""
    if not services.campaign_audience_recheck(campaign_id=campaign_id):
        return 0
    # Worked on, not waiting for a worker (delivery/shares.py), while the snapshot runs and then
    # until its dispatchers beat: if none gets a worker, other campaigns' dispatchers hand theirs over.
    services.campaign_beat(campaign_id=campaign_id, ahead=timedelta(seconds=SNAPSHOT_SECONDS_AT_MOST))
    count = audience_snapshot(campaign_id=campaign_id)
    services.campaign_beat(campaign_id=campaign_id)
    logger.info("campaign %s: %s recipients frozen", campaign_id, count)
    if not services.campaign_finish_if_done(campaign_id=campaign_id):
        services.dispatchers_start(campaign_id=campaign_id)
    return count


def campaign_start_scheduled(campaign_id: int) -> None:
    services.campaign_start_due(campaign_id=campaign_id)


def campaign_dispatch(campaign_id: int) -> str:
    return engine.campaign_dispatch(campaign_id=campaign_id)


def links_check(campaign_id: int) -> int:
    """Fetch the links of the campaign's latest link check (the preview page shows them)."""
    return linkcheck.link_check_run(campaign_id=campaign_id)


def engine_tick() -> dict:
    """Twice a minute (two schedules, half a minute apart): start overdue scheduled campaigns,
    requeue claims of dead dispatchers, restart dispatchers for sending campaigns whose dispatchers
    stopped beating, restart imports whose worker died, delete uploads nobody confirmed, and let
    single messages that SES paused try again."""
    now = timezone.now()
    started = 0
    for campaign_id in Campaign.objects.filter(status=Campaign.Status.SCHEDULED, scheduled_at__lte=now).values_list(
        "pk", flat=True
    ):
        started += bool(services.campaign_start_due(campaign_id=campaign_id))
    requeued = claims.reclaim_stale()
    restarted = 0
    # Work a dead worker held is back in the queue: make sure someone picks it up now.
    for campaign_id in Campaign.objects.filter(pk__in=requeued, status=Campaign.Status.SENDING).values_list(
        "pk", flat=True
    ):
        services.dispatchers_start(campaign_id=campaign_id)
        restarted += 1
    # Claims that missed their heartbeats but are not stale yet, and nobody beating the campaign:
    # one dispatcher waits for them to go stale and requeues them then, not a tick later.
    silent = set(claims.campaigns_with_silent_claims()) - set(requeued)
    for campaign_id in silent:
        services.dispatchers_start(campaign_id=campaign_id, count=1)
        restarted += 1
    stale = now - timedelta(seconds=claims.heartbeat_grace())
    for campaign in Campaign.objects.filter(status=Campaign.Status.SENDING):
        if campaign.snapshot_at is None:
            if campaign.started_at and campaign.started_at < stale:
                campaign_start(campaign.pk)
                restarted += 1
        elif campaign.pk not in set(requeued) | silent and (
            campaign.heartbeat_at is None or campaign.heartbeat_at < stale
        ):
            services.dispatchers_start(campaign_id=campaign.pk)
            restarted += 1
    imports = imports_restart_stale()
    discarded = imports_discard_abandoned()  # their files hold personal data: not kept until the next upload
    return {
        "started": started,
        "requeued": sum(requeued.values()),
        "restarted": restarted,
        "imports": len(imports),
        "uploads_discarded": discarded,
        "sync_runs_abandoned": sync_runs_discard_abandoned(),  # API replace runs older than a day
        # Windows move as days pass; also pauses what a held organisation started in a race with its hold.
        "reputation_paused": services.organisations_reputation_check(),
        "messages_resumed": services.messages_resume_paused(),  # single messages SES paused try again
        "quota_resumed": len(services.campaigns_resume_due()),  # paused by a quota that has renewed
    }
