"""The campaign life cycle: every change of ``Campaign.status`` goes through this module."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from campaigns.composer.attachments import attachments_copy
from campaigns.composer.rendering import TemplateProblem, compile_campaign
from campaigns.models import Campaign, Recipient, content_of
from campaigns.selectors import audience_foreign_parts
from campaigns.snapshot import audience_count
from stats.counters import outcomes_add, reputation_guard_rebase

logger = logging.getLogger(__name__)

Status = Campaign.Status

ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    Status.DRAFT: {Status.SCHEDULED, Status.SENDING},
    Status.SCHEDULED: {Status.SCHEDULED, Status.DRAFT, Status.SENDING, Status.CANCELLED},  # another time
    Status.SENDING: {Status.PAUSED, Status.SENT, Status.CANCELLED},
    Status.PAUSED: {Status.SENDING, Status.CANCELLED},
    Status.SENT: set(),
    Status.CANCELLED: set(),
}


class CampaignError(Exception):
    """A request that cannot be carried out; the message is shown to staff as it is."""


def _transition(
    campaign_id: int, to: str, *, reason: str = "", allowed_from: set[str] | None = None, verb: str = ""
) -> Campaign:
    """Lock the campaign row, check the move is allowed and save it. Returns the fresh row."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
    current = Status(campaign.status)
    target = Status(to)
    if target not in ALLOWED_TRANSITIONS[current] or (allowed_from and current not in allowed_from):
        hint = " Resume it instead." if current == Status.PAUSED and target == Status.SENDING and not verb else ""
        raise CampaignError(f"A {current.label.lower()} campaign cannot be {verb or _verb(target)}.{hint}")
    campaign.status = target
    campaign.status_reason = reason
    fields = ["status", "status_reason", "updated_at"]
    now = timezone.now()
    if target == Status.SENDING and campaign.started_at is None:
        campaign.started_at = now
        fields.append("started_at")
    if target in {Status.SENT, Status.CANCELLED}:
        campaign.finished_at = now
        fields.append("finished_at")
    if target == Status.DRAFT:
        campaign.scheduled_at = None
        fields.append("scheduled_at")
    campaign.save(update_fields=fields)
    context = {"campaign": campaign.pk, "from_status": current.value, "to_status": target.value, "reason": reason}
    logger.info("campaign %s: %s -> %s", campaign_id, current.value, target.value, extra=context)
    return campaign


def _verb(status: Status) -> str:
    return {
        Status.DRAFT: "moved back to draft",
        Status.SCHEDULED: "scheduled",
        Status.SENDING: "sent",
        Status.PAUSED: "paused",
        Status.SENT: "marked as sent",
        Status.CANCELLED: "cancelled",
    }[status]


def _check_ready(campaign: Campaign) -> None:
    if not (campaign.include_lists.exists() or campaign.include_segments.exists()):
        raise CampaignError("Choose at least one list or segment to send to before sending.")
    foreign = audience_foreign_parts(campaign)
    if foreign:
        raise CampaignError(foreign_parts_message(foreign))
    try:
        compile_campaign(campaign)
    except TemplateProblem as problem:
        raise CampaignError(f"The content has a problem: {problem}") from None
    except OSError:  # an attachment's file is gone from storage
        raise CampaignError(
            "An attachment's file cannot be read: remove it on the Attachments page and upload it again."
        ) from None
    if audience_count(campaign) == 0:
        raise CampaignError("The audience is empty: nobody on the chosen lists can receive this campaign.")


def campaign_send_now(*, campaign_id: int) -> Campaign:
    """Start sending at once: freeze the audience and start dispatchers in a worker."""
    with transaction.atomic():
        campaign = Campaign.objects.get(pk=campaign_id)
        if campaign.status in {Status.DRAFT, Status.SCHEDULED}:
            _check_ready(campaign)
        campaign = _transition(campaign_id, Status.SENDING, allowed_from={Status.DRAFT, Status.SCHEDULED})
        Schedule.objects.filter(name=_schedule_name(campaign_id)).delete()
        transaction.on_commit(lambda: async_task("campaigns.tasks.campaign_start", campaign_id))
    return campaign


def campaign_schedule(*, campaign_id: int, when: datetime) -> Campaign:
    """Send at ``when`` (aware). A django-q2 schedule starts it even if the web process is down."""
    if timezone.is_naive(when):
        raise CampaignError("The send time needs a time zone.")
    if when <= timezone.now() + timedelta(seconds=30):
        raise CampaignError("Choose a time at least a minute in the future, or send now.")
    with transaction.atomic():
        campaign = Campaign.objects.get(pk=campaign_id)
        _check_ready(campaign)
        campaign = _transition(campaign_id, Status.SCHEDULED, allowed_from={Status.DRAFT, Status.SCHEDULED})
        campaign.scheduled_at = when
        campaign.save(update_fields=["scheduled_at"])
        Schedule.objects.update_or_create(
            name=_schedule_name(campaign_id),
            defaults={
                "func": "campaigns.tasks.campaign_start_scheduled",
                "args": repr((campaign_id,)),
                "schedule_type": Schedule.ONCE,
                "next_run": when,
                "repeats": 1,
            },
        )
    return campaign


def campaign_unschedule(*, campaign_id: int) -> Campaign:
    with transaction.atomic():
        campaign = _transition(campaign_id, Status.DRAFT, allowed_from={Status.SCHEDULED})
        Schedule.objects.filter(name=_schedule_name(campaign_id)).delete()
    return campaign


def campaign_start_due(*, campaign_id: int) -> Campaign | None:
    """Called by the schedule (or the engine tick): start a scheduled campaign whose time came."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != Status.SCHEDULED or not campaign.scheduled_at:
            return None
        if campaign.scheduled_at > timezone.now():
            return None
        campaign = _transition(campaign_id, Status.SENDING)
        Schedule.objects.filter(name=_schedule_name(campaign_id)).delete()
        transaction.on_commit(lambda: async_task("campaigns.tasks.campaign_start", campaign_id))
    return campaign


def campaign_pause(*, campaign_id: int, reason: str = "Paused by staff.") -> Campaign:
    with transaction.atomic():
        return _transition(campaign_id, Status.PAUSED, reason=reason)


def campaign_resume(*, campaign_id: int) -> Campaign:
    with transaction.atomic():
        campaign = _transition(campaign_id, Status.SENDING, allowed_from={Status.PAUSED}, verb="resumed")
        # A person reviewed the figures: the reputation guard judges only what happens from now on.
        reputation_guard_rebase(campaign_id=campaign_id)
        transaction.on_commit(lambda: dispatchers_start(campaign_id=campaign_id))
    return campaign


def campaign_cancel(*, campaign_id: int) -> Campaign:
    """Stop for good: queued recipients are skipped; messages already with SES finish."""
    with transaction.atomic():
        campaign = _transition(campaign_id, Status.CANCELLED)
        Schedule.objects.filter(name=_schedule_name(campaign_id)).delete()
        skipped = Recipient.objects.filter(campaign_id=campaign_id, status=Recipient.Status.QUEUED).update(
            status=Recipient.Status.SKIPPED, error="Campaign cancelled"
        )
        outcomes_add(campaign_id=campaign_id, skipped=skipped)
    return campaign


def campaign_finish_if_done(*, campaign_id: int) -> bool:
    """Mark a sending campaign sent once no recipient is queued or in flight."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != Status.SENDING or campaign.snapshot_at is None:
            return False
        busy = Recipient.objects.filter(
            campaign_id=campaign_id, status__in=[Recipient.Status.QUEUED, Recipient.Status.SENDING]
        ).exists()
        if busy:
            return False
        _transition(campaign_id, Status.SENT)
    return True


def foreign_parts_message(foreign: list[str]) -> str:
    """Why a campaign with another organisation's list, segment or layout is not sent, for staff."""
    return (
        f"Cannot send: {', '.join(foreign)} belong{'s' if len(foreign) == 1 else ''} to another organisation. "
        "Choose your organisation's own lists, segments and layout (in a copy, if the campaign has started)."
    )


def campaign_audience_recheck(*, campaign_id: int) -> bool:
    """At the start of sending (in the worker): True if the campaign may freeze its audience.

    Its lists, segments and layout must all be its organisation's; one that is not (a row changed
    behind the forms' back) cancels the campaign before anyone is frozen, with the reason on its page.
    """
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        foreign = audience_foreign_parts(campaign)
        if not foreign:
            return True
        if campaign.snapshot_at is None and campaign.status in {Status.SENDING, Status.SCHEDULED}:
            _transition(campaign_id, Status.CANCELLED, reason=foreign_parts_message(foreign))
        logger.warning("campaign %s: not sent, parts of another organisation: %s", campaign_id, foreign)
        return False


def campaign_duplicate(*, campaign_id: int, user=None) -> Campaign:
    """A new draft with the same content, layout, attachments and audience, in the same organisation."""
    original = Campaign.objects.get(pk=campaign_id)
    copy = Campaign.objects.create(
        organisation_id=original.organisation_id,
        name=f"Copy of {original.name}"[:200],
        from_email=original.from_email,
        reply_to=original.reply_to,
        created_by=user,
        **content_of(original),
    )
    copy.include_lists.set(original.include_lists.all())
    copy.exclude_lists.set(original.exclude_lists.all())
    copy.include_segments.set(original.include_segments.all())
    copy.exclude_segments.set(original.exclude_segments.all())
    attachments_copy(source=original, target=copy)
    return copy


def dispatchers_start(*, campaign_id: int, count: int | None = None) -> None:
    """Enqueue dispatch tasks; extra ones are harmless because claims are atomic."""
    from django.conf import settings

    for _ in range(count or settings.SEND_DISPATCHERS):
        async_task("campaigns.tasks.campaign_dispatch", campaign_id)


def _schedule_name(campaign_id: int) -> str:
    return f"campaign-start-{campaign_id}"
