"""Login throttling around django-axes: the client's address, the lock-out page and its log lines.

django-axes counts failed logins in the database (so every web process sees the same count) and
refuses a login, even with the right password, once a username or an address has
``LOGIN_FAILURE_LIMIT`` failures within ``LOGIN_LOCKOUT_MINUTES``. The lock-out ends
``LOGIN_LOCKOUT_MINUTES`` after the last counted failure; attempts during a lock-out are not
counted (``AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False``), so the time the page promises
holds. What this module adds:

- the address behind our TLS proxy (``client_ip_address``): without it every visitor has the
  proxy's address and ten typos by anyone would lock everybody out;
- a lock-out page that says until when (``lockout_response``), answered with 429;
- log lines naming the username and the address when a lock-out starts and when it has ended
  (``LoginAttemptHandler``; axes' own lines mask both).
"""

from __future__ import annotations

import ipaddress
import logging
import math
from dataclasses import dataclass
from datetime import datetime

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lockout:
    kind: str  # "username" or "address"
    value: str
    failures: int
    ends_at: datetime


def client_ip_address(request: HttpRequest) -> str:
    """The visitor's address: behind the TLS proxy, the one the proxy appended to X-Forwarded-For.

    Only the last entry is the proxy's own; earlier ones come from the client and can be forged.
    """
    if settings.BEHIND_TLS_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        if _is_ip_address(forwarded):
            return forwarded
    address = request.META.get("REMOTE_ADDR", "")
    return address if _is_ip_address(address) else "0.0.0.0"


def _is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def active_lockouts(*, username: str | None, address: str | None, at: datetime) -> list[Lockout]:
    """The lock-outs in force at ``at`` for this username and this address (each counted on its own)."""
    since = at - settings.AXES_COOLOFF_TIME
    lockouts = []
    for kind, field, value in (("username", "username", username), ("address", "ip_address", address)):
        if not value:
            continue
        totals = AccessAttempt.objects.filter(**{field: value}, attempt_time__gte=since).aggregate(
            failures=Sum("failures_since_start"), last=Max("attempt_time")
        )
        if (totals["failures"] or 0) >= settings.AXES_FAILURE_LIMIT:
            lockouts.append(Lockout(kind, value, totals["failures"], totals["last"] + settings.AXES_COOLOFF_TIME))
    return lockouts


class LoginAttemptHandler(AxesDatabaseHandler):
    """axes' database handler, logging the start and the end of each lock-out in plain words."""

    def user_login_failed(self, sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
        # axes' backend marks a request refused because of a lock-out already in force.
        already_locked = bool(getattr(request, "axes_locked_out", False))
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is None or not getattr(request, "axes_locked_out", False):
            return
        username = get_client_username(request, credentials)
        for lockout in active_lockouts(username=username, address=request.axes_ip_address, at=timezone.now()):
            if already_locked:
                log.info("Login refused: %s %r is locked out until %s.", lockout.kind, lockout.value, lockout.ends_at)
            else:
                log.warning(
                    "Login locked out: %s %r after %d failed logins, until %s (username %r from %s).",
                    lockout.kind,
                    lockout.value,
                    lockout.failures,
                    lockout.ends_at,
                    username,
                    request.axes_ip_address,
                )

    def clean_expired_user_attempts(self, request: HttpRequest | None = None, credentials: dict | None = None) -> int:
        """Before axes deletes expired failures, log the lock-outs they had caused as ended."""
        if request is not None and getattr(request, "axes_attempt_time", None):
            threshold = request.axes_attempt_time - settings.AXES_COOLOFF_TIME
            expired = AccessAttempt.objects.filter(attempt_time__lte=threshold)
            for kind, field in (("username", "username"), ("address", "ip_address")):
                ended = (
                    expired.exclude(**{f"{field}__isnull": True})
                    .values(field)
                    .annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
                    .filter(failures__gte=settings.AXES_FAILURE_LIMIT)
                )
                for row in ended:
                    log.warning(
                        "Login lock-out ended: %s %r may log in again since %s.",
                        kind,
                        row[field],
                        row["last"] + settings.AXES_COOLOFF_TIME,
                    )
        return super().clean_expired_user_attempts(request, credentials)


def lockout_message(lockouts: list[Lockout], *, now: datetime) -> str:
    if not lockouts:  # e.g. the failures expired between the check and this page
        return "Too many failed logins. Wait a few minutes, then try again."
    ends_at = max(lockout.ends_at for lockout in lockouts)
    local = timezone.localtime(ends_at)
    minutes = max(1, math.ceil((ends_at - now).total_seconds() / 60))
    who = " and ".join(
        "for this username" if lockout.kind == "username" else "from your network address" for lockout in lockouts
    )
    return (
        f"Too many failed logins {who}. Logging in is blocked until {local:%H:%M} {local.tzname()} "
        f"(in about {minutes} minute{'s' if minutes != 1 else ''}); until then even the right password "
        "will not work. Try again after that time, or ask an administrator to unlock you sooner."
    )


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """The login page again, with 429 Too Many Requests and when to try again (AXES_LOCKOUT_CALLABLE)."""
    now = timezone.now()
    username = get_client_username(request, credentials)
    lockouts = active_lockouts(username=username, address=getattr(request, "axes_ip_address", None), at=now)
    context = {"lockout_message": lockout_message(lockouts, now=now), "next": request.POST.get("next", "")}
    response = render(request, "registration/login.html", context, status=429)
    if lockouts:
        wait = max(lockout.ends_at for lockout in lockouts) - now
        response["Retry-After"] = str(max(1, math.ceil(wait.total_seconds())))
    return response
