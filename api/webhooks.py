"""Webhooks out: each organisation's mail events, POSTed as signed JSON to the endpoints its
administrators register.

The scheme (README, "Webhooks"): one POST carries a batch of up to ``BATCH_SIZE`` items of the
events feed (``api.feed``) as ``{"id": …, "events": [{"cursor", "type", "occurred_at", "data"}]}``
with the headers ``Cobalt-Webhook-Id`` (the batch's id, the same on every retry),
``Cobalt-Webhook-Timestamp`` (Unix seconds) and ``Cobalt-Signature: v1=<hex>``, the HMAC-SHA256 of
``"<timestamp>.<body>"`` keyed with the endpoint's secret. Any 2xx answer is delivered; anything
else, or no answer within ``WEBHOOK_TIMEOUT``, is retried after 10 s, 20 s, 40 s … (at most an
hour apart). An endpoint that has failed for ``WEBHOOK_DISABLE_AFTER_HOURS`` is disabled, audited,
and its administrators are emailed.

Nothing lost, nothing sent twice: each endpoint keeps its own feed cursor, moved past a batch only
when the batch was answered with 2xx, and batches go out in order (a failing batch holds back
the ones after it). A batch is sent again only on a retry: when the endpoint did not answer
2xx, or when it answered after our timeout, or when this worker died between the answer and
the cursor's write. Receivers deduplicate on the batch id or on each item's cursor.

Two workers at once: a worker leases an endpoint with a conditional UPDATE (free or expired lease,
due now) and checks the row count; every later write is conditional on its lease token. Works the
same on SQLite and PostgreSQL, without holding a row lock during the HTTP call.

Server-side request forgery: the endpoint's name is resolved at registration and again at each
delivery (DNS can change); every address must be public unless ``WEBHOOK_ALLOW_PRIVATE`` is on,
and the connection goes to the address that was checked (``campaigns.composer.linkcheck`` does the
same for links).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import F, Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from post_office.models import STATUS as OUTBOX_STATUS
from post_office.models import Email as OutboxEmail
from post_office.models import Log as OutboxLog

from api.feed import FEED_TYPES, FeedItem, feed_after, feed_start
from api.models import WebhookDelivery, WebhookEndpoint
from campaigns.composer.linkcheck import PinnedHTTPConnection, PinnedHTTPSConnection, address_is_public
from campaigns.delivery.ses import ses_connection
from organisations import audit
from organisations.models import Organisation, Role

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status

SECRET_PREFIX = "whsec_"
BATCH_SIZE = 100
FIRST_RETRY = timedelta(seconds=10)
LONGEST_RETRY = timedelta(hours=1)
# One run of the tick works this long at most; the next tick (half a minute later) goes on.
TICK_SECONDS = 20.0
USER_AGENT = "CobaltMail-Webhooks/1.0"
MAX_ENDPOINTS = 20  # per organisation


class WebhookRefused(Exception):
    """An endpoint cannot be registered or changed; the message says why, in the user's words."""


# --- signing --------------------------------------------------------------------------------------


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``Cobalt-Signature`` value: ``v1=`` + hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def webhook_secret_new() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


# --- addresses ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # IDNA ASCII, for the Host header and TLS
    port: int
    path: str  # path and query, as sent


def webhook_url_parse(url: str, *, allow_private: bool) -> Target:
    """The parts of an endpoint's address; raises ``WebhookRefused`` with words for a person."""
    url = url.strip()
    if not url:
        raise WebhookRefused("Enter the endpoint's address, e.g. https://members.example.org/hooks/cobalt.")
    if len(url) > 500:
        raise WebhookRefused("The address is longer than 500 characters.")
    if any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise WebhookRefused("The address holds spaces or control characters.")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise WebhookRefused("The address must start with https:// (webhooks are sent over the web only).")
    if scheme == "http" and not allow_private:
        raise WebhookRefused("Use an https:// address: events hold members' email addresses.")
    if parts.username or parts.password:
        raise WebhookRefused("Leave user names and passwords out of the address: deliveries are signed instead.")
    try:
        host = (parts.hostname or "").encode("idna").decode("ascii")
        port = parts.port or (443 if scheme == "https" else 80)
    except (UnicodeError, ValueError):
        raise WebhookRefused("The address has an invalid site name or port.") from None
    if not host:
        raise WebhookRefused("The address has no site name.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, host, port, path)


def webhook_resolve(target: Target, *, allow_private: bool) -> str:
    """The address to connect to. Every address the name has must be public (see the module doc)."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WebhookRefused(f"The name {target.host} was not found: is the address spelt right?") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise WebhookRefused(f"The name {target.host} has no address.")
    if not allow_private:
        for address in addresses:
            if not address_is_public(address):
                raise WebhookRefused(
                    f"{target.host} is on a private, local or reserved network ({address.split('%')[0]}): "
                    "webhooks go to addresses on the public internet only."
                )
    return addresses[0]


# --- the administrators' actions ------------------------------------------------------------------


def webhook_endpoint_create(
    *,
    organisation: Organisation,
    url: str,
    event_types: list[str],
    description: str = "",
    created_by=None,
    request: HttpRequest | None = None,
) -> WebhookEndpoint:
    """A new endpoint that gets the organisation's events from now on (its secret is on the row)."""
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE
    url = url.strip()
    webhook_resolve(webhook_url_parse(url, allow_private=allow_private), allow_private=allow_private)
    chosen = [name for name in FEED_TYPES if name in set(event_types)]
    unknown = sorted(set(event_types) - set(FEED_TYPES))
    if unknown:
        raise WebhookRefused(f"Unknown event types: {', '.join(unknown)}. Choose from {', '.join(FEED_TYPES)}.")
    if not chosen:
        raise WebhookRefused("Choose at least one kind of event to send.")
    if WebhookEndpoint.objects.filter(organisation=organisation).count() >= MAX_ENDPOINTS:
        raise WebhookRefused(f"An organisation can have {MAX_ENDPOINTS} endpoints at most: delete one first.")
    endpoint = WebhookEndpoint.objects.create(
        organisation=organisation,
        url=url,
        description=description.strip()[:100],
        event_types=chosen,
        secret=webhook_secret_new(),
        cursor=feed_start(organisation),
        created_by=created_by,
    )
    _audit(request, endpoint, f"Registered webhook endpoint {url[:300]} ({', '.join(chosen)})", user=created_by)
    return endpoint


def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, request: HttpRequest | None = None) -> None:
    if not endpoint.is_active:
        raise WebhookRefused("The endpoint is already disabled.")
    reason = "Disabled by an administrator."
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        is_active=False, disabled_at=timezone.now(), disabled_reason=reason
    )
    _audit(request, endpoint, f"Disabled webhook endpoint {endpoint.url[:300]}")


def webhook_endpoint_enable(*, endpoint: WebhookEndpoint, request: HttpRequest | None = None) -> None:
    """On again, from where it stopped: the items owed since then are sent too, a batch at a time."""
    if endpoint.is_active:
        raise WebhookRefused("The endpoint is already enabled.")
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE
    webhook_url_parse(endpoint.url, allow_private=allow_private)  # the setting may have changed since
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        is_active=True, disabled_at=None, disabled_reason="", next_attempt_at=None, failing_since=None
    )
    _audit(request, endpoint, f"Enabled webhook endpoint {endpoint.url[:300]}")


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, request: HttpRequest | None = None) -> None:
    _audit(request, endpoint, f"Deleted webhook endpoint {endpoint.url[:300]}")
    endpoint.delete()


def webhook_secret_renew(*, endpoint: WebhookEndpoint, request: HttpRequest | None = None) -> str:
    """A new secret, used from the next delivery on; the old one stops working at once."""
    secret = webhook_secret_new()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret=secret)
    _audit(request, endpoint, f"Renewed the signing secret of webhook endpoint {endpoint.url[:300]}")
    return secret


def _audit(request: HttpRequest | None, endpoint: WebhookEndpoint, summary: str, *, user=None) -> None:
    audit.record(
        request,
        audit.Action.ORGANISATION,
        summary,
        organisation=endpoint.organisation,
        user=user,
        object_type="webhook",
        object_id=endpoint.pk,
    )


# --- delivering -----------------------------------------------------------------------------------


def webhooks_run(*, seconds: float = TICK_SECONDS) -> dict:
    """Send what is due to every active endpoint, for ``seconds`` at most (the tick's work)."""
    deadline = time.monotonic() + seconds
    now = timezone.now()
    due = (
        WebhookEndpoint.objects.filter(is_active=True, organisation__is_active=True)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        # Endpoints with nothing failing first (NULL), then the longest-waiting retries.
        .order_by(F("next_attempt_at").asc(nulls_first=True), "pk")
        .values_list("pk", flat=True)
    )
    totals = {"endpoints": 0, "delivered": 0, "failed": 0}
    for endpoint_id in list(due):
        if time.monotonic() >= deadline:
            break
        try:
            outcome = webhook_endpoint_run(endpoint_id=endpoint_id, deadline=deadline)
        except Exception:  # one endpoint's trouble must not hold back the others; the log has it
            logger.exception("webhook endpoint %s: the run failed", endpoint_id)
            continue
        totals["endpoints"] += outcome is not None
        if outcome is not None:
            totals["delivered"] += outcome[0]
            totals["failed"] += outcome[1]
    return totals


def webhook_endpoint_run(*, endpoint_id: int, deadline: float) -> tuple[int, int] | None:
    """Lease the endpoint and send its owed batches in order until none is left, one fails, or
    ``deadline`` (time.monotonic) passes. Returns (batches delivered, batches failed), or None
    when another worker holds it or it is not due."""
    token = secrets.token_hex(8)
    now = timezone.now()
    lease = timedelta(seconds=max(0.0, deadline - time.monotonic()) + settings.WEBHOOK_TIMEOUT + 30)
    taken = (
        WebhookEndpoint.objects.filter(pk=endpoint_id, is_active=True)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claim_token=token, claimed_until=now + lease)
    )
    if not taken:
        return None
    delivered = failed = 0
    try:
        while time.monotonic() < deadline:
            endpoint = WebhookEndpoint.objects.select_related("organisation").filter(pk=endpoint_id).first()
            if endpoint is None or endpoint.claim_token != token or not endpoint.is_active:  # deleted, lost, off
                break
            delivery, items = _next_batch(endpoint)
            if delivery is None:
                break
            if _attempt(endpoint, delivery, items, token):
                delivered += 1
            else:
                failed += 1
                break
    finally:
        WebhookEndpoint.objects.filter(pk=endpoint_id, claim_token=token).update(claim_token="", claimed_until=None)
    return delivered, failed


def _next_batch(endpoint: WebhookEndpoint) -> tuple[WebhookDelivery | None, list[FeedItem]]:
    """The open batch (a retry: the same items again), else a new one from the endpoint's cursor."""
    delivery = (
        WebhookDelivery.objects.filter(endpoint=endpoint, status__in=[Status.PENDING, Status.RETRYING])
        .order_by("created_at", "pk")
        .first()
    )
    if delivery is not None:
        items = feed_after(
            endpoint.organisation, after=delivery.after_cursor, types=endpoint.event_types, limit=BATCH_SIZE
        )
        # The same items as the first attempt: up to its last one (more may have been written since).
        cut = next((index for index, item in enumerate(items) if item.cursor == delivery.last_cursor), None)
        if cut is not None:
            return delivery, items[: cut + 1]
        if not items:  # nothing left to send (removed by retention): the batch is done
            WebhookDelivery.objects.filter(pk=delivery.pk).update(status=Status.DELIVERED, error="No items left.")
            return None, []
        return delivery, items
    items = feed_after(endpoint.organisation, after=endpoint.cursor, types=endpoint.event_types, limit=BATCH_SIZE)
    if not items:
        return None, []
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        delivery_id="wh_" + secrets.token_hex(12),
        after_cursor=endpoint.cursor,
        last_cursor=items[-1].cursor,
        item_count=len(items),
        event_types=", ".join(name for name in FEED_TYPES if any(item.type == name for item in items))[:200],
    )
    return delivery, items


def webhook_body(delivery: WebhookDelivery, items: list[FeedItem]) -> bytes:
    events = [
        {"cursor": item.cursor, "type": item.type, "occurred_at": item.occurred_at.isoformat(), "data": item.data}
        for item in items
    ]
    return json.dumps({"id": delivery.delivery_id, "events": events}, separators=(",", ":"), default=str).encode()


def _attempt(endpoint: WebhookEndpoint, delivery: WebhookDelivery, items: list[FeedItem], token: str) -> bool:
    """POST the batch once and record the outcome; True when it was delivered."""
    body = webhook_body(delivery, items)
    status, error = webhook_post(endpoint.url, body, delivery_id=delivery.delivery_id, secret=endpoint.secret)
    now = timezone.now()
    attempts = delivery.attempts + 1
    if status is not None and 200 <= status < 300:
        with transaction.atomic():
            moved = WebhookEndpoint.objects.filter(pk=endpoint.pk, claim_token=token).update(
                cursor=delivery.last_cursor, failing_since=None, next_attempt_at=None
            )
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                status=Status.DELIVERED if moved else Status.RETRYING,
                attempts=attempts,
                last_attempt_at=now,
                delivered_at=now if moved else None,
                next_attempt_at=None,
                response_code=status,
                error="" if moved else "Answered, but this worker had lost its lease: sent again.",
            )
        return bool(moved)
    delay = min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_RETRY)
    failing_since = endpoint.failing_since or now
    give_up = now - failing_since >= timedelta(hours=settings.WEBHOOK_DISABLE_AFTER_HOURS)
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=Status.FAILED if give_up else Status.RETRYING,
            attempts=attempts,
            last_attempt_at=now,
            next_attempt_at=None if give_up else now + delay,
            response_code=status,
            error=error[:300],
        )
        WebhookEndpoint.objects.filter(pk=endpoint.pk, claim_token=token).update(
            failing_since=failing_since, next_attempt_at=now + delay
        )
        if give_up:
            _disable_failing(endpoint, error, since=failing_since)
    if give_up:  # after the commit: the administrators are told what is already true
        webhook_failure_notify(endpoint_id=endpoint.pk)
    return False


def _disable_failing(endpoint: WebhookEndpoint, error: str, *, since: datetime) -> None:
    hours = settings.WEBHOOK_DISABLE_AFTER_HOURS
    reason = f"Failed for {hours} hours (since {since:%Y-%m-%d %H:%M} UTC); last error: {error}"[:300]
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        is_active=False, disabled_at=timezone.now(), disabled_reason=reason
    )
    _audit(None, endpoint, f"Disabled webhook endpoint {endpoint.url[:200]}: it failed for {hours} hours")


def webhook_failure_notify(*, endpoint_id: int) -> int:
    """Email the organisation's administrators that the endpoint was disabled; returns how many
    messages went out. Each is a post_office row with its status, sent through SES like test sends."""
    endpoint = WebhookEndpoint.objects.select_related("organisation").get(pk=endpoint_id)
    User = get_user_model()
    addresses = sorted(
        {
            address
            for address in User.objects.filter(
                is_active=True,
                memberships__organisation=endpoint.organisation,
                memberships__role=Role.ADMINISTRATOR,
            ).values_list("email", flat=True)
            if address
        }
    )
    page = settings.SITE_URL.rstrip("/") + reverse("webhooks:detail", args=[endpoint.pk])
    subject = f"Webhook endpoint disabled: {endpoint.url[:80]}"
    text = (
        f"Cobalt Mail stopped sending events of {endpoint.organisation.name} to\n\n  {endpoint.url}\n\n"
        f"because every delivery to it failed for {settings.WEBHOOK_DISABLE_AFTER_HOURS} hours.\n"
        f"{endpoint.disabled_reason}\n\n"
        "No events are lost: once the endpoint works again, enable it on its page and the events\n"
        f"since then are sent, oldest first:\n\n  {page}\n"
    )
    sent = 0
    for address in addresses:
        sent += _mail_one(address, subject, text)
    return sent


def _mail_one(address: str, subject: str, text: str) -> bool:
    outbox = OutboxEmail.objects.create(
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[address],
        subject=subject,
        message=text,
        status=OUTBOX_STATUS.queued,
        backend_alias=settings.POST_OFFICE["DEFAULT_MAILER"],
    )
    message = EmailMessage(subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[address])
    try:
        ses_connection().send_messages([message])
    except Exception as error:  # one address must not stop the rest; the outbox row keeps why
        logger.warning("webhook notice to %s not sent: %s", address, error)
        OutboxEmail.objects.filter(pk=outbox.pk).update(status=OUTBOX_STATUS.failed, last_updated=timezone.now())
        OutboxLog.objects.create(email=outbox, status=OUTBOX_STATUS.failed, message=str(error)[:255])
        return False
    OutboxEmail.objects.filter(pk=outbox.pk).update(status=OUTBOX_STATUS.sent, last_updated=timezone.now())
    OutboxLog.objects.create(
        email=outbox, status=OUTBOX_STATUS.sent, message=message.extra_headers.get("message_id", "")[:255]
    )
    return True


# --- one POST -------------------------------------------------------------------------------------


def webhook_post(url: str, body: bytes, *, delivery_id: str, secret: str) -> tuple[int | None, str]:
    """POST ``body`` signed; returns (status or None, plain words when it failed). Never raises.

    Redirects are not followed (a 3xx is a failure that names the new address), and only the
    status line is read.
    """
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE
    timeout = settings.WEBHOOK_TIMEOUT
    try:
        target = webhook_url_parse(url, allow_private=allow_private)
        address = webhook_resolve(target, allow_private=allow_private)
    except WebhookRefused as refusal:
        return None, f"Not sent: {refusal}"
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Cobalt-Webhook-Id": delivery_id,
        "Cobalt-Webhook-Timestamp": timestamp,
        "Cobalt-Signature": webhook_signature(secret, timestamp, body),
        "Connection": "close",
    }
    connection_class = PinnedHTTPSConnection if target.scheme == "https" else PinnedHTTPConnection
    connection = connection_class(target.host, target.port, address=address, timeout=timeout)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        status = response.status
        location = response.getheader("Location") or ""
    except TimeoutError:
        return None, f"No answer within {timeout:g} s."
    except ssl.SSLCertVerificationError:
        return None, "The endpoint's security certificate is not valid."
    except ConnectionRefusedError:
        return None, "Could not connect: the endpoint refused the connection."
    except (OSError, http.client.HTTPException) as error:
        return None, f"The endpoint did not answer properly ({type(error).__name__})."
    finally:
        connection.close()
    if 200 <= status < 300:
        return status, ""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "unknown status"
    if 300 <= status < 400:
        return status, f"Answered {status} {phrase} to {location[:150]}: register the final address instead."
    return status, f"Answered {status} {phrase}."
