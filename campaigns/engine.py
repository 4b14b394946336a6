"""The delivery engine: claim recipients atomically, respect the global rate, send, record.

A dispatch task works for at most ``SEND_TASK_SECONDS`` and then enqueues its own continuation,
so a worker is never tied up for hours and pause/cancel are seen between chunks. Any number of
dispatchers may run for one campaign on any number of machines: a recipient moves from
``queued`` to ``sending`` in one locked UPDATE, so no two dispatchers ever hold the same one.

Per message: render (templates compiled once per campaign), a post_office ``Email`` row
(template + context, i.e. render on delivery) and its ``Log``, django-ses's backend with one
boto3 client per thread, and statuses written per chunk.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, mailers
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from post_office.models import STATUS as OUTBOX_STATUS
from post_office.models import Email as OutboxEmail
from post_office.models import EmailTemplate
from post_office.models import Log as OutboxLog

from campaigns import ratelimit
from campaigns.models import Campaign, Contact, Recipient
from campaigns.rendering import CompiledCampaign, compile_campaign, recipient_context, render_for
from tracking.models import CampaignStats, Suppression

try:  # django-ses tries "import dkim" for every message; when it is absent make the miss cheap.
    import dkim  # noqa: F401
except ImportError:
    sys.modules["dkim"] = None

logger = logging.getLogger(__name__)
_local = threading.local()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()

THROTTLE_CODES = {"Throttling", "TooManyRequestsException", "ThrottlingException"}
PAUSE_CODES = {
    "AccountSendingPausedException",
    "SendingPausedException",
    "ConfigurationSetDoesNotExist",
    "ConfigurationSetDoesNotExistException",
    "MailFromDomainNotVerifiedException",
    "MailFromDomainNotVerified",
}


# --- connections -------------------------------------------------------------------------------


def ses_connection():
    """This thread's django-ses backend; it keeps one boto3 client open for its whole life."""
    alias = settings.POST_OFFICE["DEFAULT_MAILER"]
    key = (alias, repr(settings.MAILERS.get(alias)), settings.AWS_SES_REGION_ENDPOINT_URL)
    cached = getattr(_local, "connection", None)
    if cached is None or cached[0] != key:
        backend = mailers[alias]
        if hasattr(backend, "open"):
            backend.open()
        _local.connection = cached = (key, backend)
    return cached[1]


def ses_client():
    """A boto3 SES client with the same credentials and endpoint as the sending backend."""
    import boto3

    return boto3.client(
        "ses",
        region_name=settings.AWS_SES_REGION_NAME,
        endpoint_url=settings.AWS_SES_REGION_ENDPOINT_URL,
        aws_access_key_id=settings.AWS_SES_ACCESS_KEY_ID,
        aws_secret_access_key=settings.AWS_SES_SECRET_ACCESS_KEY,
    )


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=settings.SEND_THREADS, thread_name_prefix="ses-send")
        return _pool


# --- outcomes ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    recipient: Recipient
    kind: str  # sent | retry | failed | pause
    message_id: str = ""
    reason: str = ""
    delay: float = 0.0
    counts_as_attempt: bool = True


def classify_error(error: Exception, recipient: Recipient) -> Outcome:
    """Map an SES error to what the engine does with the recipient (see README, "Errors")."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "") or str(error)
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
        if "daily message quota" in message.lower():
            return Outcome(recipient, "pause", reason="The SES daily sending quota is used up. " + _quota_hint())
        if code in PAUSE_CODES:
            return Outcome(recipient, "pause", reason=f"SES refused to send: {code}: {message}")
        if code in THROTTLE_CODES or "maximum sending rate" in message.lower():
            delay = min(60.0, 2.0 ** min(recipient.attempts, 6))
            return Outcome(recipient, "retry", reason=f"{code}: {message}", delay=delay, counts_as_attempt=False)
        if status >= 500:
            return _transient(recipient, f"{code or status}: {message}")
        return Outcome(recipient, "failed", reason=f"{code}: {message}"[:500])
    if isinstance(error, (BotoCoreError, ConnectionError, TimeoutError, OSError)):
        return _transient(recipient, f"{type(error).__name__}: {error}")
    return Outcome(recipient, "failed", reason=f"{type(error).__name__}: {error}"[:500])


def _transient(recipient: Recipient, reason: str) -> Outcome:
    if recipient.attempts >= settings.SEND_MAX_ATTEMPTS:
        return Outcome(recipient, "failed", reason=f"Gave up after {recipient.attempts} attempts: {reason}"[:500])
    return Outcome(recipient, "retry", reason=reason[:500], delay=min(300.0, 2.0**recipient.attempts))


def _quota_hint() -> str:
    return "Resume the campaign after the 24-hour window rolls over, or ask AWS for a higher quota."


# --- building a message ------------------------------------------------------------------------


def build_message(campaign: Campaign, compiled: CompiledCampaign, recipient: Recipient, context: dict):
    rendered = render_for(compiled, context)
    headers = {
        "X-SES-MESSAGE-TAGS": f"campaign={campaign.pk}, recipient={recipient.pk}",
        "List-Unsubscribe": f"<{context['unsubscribe_url']}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    if settings.AWS_SES_CONFIGURATION_SET:
        headers["X-SES-CONFIGURATION-SET"] = settings.AWS_SES_CONFIGURATION_SET
    message = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text,
        from_email=campaign.from_email,
        to=[recipient.email],
        reply_to=[campaign.reply_to] if campaign.reply_to else None,
        headers=headers,
    )
    message.attach_alternative(rendered.html, "text/html")
    return message


def campaign_outbox_template(campaign: Campaign) -> EmailTemplate:
    """The post_office template every message of the campaign is rendered from (made once)."""
    if campaign.email_template_id:
        return campaign.email_template
    template = EmailTemplate.objects.create(
        name=f"campaign-{campaign.pk}",
        description=f"Content of campaign {campaign.pk}: {campaign.name}"[:255],
        subject=campaign.subject,
        html_content=campaign.html_body,
        content=campaign.text_body,
    )
    Campaign.objects.filter(pk=campaign.pk).update(email_template=template)
    campaign.email_template = template
    return template


# --- claiming ----------------------------------------------------------------------------------


def claim(*, campaign_id: int, limit: int) -> list[int]:
    """Move up to ``limit`` due recipients from queued to sending; returns their ids."""
    now = timezone.now()
    with transaction.atomic():
        due = Recipient.objects.filter(campaign_id=campaign_id, status=Recipient.Status.QUEUED).exclude(
            not_before__gt=now
        )
        ids = list(due.order_by("id").select_for_update(skip_locked=True).values_list("id", flat=True)[:limit])
        if not ids:
            return []
        # The status condition makes the claim safe even where row locks are not available.
        Recipient.objects.filter(id__in=ids, status=Recipient.Status.QUEUED).update(
            status=Recipient.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
        )
    return ids


def reclaim_stale(*, older_than: timedelta | None = None) -> int:
    """Recipients left in "sending" by a dead worker go back to the queue (sent again).

    Resending is chosen over "needs review" because a message that never reached SES must not be
    forgotten; the price is that a message in flight when the worker died may arrive twice.
    """
    cutoff = timezone.now() - (older_than or timedelta(seconds=settings.SEND_STALE_SECONDS))
    return Recipient.objects.filter(status=Recipient.Status.SENDING, claimed_at__lt=cutoff).update(
        status=Recipient.Status.QUEUED, claimed_at=None
    )


# --- the dispatch loop -------------------------------------------------------------------------


def campaign_dispatch(*, campaign_id: int, seconds: float | None = None) -> str:
    """Send for this campaign until done, paused or out of time. Returns why it stopped."""
    from campaigns.services import campaign_finish_if_done, dispatchers_start

    deadline = time.monotonic() + (seconds or settings.SEND_TASK_SECONDS)
    campaign = Campaign.objects.get(pk=campaign_id)
    compiled = compile_campaign(campaign)
    campaign_outbox_template(campaign)
    while time.monotonic() < deadline:
        if not _still_sending(campaign_id):
            return "stopped"
        ids = claim(campaign_id=campaign_id, limit=settings.SEND_BATCH_SIZE)
        if not ids:
            if campaign_finish_if_done(campaign_id=campaign_id):
                return "finished"
            if _waiting_for_retries(campaign_id):
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                continue
            return "idle"  # the rest is in flight in other dispatchers
        if not send_claimed(campaign=campaign, compiled=compiled, ids=ids):
            return "stopped"
    dispatchers_start(campaign_id=campaign_id, count=1)
    return "continued"


def _still_sending(campaign_id: int) -> bool:
    updated = Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.SENDING).update(
        heartbeat_at=timezone.now()
    )
    return bool(updated)


def _waiting_for_retries(campaign_id: int) -> bool:
    return Recipient.objects.filter(campaign_id=campaign_id, status=Recipient.Status.QUEUED).exists()


def send_claimed(*, campaign: Campaign, compiled: CompiledCampaign, ids: list[int]) -> bool:
    """Send claimed recipients chunk by chunk at the global rate. False if the campaign stopped."""
    recipients = list(Recipient.objects.filter(id__in=ids).select_related("contact").order_by("id"))
    recipients = _skip_unreachable(recipients)
    rate = ratelimit.send_rate()
    size = ratelimit.chunk_size(rate, settings.SEND_BATCH_SIZE)
    for start in range(0, len(recipients), size):
        chunk = recipients[start : start + size]
        if start and not _still_sending(campaign.pk):
            _release(recipients[start:])
            return False
        ratelimit.wait_for_slot(len(chunk), rate=rate)
        outcomes = _send_chunk(campaign, compiled, chunk)
        if not _record(campaign, outcomes):
            _release(recipients[start + size :])
            return False
    return True


def _skip_unreachable(recipients: list[Recipient]) -> list[Recipient]:
    """Suppressed or no-longer-active addresses since the snapshot are skipped, not sent."""
    emails = [recipient.email for recipient in recipients]
    suppressed = set(Suppression.objects.filter(email__in=emails).values_list("email", flat=True))
    inactive = {
        recipient.pk
        for recipient in recipients
        if recipient.contact is not None and recipient.contact.status != Contact.Status.ACTIVE
    }
    skipped = [r for r in recipients if r.email in suppressed or r.pk in inactive]
    if skipped:
        Recipient.objects.filter(id__in=[r.pk for r in skipped]).update(
            status=Recipient.Status.SKIPPED, error="Unsubscribed or suppressed after the snapshot"
        )
    return [r for r in recipients if r not in skipped]


def _release(recipients: list[Recipient]) -> None:
    """Give claimed-but-unsent recipients back to the queue without counting an attempt."""
    Recipient.objects.filter(id__in=[r.pk for r in recipients], status=Recipient.Status.SENDING).update(
        status=Recipient.Status.QUEUED, claimed_at=None, attempts=F("attempts") - 1
    )


def _send_chunk(campaign: Campaign, compiled: CompiledCampaign, chunk: list[Recipient]) -> list[Outcome]:
    contexts = [recipient_context(recipient) for recipient in chunk]
    outbox = OutboxEmail.objects.bulk_create(
        [
            OutboxEmail(
                from_email=campaign.from_email,
                to=[recipient.email],
                template_id=campaign.email_template_id,
                context=context,
                status=OUTBOX_STATUS.queued,
                backend_alias=settings.POST_OFFICE["DEFAULT_MAILER"],
            )
            for recipient, context in zip(chunk, contexts, strict=True)
        ]
    )
    messages = [
        build_message(campaign, compiled, recipient, context)
        for recipient, context in zip(chunk, contexts, strict=True)
    ]
    if len(chunk) == 1 or settings.SEND_THREADS == 1:
        outcomes = [_send_one(recipient, message) for recipient, message in zip(chunk, messages, strict=True)]
    else:
        outcomes = list(_thread_pool().map(_send_one, chunk, messages))
    for outcome, email in zip(outcomes, outbox, strict=True):
        outcome.recipient.outbox_email = email
    return outcomes


def _send_one(recipient: Recipient, message) -> Outcome:
    try:
        ses_connection().send_messages([message])
    except Exception as error:  # classified below; nothing may escape a worker thread
        return classify_error(error, recipient)
    return Outcome(recipient, "sent", message_id=message.extra_headers.get("message_id", ""))


def _record(campaign: Campaign, outcomes: list[Outcome]) -> bool:
    """Write the chunk's statuses in a few statements. False if SES asked to pause."""
    from campaigns.services import CampaignError, campaign_pause

    now = timezone.now()
    changed: list[Recipient] = []
    logs: list[OutboxLog] = []
    pause_reason = ""
    for outcome in outcomes:
        recipient = outcome.recipient
        if outcome.kind == "sent":
            recipient.status, recipient.ses_message_id, recipient.sent_at, recipient.error = (
                Recipient.Status.SENT,
                outcome.message_id or None,
                now,
                "",
            )
        elif outcome.kind == "failed":
            recipient.status, recipient.error = Recipient.Status.FAILED, outcome.reason
        else:
            recipient.status, recipient.error, recipient.claimed_at = Recipient.Status.QUEUED, outcome.reason, None
            recipient.not_before = now + timedelta(seconds=outcome.delay)
            if outcome.kind == "pause" or not outcome.counts_as_attempt:
                recipient.attempts -= 1
            pause_reason = outcome.reason if outcome.kind == "pause" else pause_reason
        changed.append(recipient)
        if recipient.outbox_email_id and outcome.kind in {"sent", "failed"}:
            status = OUTBOX_STATUS.sent if outcome.kind == "sent" else OUTBOX_STATUS.failed
            logs.append(OutboxLog(email_id=recipient.outbox_email_id, status=status, message=outcome.reason[:255]))
    sent_ids = [o.recipient.outbox_email_id for o in outcomes if o.kind == "sent"]
    failed_ids = [o.recipient.outbox_email_id for o in outcomes if o.kind != "sent"]
    with transaction.atomic():
        Recipient.objects.bulk_update(
            changed,
            ["status", "ses_message_id", "sent_at", "error", "claimed_at", "not_before", "attempts", "outbox_email"],
        )
        OutboxEmail.objects.filter(id__in=sent_ids).update(status=OUTBOX_STATUS.sent, last_updated=now)
        OutboxEmail.objects.filter(id__in=failed_ids).update(status=OUTBOX_STATUS.failed, last_updated=now)
        OutboxLog.objects.bulk_create(logs)
        if sent_ids:
            CampaignStats.objects.filter(campaign_id=campaign.pk).update(sent=F("sent") + len(sent_ids))
    if pause_reason:
        try:
            campaign_pause(campaign_id=campaign.pk, reason=pause_reason)
        except CampaignError:
            pass  # already paused or cancelled by someone else
        return False
    return True


def heartbeat_grace() -> int:
    """Seconds without a dispatcher heartbeat after which the tick starts new dispatchers."""
    return settings.SEND_TASK_SECONDS * 2 + 30
