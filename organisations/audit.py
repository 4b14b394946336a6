"""The audit log's one writer: who did what, when, from which address, in which organisation."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.http import HttpRequest

from organisations.models import AuditEntry, Organisation

Action = AuditEntry.Action


def remote_address(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    return (request.META.get("REMOTE_ADDR") or "")[:64]


def record(
    request: HttpRequest | None,
    action: str,
    summary: str,
    *,
    organisation: Organisation | None = None,
    user=None,
    object_type: str = "",
    object_id: object = "",
    rows: int | None = None,
) -> AuditEntry:
    """Append one entry. ``organisation`` and ``user`` default to the request's."""
    if organisation is None and request is not None:
        organisation = getattr(request, "organisation", None)
    if user is None and request is not None:
        user = getattr(request, "user", None)
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    return AuditEntry.objects.create(
        organisation=organisation,
        user=user,
        username=(user.get_username() if user is not None else "")[:150],
        action=action,
        summary=summary[:500],
        object_type=object_type[:40],
        object_id=str(object_id)[:40],
        rows=rows,
        remote_address=remote_address(request),
    )


def _organisations_of(user) -> list[Organisation | None]:
    """A login is shown in the log of each organisation the user belongs to (operators see all)."""
    found = list(Organisation.objects.filter(memberships__user=user).distinct()) if user is not None else []
    return found or [None]


def _logged_in(sender, request, user, **kwargs) -> None:
    for organisation in _organisations_of(user):
        record(request, Action.LOGIN, f"{user.get_username()} logged in", organisation=organisation, user=user)


def _logged_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        for organisation in _organisations_of(user):
            record(request, Action.LOGOUT, f"{user.get_username()} logged out", organisation=organisation, user=user)


def _login_failed(sender, credentials, request=None, **kwargs) -> None:
    username = str(credentials.get("username", ""))[:150]
    named = get_user_model().objects.filter(username=username).first()
    for organisation in _organisations_of(named):
        record(request, Action.LOGIN_FAILED, f"Failed login as “{username}”", organisation=organisation)


def connect_login_signals() -> None:
    user_logged_in.connect(_logged_in, dispatch_uid="audit_login")
    user_logged_out.connect(_logged_out, dispatch_uid="audit_logout")
    user_login_failed.connect(_login_failed, dispatch_uid="audit_login_failed")
