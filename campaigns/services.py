"""The campaign life cycle: every change of ``Campaign.status`` goes through this module."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.utils import parseaddr

from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from audiences.models import Contact, Suppression
from campaigns.composer.attachments import attachments_copy
from campaigns.composer.rendering import TemplateProblem, compile_campaign
from campaigns.models import Campaign, CampaignTemplate, Recipient, content_of
from campaigns.quotas import QuotaRoom, quota_never_fits, quota_refusal, quota_room
from campaigns.selectors import audience_foreign_parts
from campaigns.snapshot import audience_count
from organisations.models import Organisation
from organisations.reputation import hold_refusal, organisation_hold, organisations_to_judge, reputations_of
from organisations.senders import sender_refusal
from stats.counters import outcomes_add, reputation_guard_rebase, snapshot_recorded

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


def organisation_hold_check(*, organisation_id: int) -> None:
    """Refuse any start of sending (send now, schedule, resume, single messages, test sends) while the
    organisation's sending is on hold for its reputation (``organisations.reputation``)."""
    refusal = hold_refusal(organisation_id)
    if refusal:
        raise CampaignError(refusal)


def _check_ready(campaign: Campaign) -> int:
    """Refuse a campaign that cannot be sent as it is; returns how many it would reach now."""
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
    # The sender may have been removed, or never verified, since the campaign was saved.
    refusal = sender_refusal(campaign.organisation_id, parseaddr(campaign.from_email)[1] or campaign.from_email)
    if refusal:
        raise CampaignError(f"Choose another sender address on the campaign's page: {refusal}")
    count = audience_count(campaign)
    if count == 0:
        raise CampaignError("The audience is empty: nobody on the chosen lists can receive this campaign.")
    return count


def campaign_send_now(*, campaign_id: int) -> Campaign:
    """Start sending at once: freeze the audience and start dispatchers in a worker."""
    with transaction.atomic():
        campaign = Campaign.objects.get(pk=campaign_id)
        organisation_hold_check(organisation_id=campaign.organisation_id)
        if campaign.status in {Status.DRAFT, Status.SCHEDULED}:
            count = _check_ready(campaign)
            refusal = quota_refusal(campaign.organisation_id, count)
            if refusal:
                raise CampaignError(f"Not sent: {refusal}")
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
        organisation_hold_check(organisation_id=campaign.organisation_id)
        refusal = quota_never_fits(campaign.organisation_id, _check_ready(campaign))
        if refusal:
            raise CampaignError(f"Not scheduled: {refusal}")
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
        held = hold_refusal(campaign.organisation_id)
        if held:  # not started days late when the hold is lifted: staff schedule it again
            _transition(campaign_id, Status.DRAFT, reason=f"Not sent at its time. {held} Then schedule it again.")
            Schedule.objects.filter(name=_schedule_name(campaign_id)).delete()
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
        organisation_id = Campaign.objects.values_list("organisation_id", flat=True).get(pk=campaign_id)
        organisation_hold_check(organisation_id=organisation_id)
        room = quota_room(organisation_id)
        if room is not None and room.left <= 0:
            raise CampaignError(
                f"Not resumed: the quota is still used up (no messages left {room.period}; {room.renews})."
            )
        campaign = _transition(campaign_id, Status.SENDING, allowed_from={Status.PAUSED}, verb="resumed")
        Campaign.objects.filter(pk=campaign_id).update(resume_at=None)
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


# --- single messages ----------------------------------------------------------------------------


class MessageRefused(CampaignError):
    """A single message that must not go out (suppressed or opted-out address); nothing was written.

    ``field`` names the request field at fault.
    """

    def __init__(self, message: str, *, field: str = "to") -> None:
        super().__init__(message)
        self.field = field


def message_send(
    *,
    template: CampaignTemplate,
    email: str,
    first_name: str = "",
    last_name: str = "",
    attributes: dict | None = None,
    from_email: str,
    reply_to: str = "",
) -> Campaign:
    """One message to one address from a saved template: a campaign of one recipient, sending at once.

    ``email`` is already checked and normalised (``audiences.addresses.email_check``). It takes the
    campaigns' path: the suppression list and the organisation's opt-outs are checked here and again
    by the engine at dispatch; the express lane (``campaigns/delivery/engine.py``) sends it ahead
    of bulk work, and its events are matched and counted like a campaign's.
    Call inside the caller's transaction; the dispatch task is enqueued once it commits.
    """
    organisation_id = template.organisation_id
    organisation_hold_check(organisation_id=organisation_id)
    if Suppression.objects.filter(email=email).exists():
        # Why (and whose mail caused it) is not said here: that is other organisations' business
        # unless it is this organisation's contact (GET /api/v1/suppressions/{email} tells those).
        raise MessageRefused(
            f"{email} is on the suppression list (it bounced, complained or was blocked): nothing is sent "
            "to it any more. Ask the member for another address."
        )
    contact = Contact.objects.filter(organisation_id=organisation_id, email=email).first()
    if contact is not None and contact.status != Contact.Status.ACTIVE:
        raise MessageRefused(
            f"{email} is a contact who is {contact.get_status_display().lower()} in this organisation: "
            "they are not sent mail any more."
        )
    now = timezone.now()
    campaign = Campaign.objects.create(
        organisation_id=organisation_id,
        kind=Campaign.Kind.MESSAGE,
        name=template.name,
        from_email=from_email,
        reply_to=reply_to,
        status=Status.SENDING,
        started_at=now,
        snapshot_at=now,  # the audience is the one address: nothing to freeze
        heartbeat_at=now,  # the engine tick leaves it to its own dispatch task at first
        **content_of(template),
    )
    snapshot_recorded(campaign_id=campaign.pk, recipients=1, domains={email.rpartition("@")[2]: 1})
    Recipient.objects.create(
        campaign=campaign,
        contact=contact,
        email=email,
        merge_data={"first_name": first_name, "last_name": last_name, "attributes": attributes or {}},
    )
    transaction.on_commit(lambda: dispatchers_start(campaign_id=campaign.pk, count=1))
    return campaign


def messages_resume_paused(*, limit: int = 100) -> int:
    """Single messages paused by SES (account paused, daily quota used up) try again: nobody presses
    Resume on a message. Called by the engine tick; a message SES still refuses is paused again by
    its one failed call. Returns how many were resumed."""
    paused = Campaign.objects.filter(kind=Campaign.Kind.MESSAGE, status=Status.PAUSED, resume_at=None).order_by("pk")
    paused = paused.filter(organisation__held_at__isnull=True)  # sending on hold: they wait for the lift
    resumed = 0
    for campaign_id in list(paused.values_list("pk", flat=True)[:limit]):
        with transaction.atomic():
            try:
                _transition(campaign_id, Status.SENDING, allowed_from={Status.PAUSED}, verb="resumed")
            except CampaignError:
                continue  # cancelled or resumed meanwhile
            transaction.on_commit(lambda campaign_id=campaign_id: dispatchers_start(campaign_id=campaign_id, count=1))
        resumed += 1
    return resumed


def campaign_beat(*, campaign_id: int, ahead: timedelta = timedelta(0)) -> None:
    """Mark a sending campaign as worked on now (``ahead``: for that much longer, e.g. while its
    audience is frozen in one long statement that cannot beat). Dispatchers of other campaigns hand
    their worker over to a sending campaign nobody works on (``delivery/shares.py``)."""
    Campaign.objects.filter(pk=campaign_id, status=Status.SENDING).update(heartbeat_at=timezone.now() + ahead)


def campaign_pause_for_quota(*, campaign_id: int, room: QuotaRoom) -> None:
    """The organisation's quota is used up while it sends: pause until the quota renews (the engine
    tick resumes it then: ``campaigns_resume_due``)."""
    with transaction.atomic():
        campaign = Campaign.objects.select_related("organisation").get(pk=campaign_id)
        try:
            _transition(campaign_id, Status.PAUSED, reason=room.pause_reason(campaign.organisation.name))
        except CampaignError:
            return  # paused or cancelled meanwhile
        Campaign.objects.filter(pk=campaign_id).update(resume_at=room.renews_at)


def campaigns_resume_due() -> list[int]:
    """Campaigns paused by a quota that has renewed (``resume_at`` passed) resume, if there is room now
    (else they wait for the next renewal). Called by the engine tick; returns the ids resumed."""
    resumed = []
    due = Campaign.objects.filter(status=Status.PAUSED, resume_at__lte=timezone.now()).order_by("pk")
    for campaign_id, organisation_id in list(due.values_list("pk", "organisation_id")[:100]):
        room = quota_room(organisation_id)
        if room is not None and room.left <= 0:
            Campaign.objects.filter(pk=campaign_id).update(resume_at=room.renews_at)
            continue
        try:
            campaign_resume(campaign_id=campaign_id)
        except CampaignError:
            continue
        resumed.append(campaign_id)
    return resumed


# --- reputation per organisation ------------------------------------------------------------------


def organisation_reputation_enforce(*, organisation_id: int) -> bool:
    """Judge the organisation's reputation (``organisations.reputation``); when it reaches SES's review
    levels, hold its sending. A held organisation's sending campaigns and messages pause with the
    reason. Called after an event batch that counted its hard bounces or complaints (once committed)
    and by the engine tick. Returns True if campaigns were paused."""
    organisation = Organisation.objects.filter(pk=organisation_id).first()
    if organisation is None:
        return False
    if organisation.held_at is None:
        reputation = reputations_of([organisation])[0]
        if reputation.reason is None:
            return False
        organisation_hold(organisation_id=organisation_id, reason=reputation.reason)
    return _organisation_campaigns_pause(organisation_id)


def _organisation_campaigns_pause(organisation_id: int) -> bool:
    refusal = hold_refusal(organisation_id)
    if refusal is None:
        return False  # lifted meanwhile
    sending = Campaign.objects.filter(organisation_id=organisation_id, status=Status.SENDING)
    paused = 0
    for campaign_id in list(sending.values_list("pk", flat=True)):
        try:
            campaign_pause(campaign_id=campaign_id, reason=f"Paused: {refusal} Then resume this campaign.")
        except CampaignError:
            continue  # finished or cancelled meanwhile
        paused += 1
    if paused:
        logger.warning("organisation %s on hold: %s sending campaigns paused", organisation_id, paused)
    return bool(paused)


def organisations_reputation_check() -> int:
    """The engine tick: judge again the organisations whose windows may have moved, and pause what a
    held organisation still sends (a start that raced the hold). Returns how many were paused."""
    for reputation in reputations_of(organisations_to_judge()):
        if reputation.reason:
            organisation_hold(organisation_id=reputation.organisation.pk, reason=reputation.reason)
    paused = 0
    held_sending = Campaign.objects.filter(status=Status.SENDING, organisation__held_at__isnull=False)
    for organisation_id in set(held_sending.values_list("organisation_id", flat=True)):
        paused += _organisation_campaigns_pause(organisation_id)
    return paused
