"""The delivery engine: claim recipients atomically, respect the global rate, send, record.

A dispatch task works for at most ``SEND_TASK_SECONDS`` and then enqueues its own continuation,
so a worker is never tied up for hours; pause, cancel and a stopping worker are seen between
messages. Any number of dispatchers may run for one campaign on any number of machines: a
recipient moves from ``queued`` to ``sending`` in one locked UPDATE under a fresh claim token, so
no two dispatchers ever hold the same one, and every later write is conditional on that token.
The owner renews its claims' heartbeat while it works; claims that miss their heartbeats for
``SEND_STALE_SECONDS`` (a dead owner) are queued again.

Per message: render (templates compiled once per campaign), raw MIME assembled from parts built
once per campaign (headers, attachment parts, boundary) plus the recipient's own parts, handed
to django-ses's backend (one long-lived boto3 client per process, botocore retries off because
the engine retries with the global limiter in mind) on a thread of its own, as soon as one is
free (``Dispatcher``). Results are written in small groups: post_office ``Email`` rows (template
+ context, i.e. render on delivery) with their ``Log`` rows and the recipients' statuses, all in
one transaction that is retried on a fresh connection if the database drops it.
"""

from __future__ import annotations

import binascii
import contextlib
import logging
import math
import queue
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy as email_policy
from email.header import Header
from email.message import EmailMessage as MIMEPart
from email.utils import formataddr, formatdate, parseaddr

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, mailers
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    connection,
    transaction,
)
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string
from post_office.models import STATUS as OUTBOX_STATUS
from post_office.models import Email as OutboxEmail
from post_office.models import EmailTemplate
from post_office.models import Log as OutboxLog

from campaigns import ratelimit, shutdown
from campaigns.models import Campaign, Contact, Recipient, Subscription
from campaigns.rendering import (
    CompiledCampaign,
    campaign_html_source,
    compile_campaign,
    recipient_context,
    render_for,
)
from campaigns.services import CampaignError, campaign_finish_if_done, campaign_pause, dispatchers_start
from tracking.models import CampaignStats, Suppression

try:  # django-ses tries "import dkim" for every message; when it is absent make the miss cheap.
    import dkim  # noqa: F401
except ImportError:
    sys.modules["dkim"] = None

logger = logging.getLogger(__name__)
_connection: tuple | None = None
_connection_lock = threading.Lock()
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
    the global limiter's back and hide throttling from the engine. The timeouts fit SES, which
    answers a send in well under a second: a call past them is abandoned and retried (SES may
    still have accepted it: see README, "Crash safety"). The pool holds a connection for every
    call a dispatcher may have in flight, stragglers included.
    """
    from botocore.config import Config

    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=settings.SES_CONNECT_TIMEOUT,
        read_timeout=settings.SES_READ_TIMEOUT,
        max_pool_connections=max_calls_in_flight(),
        parameter_validation=False,
    )


def ses_connection():
    """This process's django-ses backend, shared by every sending thread.

    It keeps one boto3 client open for the process's life (boto3 clients are thread-safe once
    made, and making one costs 110-130 ms of CPU: one per thread would cost that for every
    straggler thread the engine starts).
    """
    alias = settings.POST_OFFICE["DEFAULT_MAILER"]
    key = (
        alias,
        repr(settings.MAILERS.get(alias)),
        settings.AWS_SES_REGION_ENDPOINT_URL,
        _use_ses_v2(),
        settings.SES_CONNECT_TIMEOUT,
        settings.SES_READ_TIMEOUT,
    )
    global _connection
    cached = _connection
    if cached is None or cached[0] != key:
        with _connection_lock:
            cached = _connection
            if cached is None or cached[0] != key:
                backend = _new_backend(alias)
                if hasattr(backend, "open"):
                    backend.open()
                _connection = cached = (key, backend)
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


def max_calls_in_flight() -> int:
    """SES calls one dispatcher may have open at once, counting calls that are slow or hang.

    ``SEND_THREADS`` calls run at full speed; a call slower than ``STRAGGLER_SECONDS`` stops
    counting against them so that the next message goes out on another thread, up to this cap
    (Little's law: 2% of calls hanging for a 15 s read timeout at 150 msg/s keep 45 calls open).
    """
    return settings.SEND_THREADS * 16


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != max_calls_in_flight():
            if _pool is not None:  # the setting changed (tests): let the old threads end
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=max_calls_in_flight(), thread_name_prefix="ses-send")
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
    token: str = ""  # the claim that held the recipient when the call was made
    context: dict | None = None  # the merge context, kept with the post_office Email


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


@dataclass
class CampaignMessage:
    """Everything about a campaign's messages that does not depend on the recipient."""

    campaign: Campaign
    compiled: CompiledCampaign
    head: bytes  # From, Reply-To, MIME-Version, configuration set
    boundary: str
    attachment_parts: list[bytes] = field(default_factory=list)
    # The lists a recipient must still be on (None: segments are included, the snapshot stands);
    # a sending campaign's audience cannot be edited, so once per dispatch task is enough.
    list_ids: list[int] | None = None

    def context(self, recipient: Recipient) -> dict:
        return recipient_context(recipient)

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
        list_ids=None
        if campaign.include_segments.exists()
        else list(campaign.include_lists.values_list("pk", flat=True)),
    )


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


# --- claims ------------------------------------------------------------------------------------

# A call slower than this stops counting against SEND_THREADS: the next message goes out on
# another thread instead of waiting behind it (SES answers a send in well under a second).
STRAGGLER_SECONDS = 0.5
# Results are written in small groups: every ``chunk_size`` results or after this long.
COMMIT_SECONDS = 0.2
# A slot's messages may leave up to this late before the rest of the slot is given up.
LATE_SECONDS = 0.1
# How often a dispatcher checks that its campaign is still sending (pause and cancel take effect).
STATUS_CHECK_SECONDS = 0.25
# How long a dispatcher keeps reconnecting to a database that dropped it before giving up.
DATABASE_RETRY_SECONDS = 60.0
# The engine tick runs twice a minute (two django-q2 schedules, see migration 0007).
TICK_SECONDS = 30


@dataclass
class Claim:
    """Recipients one claim moved to "sending", and the token every later write must match."""

    token: str
    ids: list[int]

    def __bool__(self) -> bool:
        return bool(self.ids)


def heartbeat_interval() -> float:
    """Seconds between a dispatcher's heartbeats: an eighth of ``SEND_STALE_SECONDS``.

    A dispatcher starts an SES call only within two intervals of its last successful heartbeat,
    so with the default ``SEND_STALE_SECONDS`` (connect + read timeout + 10 s) every call it made
    has ended before anyone may requeue its claims, even if it lost the database meanwhile.
    """
    return max(0.5, settings.SEND_STALE_SECONDS / 8)


def recovery_seconds() -> float:
    """The longest a dead dispatcher's claims wait before they are queued again.

    ``SEND_STALE_SECONDS`` of missed heartbeats, then the next engine tick (twice a minute); a
    dispatcher still working on the campaign requeues them sooner, within a heartbeat. 60 s at
    the defaults.
    """
    return settings.SEND_STALE_SECONDS + TICK_SECONDS


def claim(*, campaign_id: int, limit: int) -> Claim:
    """Move up to ``limit`` due recipients from queued to sending under a new claim token.

    Rows another dispatcher has locked are skipped, not waited for (PostgreSQL); the status
    condition in the UPDATE keeps the claim exclusive where row locks do not exist (SQLite
    serialises writers instead), and only the rows this UPDATE changed are returned.
    ``claimed_at`` is the claim's first heartbeat.
    """
    now = timezone.now()
    token = uuid.uuid4().hex
    with transaction.atomic():
        due = Recipient.objects.filter(campaign_id=campaign_id, status=Recipient.Status.QUEUED).exclude(
            not_before__gt=now
        )
        ids = list(due.order_by("id").select_for_update(skip_locked=True).values_list("id", flat=True)[:limit])
        if not ids:
            return Claim(token, [])
        updated = Recipient.objects.filter(id__in=ids, status=Recipient.Status.QUEUED).update(
            status=Recipient.Status.SENDING, claim_token=token, claimed_at=now, attempts=F("attempts") + 1
        )
        if updated != len(ids):  # someone else won some rows between our SELECT and UPDATE
            ids = list(
                Recipient.objects.filter(id__in=ids, status=Recipient.Status.SENDING, claim_token=token).values_list(
                    "id", flat=True
                )
            )
    return Claim(token, ids)


def heartbeat(*, tokens: list[str]) -> dict[str, set[int]]:
    """Renew these claims' heartbeat; returns, per token, the recipients it still holds.

    One UPDATE … RETURNING over the in-flight rows (partial index on the token). A recipient
    missing from the answer was taken away (requeued as stale); its owner must not send it.
    """
    held: dict[str, set[int]] = {token: set() for token in tokens}
    if not tokens:
        return held
    table = connection.ops.quote_name(Recipient._meta.db_table)
    marks = ", ".join(["%s"] * len(tokens))
    # The status is written out, not a parameter, so that the planner matches the partial index.
    sql = (
        f"UPDATE {table} SET claimed_at = %s WHERE status = 'sending' AND claim_token IN ({marks}) "
        "RETURNING id, claim_token"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [_database_datetime(timezone.now()), *tokens])
        for pk, token in cursor.fetchall():
            held[token].add(pk)
    return held


def reclaim_stale(*, older_than: timedelta | None = None, campaign_id: int | None = None) -> dict[int, int]:
    """Claims whose owner stopped beating go back to the queue (sent again).

    A live owner renews its heartbeat every few seconds however slow its SES calls are, so only
    a dead owner (or one cut off from the database) misses ``SEND_STALE_SECONDS`` of them.
    Resending is chosen over "needs review" because a message that never reached SES must not be
    forgotten; the price is that a message in flight when the owner died may arrive twice. The
    token stays on the requeued rows: an owner that was only cut off can still record what SES
    accepted, as long as nobody has claimed the rows again. Returns {campaign id: requeued}.
    """
    cutoff = timezone.now() - (older_than or timedelta(seconds=settings.SEND_STALE_SECONDS))
    stale = Recipient.objects.filter(status=Recipient.Status.SENDING, claimed_at__lt=cutoff)
    if campaign_id is not None:
        stale = stale.filter(campaign_id=campaign_id)
    requeued: dict[int, int] = {}
    for stale_campaign_id in list(stale.order_by().values_list("campaign_id", flat=True).distinct()):
        with transaction.atomic():
            held = stale.filter(campaign_id=stale_campaign_id)
            if _skipped_if_cancelled(stale_campaign_id, held):
                continue
            count = held.update(status=Recipient.Status.QUEUED, claimed_at=None)
        if count:
            requeued[stale_campaign_id] = count
            logger.warning(
                "campaign %s: %s recipients whose dispatcher stopped beating (it died?) requeued",
                stale_campaign_id,
                count,
            )
    return requeued


def campaigns_with_silent_claims() -> list[int]:
    """Sending campaigns with claims that missed two heartbeats and no dispatcher beating.

    Their dispatchers most likely died: the tick starts one dispatcher for each, which requeues
    the claims the moment they are stale instead of a tick later.
    """
    silent = timezone.now() - timedelta(seconds=2 * heartbeat_interval())
    campaign_ids = (
        Recipient.objects.filter(status=Recipient.Status.SENDING, claimed_at__lt=silent)
        .order_by()
        .values("campaign_id")
        .distinct()
    )
    return list(
        Campaign.objects.filter(pk__in=campaign_ids, status=Campaign.Status.SENDING)
        .filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=silent))
        .values_list("pk", flat=True)
    )


def release(*, campaign_id: int, token: str, ids: list[int]) -> int:
    """Give claimed-but-unsent recipients back without counting an attempt; returns how many.

    If the campaign was cancelled meanwhile they are skipped instead: the cancel already skipped
    every queued recipient and nothing would ever pick these up.
    """
    if not ids:
        return 0
    with transaction.atomic():
        held = Recipient.objects.filter(id__in=ids, claim_token=token, status=Recipient.Status.SENDING)
        if _skipped_if_cancelled(campaign_id, held):
            return 0
        return held.update(
            status=Recipient.Status.QUEUED, claimed_at=None, claim_token=None, attempts=F("attempts") - 1
        )


def _skipped_if_cancelled(campaign_id: int, held) -> bool:
    """Call inside a transaction before giving in-flight recipients (``held``) back to the queue.

    Takes the campaign's row lock, as a cancel does; if the campaign was cancelled, ``held`` is
    skipped like the rest of its queue (nothing would ever send it) and True is returned.
    """
    status = Campaign.objects.select_for_update().values_list("status", flat=True).get(pk=campaign_id)
    if status != Campaign.Status.CANCELLED:
        return False
    skipped = held.update(
        status=Recipient.Status.SKIPPED, claimed_at=None, claim_token=None, error="Campaign cancelled"
    )
    CampaignStats.outcomes_add(campaign_id, skipped=skipped)
    return True


def _with_database[T](action: Callable[[], T], *, what: str) -> T:
    """Run ``action``; if the database connection broke, reconnect and try again for up to a minute.

    A dispatcher holds SES's answers for the calls it made: losing them to a dropped connection
    (a restarted or failed-over PostgreSQL, ``pg_terminate_backend``) would send every one of them
    again. Errors about the data itself are not retried; nor is anything inside a transaction
    someone else opened (it cannot be resumed on a new connection).
    """
    give_up = time.monotonic() + DATABASE_RETRY_SECONDS
    delay = 0.1
    while True:
        try:
            return action()
        except (IntegrityError, DataError, NotSupportedError):
            raise
        except (DatabaseError, InterfaceError) as error:
            if connection.in_atomic_block or time.monotonic() + delay > give_up:
                raise
            logger.warning("%s: the database connection failed (%s); reconnecting in %.1f s", what, error, delay)
            connection.close()  # the next query opens a fresh connection
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _database_datetime(value):
    return value if connection.vendor != "sqlite" else connection.ops.adapt_datetimefield_value(value)


# --- the dispatch loop -------------------------------------------------------------------------


def campaign_dispatch(*, campaign_id: int, seconds: float | None = None) -> str:
    """Send for this campaign until done, paused or out of time. Returns why it stopped:
    "finished", "stopped" (paused, cancelled or the worker is stopping), "continued" (a new
    task carries on) or "idle" (the rest is in other dispatchers' hands)."""
    deadline = time.monotonic() + (seconds or settings.SEND_TASK_SECONDS)
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.status != Campaign.Status.SENDING:
        return "stopped"
    if shutdown.stop_requested():
        # Taken from the queue by a worker that is stopping: hand it back for another cluster.
        dispatchers_start(campaign_id=campaign_id, count=1)
        return "stopped"
    campaign_outbox_template(campaign)
    prepared = prepare_campaign(campaign)
    ses_connection()  # made before the first slot (110-130 ms): a cold client makes the first sends late
    return Dispatcher(prepared, deadline=deadline).run()


def claim_size(rate: float) -> int:
    """At most about two seconds of the global rate per claim, so that work spreads over all the
    dispatchers of a campaign (e.g. at the SES sandbox's 1/s, two dispatchers get one each)."""
    return max(1, min(settings.SEND_BATCH_SIZE, math.ceil(rate * 2)))


@dataclass(slots=True)
class _Call:
    started: float
    recipient: Recipient
    token: str
    context: dict


class Dispatcher:
    """One dispatch task's send loop: claims in, SES calls out as threads come free, results back.

    - Messages are fed to the thread pool one by one, each after its slot of the global rate
      limiter (reserved a tenth of a second of the rate at a time), whenever fewer than
      ``SEND_THREADS`` calls are running; a call slower than ``STRAGGLER_SECONDS`` stops counting,
      so one slow or hung call never holds up the others (up to ``max_calls_in_flight``).
    - Results are recorded in small groups (``chunk_size`` results or ``COMMIT_SECONDS``).
    - Every ``heartbeat_interval`` the dispatcher renews the heartbeat of the claims it holds and
      learns which recipients it still holds; it never sends one it lost, and starts no call
      unless its last heartbeat is recent. Final writes are conditional on the claim token.
    - The next claim is taken before the current one runs out, so claims do not wait for each
      other either.
    """

    def __init__(self, prepared: CampaignMessage, *, deadline: float) -> None:
        self.prepared = prepared
        self.campaign_id = prepared.campaign.pk
        self.deadline = deadline
        self.rate = ratelimit.send_rate()
        self.group = ratelimit.chunk_size(self.rate, settings.SEND_BATCH_SIZE)
        self.claim_limit = claim_size(self.rate)
        self.threads = settings.SEND_THREADS
        self.max_in_flight = max_calls_in_flight()
        self.beat_every = heartbeat_interval()
        self.pending: deque[tuple[str, Recipient]] = deque()  # claimed, not yet sent
        self.held: dict[str, set[int]] = {}  # claim token -> recipients it holds that have no outcome yet
        self.in_flight: dict[Future, _Call] = {}  # oldest first
        self.finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self.results: list[Outcome] = []
        self.results_since = 0.0
        # The current slot of the limiter: messages it still lets go, its start, how many went.
        # A slot's messages leave evenly spaced; one that falls a slot's length behind (every
        # thread busy) gives up the rest of the slot, so late sends never pile onto later slots.
        self.slot = 0
        self.slot_start = 0.0
        self.slot_sent = 0
        # How late a slot's next message may be before the rest of the slot is given up: a slot's
        # length, but at least LATE_SECONDS (at high rates a slot is shorter than sending its
        # messages takes, and a new reservation per message would cost more than it smooths).
        self.slot_late = max(self.group / self.rate, LATE_SECONDS)
        self.date = ""
        self.beat_at = time.monotonic()
        self.checked_at = float("-inf")
        self.claim_after = float("-inf")
        self.ses_paused = False

    def run(self) -> str:
        try:
            while True:
                self._collect()
                self._commit_if_due()
                if time.monotonic() - self.beat_at >= self.beat_every:
                    self._beat()
                reason = self._stop_reason()
                if reason:
                    return self._wind_down(reason)
                if len(self.pending) <= self.group and time.monotonic() >= self.claim_after:
                    self._claim()
                if self.pending:
                    if not self._send_next():
                        self._collect(timeout=0.01)  # a call to end (or to turn straggler)
                elif self.in_flight or self.results:
                    self._collect(timeout=0.05)
                    self._commit()
                else:
                    finished = self._nothing_to_claim()
                    if finished:
                        return finished
        except BaseException:
            with contextlib.suppress(Exception):
                self._release_pending()
            raise

    # --- feeding

    def _claim(self) -> None:
        claimed = _with_database(lambda: claim(campaign_id=self.campaign_id, limit=self.claim_limit), what="claim")
        if not claimed:
            self.claim_after = time.monotonic() + 0.5
            return
        recipients = _with_database(
            lambda: list(Recipient.objects.filter(id__in=claimed.ids).select_related("contact").order_by("id")),
            what="claim",
        )
        self.held[claimed.token] = set(claimed.ids)
        recipients = _with_database(
            lambda: _skip_unreachable(self.prepared, claimed.token, recipients), what="skipping unreachable"
        )
        self.held[claimed.token] = {recipient.pk for recipient in recipients}
        self.pending.extend((claimed.token, recipient) for recipient in recipients)

    def _send_next(self) -> bool:
        """Start the next pending message's call; False if it must wait (no thread, stale beat)."""
        now = time.monotonic()
        if now - self.beat_at >= 2 * self.beat_every:
            self._beat()  # the database was slow or gone: make sure the claims are still ours
            if time.monotonic() - self.beat_at >= 2 * self.beat_every:
                return False
        if not self._has_thread(now):
            return False
        if self.slot and time.time() > self._due() + self.slot_late:
            self.slot = 0  # fell behind its slot (no thread was free): late sends would bunch up
        if self.slot == 0:
            count = min(self.group, len(self.pending))
            self.slot_start = _with_database(
                lambda: ratelimit.wait_for_slot(count, rate=self.rate), what="rate limiter"
            )
            self.slot, self.slot_sent = count, 0
            self.date = formatdate(usegmt=True)
            if shutdown.stop_requested():
                return True  # the loop winds down before sending anything more
        delay = self._due() - time.time()
        if delay > 0.0005:  # finer waits cost more than they smooth
            time.sleep(delay)  # message i of a slot leaves at its start + i / rate, not all at once
        token, recipient = self.pending.popleft()
        if recipient.pk not in self.held.get(token, ()):
            return True  # lost since it was claimed (requeued as stale): another dispatcher sends it
        context = self.prepared.context(recipient)
        message = self.prepared.build(recipient, context, self.date)
        future = _thread_pool().submit(_send_one, recipient, message)
        self.in_flight[future] = _Call(time.monotonic(), recipient, token, context)
        future.add_done_callback(self.finished.put)
        self.slot -= 1
        self.slot_sent += 1
        return True

    def _due(self) -> float:
        """When the next message of the current slot may leave (wall clock, like the limiter)."""
        return self.slot_start + self.slot_sent / self.rate

    def _has_thread(self, now: float) -> bool:
        running = len(self.in_flight)
        if running < self.threads:
            return True
        if running >= self.max_in_flight:
            return False
        stragglers = 0
        for call in self.in_flight.values():  # oldest first
            if now - call.started < STRAGGLER_SECONDS:
                break
            stragglers += 1
        return running - stragglers < self.threads

    # --- results

    def _collect(self, timeout: float = 0.0) -> None:
        try:
            future = self.finished.get(timeout=timeout) if timeout > 0 else self.finished.get_nowait()
        except queue.Empty:
            return
        if not self.results:
            self.results_since = time.monotonic()
        while True:
            call = self.in_flight.pop(future)
            outcome = future.result()  # _send_one returns every error as an outcome
            outcome.token, outcome.context = call.token, call.context
            self.results.append(outcome)
            try:
                future = self.finished.get_nowait()
            except queue.Empty:
                return

    def _commit_if_due(self) -> None:
        if self.results and (
            len(self.results) >= self.group or time.monotonic() - self.results_since >= COMMIT_SECONDS
        ):
            self._commit()

    def _commit(self) -> None:
        outcomes, self.results = self.results, []
        if not outcomes:
            return
        campaign = self.prepared.campaign
        keep_going = _with_database(lambda: _record(campaign, outcomes), what="recording SES's answers")
        for outcome in outcomes:
            self.held.get(outcome.token, set()).discard(outcome.recipient.pk)
        self.held = {token: ids for token, ids in self.held.items() if ids}
        if not keep_going:
            self.ses_paused = True

    # --- ownership

    def _beat(self) -> None:
        """Renew our claims, drop what we lost, and requeue claims of dead dispatchers."""
        started = time.monotonic()
        held = _with_database(lambda: heartbeat(tokens=list(self.held)), what="heartbeat")
        self.beat_at = started
        lost = 0
        for token, ids in held.items():
            lost += len(self.held[token] - ids)
            self.held[token] &= ids
        if lost:
            logger.warning(
                "campaign %s: %s claimed recipients were requeued by others; not sending them", self.campaign_id, lost
            )
        _with_database(lambda: reclaim_stale(campaign_id=self.campaign_id), what="requeueing stale claims")

    # --- stopping

    def _stop_reason(self) -> str:
        if shutdown.stop_requested():
            return "shutdown"
        if self.ses_paused:
            return "stopped"
        now = time.monotonic()
        if now >= self.deadline:
            return "deadline"
        if now - self.checked_at >= STATUS_CHECK_SECONDS:
            self.checked_at = now
            if not _with_database(lambda: _still_sending(self.campaign_id), what="campaign status"):
                return "stopped"
        return ""

    def _nothing_to_claim(self) -> str:
        """Nothing claimable and nothing of ours in flight: done, or wait for retries that are not
        due yet and for other dispatchers' calls (requeueing their claims if they die)."""
        campaign_id = self.campaign_id
        if _with_database(lambda: campaign_finish_if_done(campaign_id=campaign_id), what="finishing"):
            return "finished"
        waiting = Recipient.objects.filter(campaign_id=campaign_id)
        queued = _with_database(lambda: waiting.filter(status=Recipient.Status.QUEUED).exists(), what="queue")
        if not queued and not _with_database(
            lambda: waiting.filter(status=Recipient.Status.SENDING).exists(), what="queue"
        ):
            return "idle"
        time.sleep(max(0.0, min(0.5, self.deadline - time.monotonic())))
        self.claim_after = float("-inf")
        return ""

    def _wind_down(self, reason: str) -> str:
        """Give back what was not sent, let the calls in flight end (answered or abandoned at the
        SES timeouts), record them all, then say why the task ends.

        At the deadline, and when the worker is stopping (SIGTERM), a new task takes this one's
        place if recipients are still queued: it is enqueued before the calls in flight end, so
        that a free worker (of this cluster or, when this one stops, of another) carries on at
        once. A stopping cluster's pusher stops first, so the new task waits in the broker.
        """
        self._release_pending()
        continued = False
        if reason in {"deadline", "shutdown"}:
            campaign_id = self.campaign_id
            queued = Recipient.objects.filter(campaign_id=campaign_id, status=Recipient.Status.QUEUED)
            if _with_database(queued.exists, what="queue"):
                dispatchers_start(campaign_id=campaign_id, count=1)
                continued = True
        while self.in_flight:
            self._collect(timeout=0.1)
            self._commit_if_due()
            if time.monotonic() - self.beat_at >= self.beat_every:
                self._beat()
        self._collect()
        self._commit()
        if reason == "stopped" or self.ses_paused:
            return "stopped"
        campaign_id = self.campaign_id
        if not continued:
            if _with_database(lambda: campaign_finish_if_done(campaign_id=campaign_id), what="finish"):
                return "finished"
            in_flight = Recipient.objects.filter(campaign_id=campaign_id, status=Recipient.Status.SENDING)
            if reason == "deadline" and _with_database(in_flight.exists, what="queue"):
                # Others' claims are still out: keep watching them, to requeue them if their
                # owner died (they end or go stale within SEND_STALE_SECONDS).
                dispatchers_start(campaign_id=campaign_id, count=1)
                continued = True
        if reason == "shutdown":
            return "stopped"
        return "continued" if continued else "idle"

    def _release_pending(self) -> None:
        unsent: dict[str, list[int]] = {}
        for token, recipient in self.pending:
            if recipient.pk in self.held.get(token, ()):
                unsent.setdefault(token, []).append(recipient.pk)
        self.pending.clear()
        self.slot = 0
        for token, ids in unsent.items():
            _with_database(
                lambda token=token, ids=ids: release(campaign_id=self.campaign_id, token=token, ids=ids),
                what="releasing unsent recipients",
            )
            self.held[token] -= set(ids)


def _still_sending(campaign_id: int) -> bool:
    updated = Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.SENDING).update(
        heartbeat_at=timezone.now()
    )
    return bool(updated)


def _skip_unreachable(prepared: CampaignMessage, token: str, recipients: list[Recipient]) -> list[Recipient]:
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
            moved = Recipient.objects.filter(id__in=skipped, claim_token=token, status=Recipient.Status.SENDING).update(
                status=Recipient.Status.SKIPPED,
                error="Unsubscribed or suppressed after the snapshot",
                claimed_at=None,
                claim_token=None,
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


def _send_one(recipient: Recipient, message) -> Outcome:
    try:
        ses_connection().send_messages([message])
    except Exception as error:  # classified below; nothing may escape a worker thread
        return classify_error(error, recipient)
    return Outcome(recipient, "sent", message_id=message.extra_headers.get("message_id", ""))


# --- recording ---------------------------------------------------------------------------------


def _record(campaign: Campaign, outcomes: list[Outcome]) -> bool:
    """Write a group of results in one transaction. False if SES asked to pause.

    post_office gets an ``Email`` (template + context: rendered on delivery) and a ``Log`` for
    every message SES accepted or refused for good; retries get theirs when they are final.
    Every write is conditional on the recipient's claim token, and the counters move by the rows
    actually written: a result for a recipient whose claim moved on changes nothing (its Email
    is dropped; the SES message id is logged, as that recipient gets the message twice).
    """
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
                    context=outcome.context,
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
        written = _write_final(final, outbox, now)
        _drop_unwritten(campaign, final, outbox, written)
        sent = sum(status == Recipient.Status.SENT for status in written.values())
        CampaignStats.outcomes_add(campaign.pk, sent=sent, failed=len(written) - sent)
        _write_retries(campaign.pk, again, now)
    if pause_reasons:
        try:
            campaign_pause(campaign_id=campaign.pk, reason=pause_reasons[0])
        except CampaignError:
            pass  # already paused or cancelled by someone else
        return False
    return True


def _write_final(final: list[Outcome], outbox: list[OutboxEmail], now) -> dict[int, str]:
    """Sent and failed recipients in one UPDATE … FROM (VALUES …) … RETURNING (PostgreSQL and
    SQLite >= 3.35); returns {recipient id: status} for the rows written.

    A row is written only under the claim that made the call, while it is in flight or requeued
    as stale but not yet claimed again (its owner was only cut off: what SES accepted counts).
    """
    if not final:
        return {}
    table = connection.ops.quote_name(Recipient._meta.db_table)
    rows, params = [], []
    for outcome, email in zip(final, outbox, strict=True):
        rows.append("(CAST(%s AS BIGINT), %s, %s, %s, CAST(%s AS BIGINT), %s)")
        status = Recipient.Status.SENT if outcome.kind == "sent" else Recipient.Status.FAILED
        params += [
            outcome.recipient.pk,
            str(status),
            outcome.message_id or None,
            outcome.reason[:500],
            email.pk,
            outcome.token,
        ]
    sql = (
        f"UPDATE {table} SET status = v.column2, ses_message_id = v.column3, error = v.column4, "
        f"outbox_email_id = v.column5, claimed_at = NULL, claim_token = NULL, "
        f"sent_at = CASE WHEN v.column2 = 'sent' THEN %s ELSE {table}.sent_at END "
        f"FROM (SELECT * FROM (VALUES {', '.join(rows)}) AS vals) AS v "
        f"WHERE {table}.id = v.column1 AND {table}.claim_token = v.column6 AND {table}.status IN (%s, %s) "
        "RETURNING id, status"
    )
    in_flight = [str(Recipient.Status.SENDING), str(Recipient.Status.QUEUED)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [_database_datetime(now), *params, *in_flight])
        return dict(cursor.fetchall())


def _drop_unwritten(campaign: Campaign, final: list[Outcome], outbox: list[OutboxEmail], written: dict) -> None:
    lost = [
        (outcome, email) for outcome, email in zip(final, outbox, strict=True) if outcome.recipient.pk not in written
    ]
    if not lost:
        return
    OutboxEmail.objects.filter(pk__in=[email.pk for _, email in lost]).delete()
    logger.warning(
        "campaign %s: results for %s recipients not written: their claim moved on (or this group was written "
        "already before the connection broke); SES message ids %s",
        campaign.pk,
        len(lost),
        ", ".join(outcome.message_id or "-" for outcome, _ in lost),
    )


def _write_retries(campaign_id: int, again: list[Outcome], now) -> None:
    """Back to the queue with a delay, still under their claim (or skipped if cancelled meanwhile)."""
    if not again:
        return
    owned = Q(pk__in=[])
    for outcome in again:
        owned |= Q(pk=outcome.recipient.pk, claim_token=outcome.token)
    held = Recipient.objects.filter(owned, status=Recipient.Status.SENDING)
    if _skipped_if_cancelled(campaign_id, held):
        return
    for outcome in again:
        recipient = outcome.recipient
        attempts = recipient.attempts - (0 if outcome.counts_as_attempt and outcome.kind == "retry" else 1)
        Recipient.objects.filter(pk=recipient.pk, claim_token=outcome.token, status=Recipient.Status.SENDING).update(
            status=Recipient.Status.QUEUED,
            error=outcome.reason,
            claimed_at=None,
            claim_token=None,
            not_before=now + timedelta(seconds=outcome.delay),
            attempts=max(attempts, 0),
        )


def heartbeat_grace() -> int:
    """Seconds without a dispatcher beating a campaign after which the tick starts new dispatchers.

    A live dispatcher beats every quarter second and hands over to its continuation every
    ``SEND_TASK_SECONDS``, so twice that is generous (dead dispatchers that held claims are
    noticed sooner: ``campaigns_with_silent_claims``).
    """
    return settings.SEND_TASK_SECONDS * 2 + 10
