"""The delivery engine: claim recipients atomically, respect the global rate, send, record.

A dispatch task works for at most ``SEND_TASK_SECONDS`` and then enqueues its own continuation,
so a worker is never tied up for hours and pause/cancel are seen between chunks. Any number of
dispatchers may run for one campaign on any number of machines: a recipient moves from
``queued`` to ``sending`` in one locked UPDATE, so no two dispatchers ever hold the same one.

Per message: render (templates compiled once per campaign), raw MIME assembled from parts built
once per campaign (headers, attachment parts, boundary) plus the recipient's own parts, handed
to django-ses's backend (one long-lived boto3 client per thread, botocore retries off because the
engine retries with the global limiter in mind), then per chunk: post_office ``Email`` rows
(template + context, i.e. render on delivery) with their ``Log`` rows and the recipients'
statuses, all in one transaction.
"""

from __future__ import annotations

import binascii
import logging
import math
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy as email_policy
from email.header import Header
from email.message import EmailMessage as MIMEPart
from email.utils import formataddr, formatdate, parseaddr

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, mailers
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string
from post_office.models import STATUS as OUTBOX_STATUS
from post_office.models import Email as OutboxEmail
from post_office.models import EmailTemplate
from post_office.models import Log as OutboxLog

from campaigns import ratelimit
from campaigns.models import Campaign, Contact, Recipient, Subscription
from campaigns.rendering import (
    CompiledCampaign,
    ContactAttributes,
    campaign_html_source,
    compile_campaign,
    merge_context,
    recipient_context,
    render_for,
)
from campaigns.tokens import recipient_token
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
# The daily quota is "Throttling: Daily message quota exceeded" on v1, LimitExceededException on v2.
QUOTA_CODES = {"LimitExceededException"}
PAUSE_CODES = {
    "AccountSendingPausedException",
    "AccountSuspendedException",
    "SendingPausedException",
    "ConfigurationSetDoesNotExist",
    "ConfigurationSetDoesNotExistException",
    "MailFromDomainNotVerifiedException",
    "MailFromDomainNotVerified",
}


# --- connections -------------------------------------------------------------------------------


def _botocore_config():
    """One attempt per call: the engine retries itself, after the shared limiter, with backoff.

    botocore's own retries (legacy mode: up to 4 more attempts with sleeps) would re-send behind
    the global limiter's back and hide throttling from the engine.
    """
    from botocore.config import Config

    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=max(10, settings.SEND_THREADS),
        parameter_validation=False,
    )


def ses_connection():
    """This thread's django-ses backend; it keeps one boto3 client open for its whole life."""
    alias = settings.POST_OFFICE["DEFAULT_MAILER"]
    key = (alias, repr(settings.MAILERS.get(alias)), settings.AWS_SES_REGION_ENDPOINT_URL, _use_ses_v2())
    cached = getattr(_local, "connection", None)
    if cached is None or cached[0] != key:
        backend = _new_backend(alias)
        if hasattr(backend, "open"):
            backend.open()
        _local.connection = cached = (key, backend)
    return cached[1]


def _new_backend(alias: str):
    from django_ses import SESBackend

    config = settings.MAILERS.get(alias) or {}
    backend_class = import_string(config.get("BACKEND", "django.core.mail.backends.locmem.EmailBackend"))
    if issubclass(backend_class, SESBackend) and not getattr(settings, "AWS_SES_CONFIG", None):
        options = {"aws_config": _botocore_config(), "use_ses_v2": _use_ses_v2(), **config.get("OPTIONS", {})}
        return backend_class(**options)
    return mailers[alias]


def _use_ses_v2() -> bool:
    """The engine talks to SES API v2 by default: its JSON body costs far less CPU to build than
    v1's form encoding of the base64 message (``urllib.parse.quote`` over every byte)."""
    return getattr(settings, "SEND_SES_API", "v2") == "v2"


def ses_client():
    """A boto3 SES client with the same credentials and endpoint as the sending backend.

    For account calls (quota, identities) made from pages and the limiter: short timeouts and
    one retry, so an unreachable SES costs a page seconds, not botocore's default minutes.
    """
    import boto3
    from botocore.config import Config

    return boto3.client(
        "ses",
        region_name=settings.AWS_SES_REGION_NAME,
        endpoint_url=settings.AWS_SES_REGION_ENDPOINT_URL,
        aws_access_key_id=settings.AWS_SES_ACCESS_KEY_ID,
        aws_secret_access_key=settings.AWS_SES_SECRET_ACCESS_KEY,
        config=Config(connect_timeout=3, read_timeout=10, retries={"total_max_attempts": 2, "mode": "standard"}),
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
        if "daily message quota" in message.lower() or code in QUOTA_CODES:
            return Outcome(recipient, "pause", reason="The SES daily sending quota is used up. " + _quota_hint())
        if code in PAUSE_CODES:
            return Outcome(recipient, "pause", reason=f"SES refused to send: {code}: {message}"[:500])
        if code in THROTTLE_CODES or "maximum sending rate" in message.lower():
            # Not a failure: back off (growing with repeated throttles) and try again.
            delay = min(60.0, 0.5 * 2.0 ** min(recipient.attempts, 7))
            return Outcome(recipient, "retry", reason=f"{code}: {message}"[:500], delay=delay, counts_as_attempt=False)
        if status >= 500:
            return _transient(recipient, f"{code or status}: {message}")
        return Outcome(recipient, "failed", reason=f"{code}: {message}"[:500])
    if isinstance(error, (BotoCoreError, ConnectionError, TimeoutError, OSError)):
        return _transient(recipient, f"{type(error).__name__}: {error}")
    return Outcome(recipient, "failed", reason=f"{type(error).__name__}: {error}"[:500])


def _transient(recipient: Recipient, reason: str) -> Outcome:
    if recipient.attempts >= settings.SEND_MAX_ATTEMPTS:
        return Outcome(recipient, "failed", reason=f"Gave up after {recipient.attempts} attempts: {reason}"[:500])
    return Outcome(recipient, "retry", reason=reason[:500], delay=min(300.0, 2.0 ** (recipient.attempts - 1)))


def _quota_hint() -> str:
    return (
        "SES counts the quota over a rolling 24 hours: resume the campaign when earlier sends have aged out "
        "(at the latest 24 hours after this pause), or ask AWS for a higher quota."
    )


# --- building a message ------------------------------------------------------------------------


def build_message(campaign: Campaign, compiled: CompiledCampaign, recipient: Recipient, context: dict):
    """The general path through Django's ``EmailMessage`` (used for unusual addresses)."""
    rendered = render_for(compiled, context)
    message = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text,
        from_email=campaign.from_email,
        to=[recipient.email],
        reply_to=[campaign.reply_to] if campaign.reply_to else None,
        headers=_ses_headers(campaign, recipient, context),
    )
    message.attach_alternative(rendered.html, "text/html")
    for filename, content, mimetype in rendered.attachments:
        message.attach(filename, content, mimetype)
    return message


def _ses_headers(campaign: Campaign, recipient: Recipient, context: dict) -> dict[str, str]:
    headers = {
        "X-SES-MESSAGE-TAGS": f"campaign={campaign.pk}, recipient={recipient.pk}",
        "List-Unsubscribe": f"<{context['unsubscribe_url']}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    if settings.AWS_SES_CONFIGURATION_SET:
        headers["X-SES-CONFIGURATION-SET"] = settings.AWS_SES_CONFIGURATION_SET
    return headers


class PreparedMessage:
    """Raw MIME already built, shaped like the ``EmailMessage`` that django-ses's backend reads.

    The backend only calls ``recipients()`` and ``message().as_bytes()`` and writes the SES
    message id into ``extra_headers``; building the bytes ourselves skips the ``email`` package's
    header parsing and generator, the largest per-message costs in the profile.
    """

    def __init__(self, *, from_email: str, to: str, raw: bytes, configuration_set: str | None) -> None:
        self.from_email = from_email
        self.to = [to]
        self.cc: list[str] = []
        self.bcc: list[str] = []
        self.raw = raw
        self.extra_headers: dict = {}
        if configuration_set:  # already in ``raw``; tells django-ses not to add it again
            self.extra_headers["X-SES-CONFIGURATION-SET"] = configuration_set

    def recipients(self) -> list[str]:
        return self.to

    def message(self) -> PreparedMessage:
        return self

    def as_bytes(self, *args, **kwargs) -> bytes:
        return self.raw

    def as_string(self, *args, **kwargs) -> str:
        return self.raw.decode("utf-8", "surrogateescape")


_URL_KEYS = ("unsubscribe_url", "preferences_url", "view_online_url")
_TOKEN_PLACEHOLDER = "C0BALTT0KEN"


@dataclass
class CampaignMessage:
    """Everything about a campaign's messages that does not depend on the recipient."""

    campaign: Campaign
    compiled: CompiledCampaign
    head: bytes  # From, Reply-To, MIME-Version, configuration set
    boundary: str
    attachment_parts: list[bytes] = field(default_factory=list)
    url_templates: dict[str, str] = field(default_factory=dict)
    # The lists a recipient must still be on (None: segments are included, the snapshot stands);
    # a sending campaign's audience cannot be edited, so once per dispatch task is enough.
    list_ids: list[int] | None = None

    def context(self, recipient: Recipient) -> dict:
        """``recipient_context`` with the three links made from templates instead of ``reverse``."""
        if not self.url_templates:
            return recipient_context(recipient)
        contact = recipient.contact
        first = contact.first_name if contact else ""
        last = contact.last_name if contact else ""
        attributes = contact.attributes if contact else {}
        token = recipient_token(recipient.pk)
        context = {
            "first_name": first,
            "last_name": last,
            "full_name": f"{first} {last}" if first and last else first or last,
            "email": recipient.email,
            "attributes": ContactAttributes(attributes if isinstance(attributes, dict) else {}),
        }
        for key, template in self.url_templates.items():
            context[key] = template.replace(_TOKEN_PLACEHOLDER, token)
        return context

    def build(self, recipient: Recipient, context: dict, date: str) -> PreparedMessage | EmailMultiAlternatives:
        if not recipient.email.isascii() or "\n" in recipient.email or "\r" in recipient.email:
            return build_message(self.campaign, self.compiled, recipient, context)
        rendered = render_for(self.compiled, context)
        headers = [
            self.head,
            b"To: ",
            recipient.email.encode(),
            b"\r\nSubject: ",
            _header_value(rendered.subject),
            b"\r\nDate: ",
            date.encode(),
            b"\r\nX-SES-MESSAGE-TAGS: campaign=",
            str(self.campaign.pk).encode(),
            b", recipient=",
            str(recipient.pk).encode(),
            b"\r\nList-Unsubscribe: <",
            context["unsubscribe_url"].encode(),
            b">\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        ]
        boundary = self.boundary.encode()
        alternative = (
            b"--" + boundary + b"\r\n" + _text_part("plain", rendered.text)
            + b"--" + boundary + b"\r\n" + _text_part("html", rendered.html)
            + b"--" + boundary + b"--\r\n"
        )  # fmt: skip
        if self.attachment_parts:
            mixed = b"mixed-" + boundary
            body = [b'Content-Type: multipart/mixed; boundary="', mixed, b'"\r\n\r\n--', mixed, b"\r\n"]
            body += [b'Content-Type: multipart/alternative; boundary="', boundary, b'"\r\n\r\n', alternative]
            for part in self.attachment_parts:
                body += [b"--", mixed, b"\r\n", part]
            body += [b"--", mixed, b"--\r\n"]
        else:
            body = [b'Content-Type: multipart/alternative; boundary="', boundary, b'"\r\n\r\n', alternative]
        return PreparedMessage(
            from_email=self.campaign.from_email,
            to=recipient.email,
            raw=b"".join(headers + body),
            configuration_set=settings.AWS_SES_CONFIGURATION_SET,
        )


def _header_value(value: str) -> bytes:
    if value.isascii() and len(value) < 900 and "\n" not in value and "\r" not in value:
        return value.encode()
    return Header(value, "utf-8", header_name="Subject").encode(linesep="\r\n").encode()


def _address_header(value: str) -> str:
    name, address = parseaddr(value)
    return formataddr((name, address), charset="utf-8")


def _text_part(subtype: str, text: str) -> bytes:
    # Quoted-printable never contains "=_", so the boundary can never occur in a body.
    data = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    return (
        b"Content-Type: text/" + subtype.encode() + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + data.replace(b"\n", b"\r\n") + b"\r\n"
    )


def _attachment_part(filename: str, content: bytes | str, mimetype: str) -> bytes:
    part = MIMEPart(policy=email_policy.SMTP)
    maintype, _, subtype = (mimetype or "application/octet-stream").partition("/")
    if isinstance(content, str):
        content = content.encode("utf-8")
    part.set_content(content, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    return part.as_bytes(policy=email_policy.SMTP)


def prepare_campaign(campaign: Campaign, compiled: CompiledCampaign | None = None) -> CampaignMessage:
    """Build once per campaign (per dispatch task) what every message shares."""
    compiled = compiled or compile_campaign(campaign)
    head = [f"From: {_address_header(campaign.from_email)}"]
    if campaign.reply_to:
        head.append(f"Reply-To: {_address_header(campaign.reply_to)}")
    head.append("MIME-Version: 1.0")
    if settings.AWS_SES_CONFIGURATION_SET:
        head.append(f"X-SES-CONFIGURATION-SET: {settings.AWS_SES_CONFIGURATION_SET}")
    return CampaignMessage(
        campaign=campaign,
        compiled=compiled,
        head=("\r\n".join(head) + "\r\n").encode("utf-8"),
        boundary=f"=_cobalt_{campaign.pk}_{uuid.uuid4().hex}",
        attachment_parts=[_attachment_part(*attachment) for attachment in compiled.attachments],
        url_templates=_url_templates(),
        list_ids=None
        if campaign.include_segments.exists()
        else list(campaign.include_lists.values_list("pk", flat=True)),
    )


def _url_templates() -> dict[str, str]:
    """The link fields with a placeholder token; empty (use ``recipient_context``) if the merge
    fields ever change shape, so the fast context can never silently drift from the real one."""
    sample = merge_context(first_name="", last_name="", email="", attributes={}, token=_TOKEN_PLACEHOLDER)
    expected = {"first_name", "last_name", "full_name", "email", "attributes", *_URL_KEYS}
    if set(sample) != expected or any(_TOKEN_PLACEHOLDER not in sample[key] for key in _URL_KEYS):
        return {}
    return {key: sample[key] for key in _URL_KEYS}


def campaign_outbox_template(campaign: Campaign) -> EmailTemplate:
    """The post_office template every message of the campaign is rendered from (made once)."""
    if campaign.email_template_id:
        return campaign.email_template
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.email_template_id is None:  # two dispatchers starting together make one
            locked.email_template = EmailTemplate.objects.create(
                name=f"campaign-{campaign.pk}",
                description=f"Content of campaign {campaign.pk}: {campaign.name}"[:255],
                subject=campaign.subject,
                html_content=campaign_html_source(campaign),  # layout included: what was sent
                content=campaign.text_body,
            )
            Campaign.objects.filter(pk=campaign.pk).update(email_template=locked.email_template)
    campaign.email_template = locked.email_template
    return campaign.email_template


# --- claiming ----------------------------------------------------------------------------------


def claim(*, campaign_id: int, limit: int) -> list[int]:
    """Move up to ``limit`` due recipients from queued to sending; returns their ids.

    Rows another dispatcher has locked are skipped, not waited for (PostgreSQL); the status
    condition in the UPDATE keeps the claim exclusive where row locks do not exist (SQLite
    serialises writers instead), and only the rows this UPDATE changed are returned.
    """
    now = timezone.now()
    with transaction.atomic():
        due = Recipient.objects.filter(campaign_id=campaign_id, status=Recipient.Status.QUEUED).exclude(
            not_before__gt=now
        )
        ids = list(due.order_by("id").select_for_update(skip_locked=True).values_list("id", flat=True)[:limit])
        if not ids:
            return []
        token = now + timedelta(microseconds=uuid.uuid4().int % 997)
        updated = Recipient.objects.filter(id__in=ids, status=Recipient.Status.QUEUED).update(
            status=Recipient.Status.SENDING, claimed_at=token, attempts=F("attempts") + 1
        )
        if updated != len(ids):  # someone else won some rows between our SELECT and UPDATE
            ids = list(
                Recipient.objects.filter(id__in=ids, status=Recipient.Status.SENDING, claimed_at=token).values_list(
                    "id", flat=True
                )
            )
    return ids


def reclaim_stale(*, older_than: timedelta | None = None) -> dict[int, int]:
    """Recipients left in "sending" by a dead worker go back to the queue (sent again).

    Resending is chosen over "needs review" because a message that never reached SES must not be
    forgotten; the price is that a message in flight when the worker died may arrive twice.
    Returns {campaign id: recipients requeued}.
    """
    cutoff = timezone.now() - (older_than or timedelta(seconds=settings.SEND_STALE_SECONDS))
    stale = Recipient.objects.filter(status=Recipient.Status.SENDING, claimed_at__lt=cutoff)
    requeued: dict[int, int] = {}
    for campaign_id in list(stale.order_by().values_list("campaign_id", flat=True).distinct()):
        with transaction.atomic():
            held = stale.filter(campaign_id=campaign_id)
            if _skipped_if_cancelled(campaign_id, held):
                continue
            count = held.update(status=Recipient.Status.QUEUED, claimed_at=None)
        if count:
            requeued[campaign_id] = count
            logger.warning("campaign %s: %s recipients left in flight by a dead worker requeued", campaign_id, count)
    return requeued


# --- the dispatch loop -------------------------------------------------------------------------


def campaign_dispatch(*, campaign_id: int, seconds: float | None = None) -> str:
    """Send for this campaign until done, paused or out of time. Returns why it stopped."""
    from campaigns.services import campaign_finish_if_done, dispatchers_start

    deadline = time.monotonic() + (seconds or settings.SEND_TASK_SECONDS)
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.status != Campaign.Status.SENDING:
        return "stopped"
    campaign_outbox_template(campaign)
    prepared = prepare_campaign(campaign)
    while time.monotonic() < deadline:
        if not _still_sending(campaign_id):
            return "stopped"
        ids = claim(campaign_id=campaign_id, limit=claim_size(ratelimit.send_rate()))
        if not ids:
            if campaign_finish_if_done(campaign_id=campaign_id):
                return "finished"
            if _waiting_for_retries(campaign_id):
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                continue
            return "idle"  # the rest is in flight in other dispatchers
        if not send_claimed(prepared=prepared, ids=ids):
            return "stopped"
    dispatchers_start(campaign_id=campaign_id, count=1)
    return "continued"


def claim_size(rate: float) -> int:
    """At most about two seconds of the global rate per claim.

    Claimed recipients sit in "sending" until their chunk goes out; a claim much larger than the
    rate allows (say 200 at the sandbox's 1/s, shared by several dispatchers) would still be
    waiting when ``SEND_STALE_SECONDS`` runs out and be requeued (and sent twice) while alive.
    """
    return max(1, min(settings.SEND_BATCH_SIZE, math.ceil(rate * 2)))


def _still_sending(campaign_id: int) -> bool:
    updated = Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.SENDING).update(
        heartbeat_at=timezone.now()
    )
    return bool(updated)


def _waiting_for_retries(campaign_id: int) -> bool:
    return Recipient.objects.filter(campaign_id=campaign_id, status=Recipient.Status.QUEUED).exists()


def send_claimed(*, prepared: CampaignMessage, ids: list[int]) -> bool:
    """Send claimed recipients chunk by chunk at the global rate. False if the campaign stopped."""
    campaign = prepared.campaign
    recipients = list(Recipient.objects.filter(id__in=ids).select_related("contact").order_by("id"))
    recipients = _skip_unreachable(prepared, recipients)
    rate = ratelimit.send_rate()
    size = ratelimit.chunk_size(rate, settings.SEND_BATCH_SIZE)
    for start in range(0, len(recipients), size):
        chunk = recipients[start : start + size]
        if start and not _still_sending(campaign.pk):
            _release(recipients[start:])
            return False
        ratelimit.wait_for_slot(len(chunk), rate=rate)
        outcomes = _send_chunk(prepared, chunk)
        if not _record(campaign, outcomes):
            _release(recipients[start + size :])
            return False
    return True


def _skip_unreachable(prepared: CampaignMessage, recipients: list[Recipient]) -> list[Recipient]:
    """Suppressed or no-longer-active addresses since the snapshot are skipped, not sent; so are
    contacts who left every list the campaign was sent to (e.g. on the preference page)."""
    emails = [recipient.email for recipient in recipients]
    suppressed = set(Suppression.objects.filter(email__in=emails).values_list("email", flat=True))
    left = _left_the_lists(prepared.list_ids, recipients)
    skipped = {
        recipient.pk
        for recipient in recipients
        if recipient.email in suppressed
        or recipient.contact_id in left
        or (recipient.contact is not None and recipient.contact.status != Contact.Status.ACTIVE)
    }
    if skipped:
        with transaction.atomic():
            moved = Recipient.objects.filter(id__in=skipped, status=Recipient.Status.SENDING).update(
                status=Recipient.Status.SKIPPED, error="Unsubscribed or suppressed after the snapshot", claimed_at=None
            )
            CampaignStats.outcomes_add(prepared.campaign.pk, skipped=moved)
    return [recipient for recipient in recipients if recipient.pk not in skipped]


def _left_the_lists(list_ids: list[int] | None, recipients: list[Recipient]) -> set[int]:
    """Contacts no longer subscribed to any of ``list_ids`` (one query a batch).

    Only for campaigns addressed to lists alone (``list_ids`` is None otherwise): a segment may
    include a contact whatever its subscriptions, so with segments the snapshot stands (status
    and suppression still apply).
    """
    contact_ids = {recipient.contact_id for recipient in recipients if recipient.contact_id}
    if not list_ids or not contact_ids:
        return set()
    still = Subscription.objects.filter(
        contact_id__in=contact_ids, contact_list_id__in=list_ids, status=Subscription.Status.SUBSCRIBED
    ).values_list("contact_id", flat=True)
    return contact_ids - set(still)


def _skipped_if_cancelled(campaign_id: int, held) -> bool:
    """Call inside a transaction before giving in-flight recipients (``held``) back to the queue.

    Takes the campaign's row lock, as a cancel does; if the campaign was cancelled, ``held`` is
    skipped like the rest of its queue (nothing would ever send it) and True is returned.
    """
    status = Campaign.objects.select_for_update().values_list("status", flat=True).get(pk=campaign_id)
    if status != Campaign.Status.CANCELLED:
        return False
    skipped = held.update(status=Recipient.Status.SKIPPED, claimed_at=None, error="Campaign cancelled")
    CampaignStats.outcomes_add(campaign_id, skipped=skipped)
    return True


def _release(recipients: list[Recipient]) -> None:
    """Give claimed-but-unsent recipients back without counting an attempt.

    If the campaign was cancelled meanwhile they are skipped instead: the cancel already skipped
    every queued recipient and nothing would ever pick these up.
    """
    if not recipients:
        return
    ids = [recipient.pk for recipient in recipients]
    with transaction.atomic():
        held = Recipient.objects.filter(id__in=ids, status=Recipient.Status.SENDING)
        if not _skipped_if_cancelled(recipients[0].campaign_id, held):
            held.update(status=Recipient.Status.QUEUED, claimed_at=None, attempts=F("attempts") - 1)


def _send_chunk(prepared: CampaignMessage, chunk: list[Recipient]) -> list[Outcome]:
    date = formatdate(usegmt=True)
    contexts = [prepared.context(recipient) for recipient in chunk]
    messages = [prepared.build(recipient, context, date) for recipient, context in zip(chunk, contexts, strict=True)]
    if len(chunk) == 1 or settings.SEND_THREADS == 1:
        outcomes = [_send_one(recipient, message) for recipient, message in zip(chunk, messages, strict=True)]
    else:
        outcomes = list(_thread_pool().map(_send_one, chunk, messages))
    for outcome, context in zip(outcomes, contexts, strict=True):
        outcome.context = context
    return outcomes


def _send_one(recipient: Recipient, message) -> Outcome:
    try:
        ses_connection().send_messages([message])
    except Exception as error:  # classified below; nothing may escape a worker thread
        return classify_error(error, recipient)
    return Outcome(recipient, "sent", message_id=message.extra_headers.get("message_id", ""))


def _record(campaign: Campaign, outcomes: list[Outcome]) -> bool:
    """Write the chunk's results in one transaction. False if SES asked to pause.

    post_office gets an ``Email`` (template + context: rendered on delivery) and a ``Log`` for
    every message SES accepted or refused for good; retries get theirs when they are final.
    """
    from campaigns.services import CampaignError, campaign_pause

    now = timezone.now()
    final = [outcome for outcome in outcomes if outcome.kind in {"sent", "failed"}]
    again = [outcome for outcome in outcomes if outcome.kind not in {"sent", "failed"}]
    pause_reasons = [outcome.reason for outcome in outcomes if outcome.kind == "pause"]
    with transaction.atomic():
        outbox = OutboxEmail.objects.bulk_create(
            [
                OutboxEmail(
                    from_email=campaign.from_email,
                    to=[outcome.recipient.email],
                    template_id=campaign.email_template_id,
                    context=getattr(outcome, "context", None),
                    status=OUTBOX_STATUS.sent if outcome.kind == "sent" else OUTBOX_STATUS.failed,
                    message_id=outcome.message_id or None,
                    backend_alias=settings.POST_OFFICE["DEFAULT_MAILER"],
                    headers={"X-SES-MESSAGE-TAGS": f"campaign={campaign.pk}, recipient={outcome.recipient.pk}"},
                )
                for outcome in final
            ]
        )
        OutboxLog.objects.bulk_create(
            [
                OutboxLog(
                    email_id=email.pk,
                    status=OUTBOX_STATUS.sent if outcome.kind == "sent" else OUTBOX_STATUS.failed,
                    message=outcome.reason[:255],
                    exception_type="" if outcome.kind == "sent" else outcome.reason.partition(":")[0][:255],
                )
                for outcome, email in zip(final, outbox, strict=True)
            ]
        )
        _write_final(final, outbox, now)
        _write_retries(campaign.pk, again, now)
        sent = sum(outcome.kind == "sent" for outcome in final)
        CampaignStats.outcomes_add(campaign.pk, sent=sent, failed=len(final) - sent)
    if pause_reasons:
        try:
            campaign_pause(campaign_id=campaign.pk, reason=pause_reasons[0])
        except CampaignError:
            pass  # already paused or cancelled by someone else
        return False
    return True


def _write_final(final: list[Outcome], outbox: list[OutboxEmail], now) -> None:
    """Sent and failed recipients in one UPDATE … FROM (VALUES …) (PostgreSQL and SQLite >= 3.33)."""
    if not final:
        return
    table = connection.ops.quote_name(Recipient._meta.db_table)
    rows, params = [], []
    for outcome, email in zip(final, outbox, strict=True):
        rows.append("(CAST(%s AS BIGINT), %s, %s, %s, CAST(%s AS BIGINT))")
        status = Recipient.Status.SENT if outcome.kind == "sent" else Recipient.Status.FAILED
        params += [outcome.recipient.pk, str(status), outcome.message_id or None, outcome.reason[:500], email.pk]
    sent_at = now if connection.vendor != "sqlite" else connection.ops.adapt_datetimefield_value(now)
    sql = (
        f"UPDATE {table} SET status = v.column2, ses_message_id = v.column3, error = v.column4, "
        f"outbox_email_id = v.column5, claimed_at = NULL, "
        f"sent_at = CASE WHEN v.column2 = 'sent' THEN %s ELSE {table}.sent_at END "
        f"FROM (SELECT * FROM (VALUES {', '.join(rows)}) AS vals) AS v WHERE {table}.id = v.column1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [sent_at, *params])


def _write_retries(campaign_id: int, again: list[Outcome], now) -> None:
    held = Recipient.objects.filter(id__in=[outcome.recipient.pk for outcome in again], status=Recipient.Status.SENDING)
    if not again or _skipped_if_cancelled(campaign_id, held):
        return
    for outcome in again:
        recipient = outcome.recipient
        attempts = recipient.attempts - (0 if outcome.counts_as_attempt and outcome.kind == "retry" else 1)
        Recipient.objects.filter(pk=recipient.pk).update(
            status=Recipient.Status.QUEUED,
            error=outcome.reason,
            claimed_at=None,
            not_before=now + timedelta(seconds=outcome.delay),
            attempts=max(attempts, 0),
        )


def heartbeat_grace() -> int:
    """Seconds without a dispatcher heartbeat after which the tick starts new dispatchers.

    A live dispatcher beats before every chunk (a fraction of a second apart) and hands over to
    its continuation every ``SEND_TASK_SECONDS``, so twice that is generous.
    """
    return settings.SEND_TASK_SECONDS * 2 + 10
