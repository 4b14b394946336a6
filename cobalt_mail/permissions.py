"""Who may open which page: checked here, once per request, for every URL.

Every URL name has an entry in ``VIEW_ROLES``: public, any logged-in user, site operators only,
or the minimum role (``organisations.models.Role``) in the request's organisation for reading
(GET/HEAD) and for changing (any other method). A URL without an entry is refused, and a test
walks the URL resolver so that a new page cannot escape the table.

The middleware also resolves the request's organisation (``request.organisation``,
``request.role``, ``request.organisations`` for the navbar switcher); views scope every read by
it (``organisations.scope``). A user whose last membership was removed is logged out at their
next request.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import resolve
from django.urls.exceptions import Resolver404

from organisations.models import Role, role_at_least
from organisations.scope import access_for

PUBLIC = "public"  # no login: the SNS webhook, the recipients' pages, /health/ and /metrics
API = "api"  # /api/v1/: no login; an API key's role, checked by each API operation (api.auth)
API_NAMESPACE = "api-v1:"
LOGGED_IN = "logged-in"  # any logged-in user, member or not
OPERATOR = "operator"  # site operators (is_superuser) only

V, E, S, A = Role.VIEWER, Role.EDITOR, Role.SENDER, Role.ADMINISTRATOR


def _read_write(read: str, write: str | None = None) -> tuple[str, str]:
    return (read, write or read)


VIEW_ROLES: dict[str, tuple[str, str]] = {
    # -- public and account pages
    "login": _read_write(PUBLIC),
    "favicon": _read_write(PUBLIC),
    "tracking:ses_webhook": _read_write(PUBLIC),
    "campaigns:unsubscribe": _read_write(PUBLIC),
    "campaigns:preferences": _read_write(PUBLIC),
    "campaigns:resubscribe": _read_write(PUBLIC),
    "campaigns:layout_colours": _read_write(PUBLIC),
    "campaigns:view_online": _read_write(PUBLIC),
    "compose:campaign_image": _read_write(PUBLIC),  # images in campaigns: mail clients load them
    "health": _read_write(PUBLIC),  # pass/fail, ages and fixed phrases only
    "metrics": _read_write(PUBLIC),  # guarded by its own bearer token (METRICS_TOKEN) instead
    # The API's docs and OpenAPI document are pages for staff; its operations take a key (API).
    "api-v1:openapi-json": _read_write(LOGGED_IN),
    "api-v1:openapi-view": _read_write(LOGGED_IN),
    "logout": _read_write(LOGGED_IN),
    "admin": _read_write(OPERATOR),
    # -- the site
    "home": _read_write(V),
    "settings": _read_write(V),
    "organisations:switch": _read_write(V),
    "organisations:detail": _read_write(V, A),
    "organisations:members": _read_write(A),
    "organisations:member_role": _read_write(A),
    "organisations:member_remove": _read_write(A),
    "organisations:children": _read_write(A),
    "organisations:audit": _read_write(A),
    "organisations:audit_export": _read_write(A),
    "organisations:usage": _read_write(A),  # its own and its child organisations' (operators: all)
    "organisations:usage_export": _read_write(A),
    # A child organisation's quotas (the view checks the organisation is below the request's one).
    "organisations:quota": _read_write(A),
    # Sender identities: everyone sees which senders exist and what DNS still needs; administrators
    # add, check and remove them (SES calls, audited).
    "organisations:senders": _read_write(V, A),
    "organisations:sender_check": _read_write(A),
    "organisations:sender_remove": _read_write(A),
    "organisations:all": _read_write(OPERATOR),
    # Every organisation's bounce and complaint rates; lifting a sending hold (``?lift=<id>``, audited).
    "organisations:reputation": _read_write(OPERATOR),
    "api_keys:list": _read_write(A),
    "api_keys:revoke": _read_write(A),
    "webhooks:list": _read_write(A),
    "webhooks:detail": _read_write(A),
    "webhooks:disable": _read_write(A),
    "webhooks:enable": _read_write(A),
    "webhooks:renew_secret": _read_write(A),
    "webhooks:delete": _read_write(A),
    # -- audiences
    "audiences:index": _read_write(V),
    "audiences:contacts": _read_write(V, E),
    "audiences:contact_create": _read_write(E),
    "audiences:contacts_bulk": _read_write(E),
    "audiences:contacts_export": _read_write(E),
    "audiences:contact_edit": _read_write(V, E),
    "audiences:contact_delete": _read_write(E),
    "audiences:lists": _read_write(V, E),
    "audiences:list_detail": _read_write(V, E),
    "audiences:list_delete": _read_write(E),
    "audiences:list_export": _read_write(E),
    "audiences:segments": _read_write(V, E),
    "audiences:segment_create": _read_write(E),
    "audiences:segment_preview": _read_write(E),
    "audiences:segment_edit": _read_write(V, E),
    "audiences:segment_delete": _read_write(E),
    "audiences:segment_export": _read_write(E),
    "audiences:imports": _read_write(V, E),
    "audiences:import_detail": _read_write(V, E),
    "audiences:import_mapping": _read_write(E),
    "audiences:import_discard": _read_write(E),
    "audiences:import_progress": _read_write(V),
    "audiences:import_rejected": _read_write(E),
    # The suppression list is installation-wide: adding or removing an address changes every
    # organisation's sending, so it takes an administrator.
    "audiences:suppressions": _read_write(V, A),
    "audiences:suppression_remove": _read_write(A),
    # -- campaigns
    "campaigns:list": _read_write(V),
    "campaigns:create": _read_write(E),
    "campaigns:detail": _read_write(V, E),
    "campaigns:edit": _read_write(E),
    "campaigns:progress": _read_write(V),
    "campaigns:send": _read_write(S),
    "campaigns:schedule": _read_write(S),
    "campaigns:unschedule": _read_write(S),
    "campaigns:pause": _read_write(S),
    "campaigns:resume": _read_write(S),
    "campaigns:cancel": _read_write(S),
    "campaigns:duplicate": _read_write(E),
    "compose:preview": _read_write(V),
    "compose:preview_html": _read_write(V),
    "compose:test_send": _read_write(E),
    "compose:link_check": _read_write(E),
    "compose:link_results": _read_write(V),
    "compose:attachments": _read_write(V, E),
    "compose:attachment_delete": _read_write(E),
    "compose:save_template": _read_write(E),
    "compose:templates": _read_write(V, E),
    "compose:template_use": _read_write(E),
    "compose:layouts": _read_write(V, A),
    "compose:layout_create": _read_write(A),
    "compose:layout_edit": _read_write(A),
    "compose:layout_default": _read_write(A),
    "compose:layout_delete": _read_write(A),
    "compose:markdown": _read_write(E),
    "compose:image_upload": _read_write(E),
    # -- reports (a role on an organisation also shows its child organisations' campaign figures)
    "reports:index": _read_write(V),
    "reports:compare": _read_write(V),
    "reports:campaign": _read_write(V),
    "reports:campaign_live": _read_write(V),
    "reports:recipients": _read_write(V),
    "reports:recipients_export": _read_write(E),
    "reports:recipients_segment": _read_write(E),
    "reports:timeline": _read_write(V),
    "reports:senders": _read_write(V),
    "reports:messages": _read_write(V),
    "tracking:events": _read_write(V),
}

PUBLIC_URL_NAMES = frozenset(name for name, (read, _) in VIEW_ROLES.items() if read == PUBLIC)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def required_role(view_name: str | None, method: str) -> str | None:
    """The table's answer for a URL name and method; None: not in the table (refused)."""
    entry = VIEW_ROLES.get(view_name or "")
    if entry is None and view_name and view_name.startswith("admin:"):
        entry = VIEW_ROLES["admin"]
    if entry is None and view_name and view_name.startswith(API_NAMESPACE):
        entry = (API, API)
    if entry is None:
        return None
    return entry[0] if method in SAFE_METHODS else entry[1]


class OrganisationAccessMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.static_prefix = "/" + settings.STATIC_URL.lstrip("/")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        denial = self._deny(request)
        return denial or self.get_response(request)

    def _deny(self, request: HttpRequest) -> HttpResponse | None:
        request.organisation = request.role = None
        request.organisations = ()
        if request.path.startswith(self.static_prefix):
            return None
        try:
            view_name = resolve(request.path_info).view_name
        except Resolver404:
            view_name = None
        needed = required_role(view_name, request.method)
        if needed in (PUBLIC, API):
            return None
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if view_name is None:
            return None  # an unknown address: let Django answer 404 (logged-in users only)
        if not user.is_active:
            return forbidden(request, "Your account is switched off. Ask an administrator.")
        access = access_for(request)
        if access is None and not user.is_superuser:
            logout(request)
            messages.error(request, "Your account is not a member of any organisation any more. Ask an administrator.")
            return redirect_to_login(request.get_full_path())
        if access is not None:
            request.organisation, request.role = access.organisation, access.role
            request.organisations = access.choices
        if needed == LOGGED_IN:
            return None
        if needed == OPERATOR:
            return None if user.is_superuser else forbidden(request, "This page is for site operators only.")
        if needed is None:
            return forbidden(request, "This page is not open to anyone yet.")
        if access is None:
            return forbidden(request, "There is no organisation yet. Create one with manage.py organisation_create.")
        if not role_at_least(access.role, needed):
            return forbidden(
                request,
                f"Your role in {access.organisation.name} ({Role(access.role).label}) "
                f"does not allow this: it needs {Role(needed).label} or above. Ask one of its administrators.",
            )
        return None


def forbidden(request: HttpRequest, reason: str) -> HttpResponse:
    return render(request, "403.html", {"reason": reason}, status=403)
