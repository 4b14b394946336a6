"""API keys: create, revoke, authenticate, and the per-key rate limit.

A key is ``cm_`` + 8 characters of prefix + ``_`` + 43 random characters. Only its SHA-256 is
stored (a key has 256 random bits, so a fast hash is enough); the prefix is kept to recognise it.
Every create, revoke and failed authentication is in the audit log.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.http import HttpRequest
from django.utils import timezone

from api.models import KEY_ROLES, ApiKey
from organisations import audit
from organisations.models import Organisation, Role

KEY_PREFIX = "cm_"
WINDOW = timedelta(minutes=1)
# last_used_at is written at most this often per key: not one write per request.
LAST_USED_STEP = timedelta(minutes=1)


class KeyRefused(Exception):
    """A key cannot be created or revoked; the message says why, in the user's words."""


def key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def api_key_create(
    *,
    organisation: Organisation,
    role: str,
    name: str,
    created_by=None,
    expires_at: datetime | None = None,
    request: HttpRequest | None = None,
) -> tuple[ApiKey, str]:
    """A new key; the raw key is returned once and never stored."""
    if role not in {value for value, _ in KEY_ROLES}:
        raise KeyRefused(f"“{role}” is not a role for a key: use viewer, editor or sender.")
    name = name.strip()
    if not name:
        raise KeyRefused("Give the key a name that says which program uses it.")
    if expires_at is not None and expires_at <= timezone.now():
        raise KeyRefused("The expiry date is in the past: choose a later one, or none.")
    prefix = secrets.token_hex(4)
    raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        organisation=organisation,
        name=name[:100],
        role=role,
        prefix=KEY_PREFIX + prefix,
        key_hash=key_hash(raw),
        created_by=created_by,
        expires_at=expires_at,
    )
    audit.record(
        request,
        audit.Action.API_KEY,
        f"Created API key “{key.name}” ({key.prefix}…, {Role(role).label})",
        organisation=organisation,
        user=created_by,
        object_type="apikey",
        object_id=key.pk,
    )
    return key, raw


def api_key_revoke(*, key: ApiKey, request: HttpRequest | None = None, user=None) -> ApiKey:
    if key.revoked_at is not None:
        raise KeyRefused(f"The key “{key.name}” was already revoked.")
    key.revoked_at = timezone.now()
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=key.revoked_at)
    audit.record(
        request,
        audit.Action.API_KEY,
        f"Revoked API key “{key.name}” ({key.prefix}…)",
        organisation=key.organisation,
        user=user,
        object_type="apikey",
        object_id=key.pk,
    )
    return key


def api_key_authenticate(raw: str, request: HttpRequest) -> ApiKey | None:
    """The active key for ``raw``, or None (and an audit entry saying why)."""
    key = ApiKey.objects.select_related("organisation").filter(key_hash=key_hash(raw)).first()
    now = timezone.now()
    reason = None
    if key is None:
        reason = "an unknown key"
    elif key.revoked_at is not None:
        reason = f"the revoked key “{key.name}” ({key.prefix}…)"
    elif key.expires_at is not None and key.expires_at <= now:
        reason = f"the expired key “{key.name}” ({key.prefix}…)"
    elif not key.organisation.is_active:
        reason = f"the key “{key.name}” ({key.prefix}…) of a switched-off organisation"
    if reason is not None:
        audit.record(
            request,
            audit.Action.API_AUTH_FAILED,
            f"API request to {request.path[:200]} with {reason}",
            organisation=key.organisation if key is not None else None,
            object_type="apikey",
            object_id=key.pk if key is not None else "",
        )
        return None
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_STEP:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def api_key_allow(key: ApiKey) -> int | None:
    """Count one request against the key's limit (API_RATE_LIMIT a minute): None when allowed,
    else the seconds until the window ends (for Retry-After). Conditional updates, so that
    several web processes share one count."""
    now = timezone.now()
    limit = settings.API_RATE_LIMIT
    window_start = now - WINDOW
    # A new window when the last one has ended (or there was none).
    if (
        ApiKey.objects.filter(pk=key.pk)
        .filter(Q(window_started_at__isnull=True) | Q(window_started_at__lte=window_start))
        .update(window_started_at=now, window_requests=1)
    ):
        return None
    if ApiKey.objects.filter(pk=key.pk, window_started_at__gt=window_start, window_requests__lt=limit).update(
        window_requests=F("window_requests") + 1
    ):
        return None
    started = ApiKey.objects.filter(pk=key.pk).values_list("window_started_at", flat=True).first() or now
    return max(1, math.ceil((started + WINDOW - now).total_seconds()))
