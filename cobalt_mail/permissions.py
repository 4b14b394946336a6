"""Staff-only by default: every URL needs a staff user unless it is on the public list."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import resolve
from django.urls.exceptions import Resolver404

# URL names reachable without a staff login: the login page itself, the SNS webhook, the
# recipients' own unsubscribe and preference pages, and the health and metrics endpoints.
PUBLIC_URL_NAMES = frozenset(
    {
        "login",
        "favicon",
        "tracking:ses_webhook",
        "campaigns:unsubscribe",
        "campaigns:preferences",
        "campaigns:resubscribe",
        "campaigns:layout_colours",
        "campaigns:view_online",
        "compose:campaign_image",  # images in campaigns: mail clients load them
        "health",  # load balancers and monitors; shows pass/fail, ages and fixed phrases only
        "metrics",  # guarded by its own bearer token (METRICS_TOKEN) instead
    }
)


class StaffOnlyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.static_prefix = "/" + settings.STATIC_URL.lstrip("/")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        denial = self._deny(request)
        return denial or self.get_response(request)

    def _deny(self, request: HttpRequest) -> HttpResponse | None:
        if request.path.startswith(self.static_prefix):
            return None
        try:
            match = resolve(request.path_info)
        except Resolver404:
            match = None
        if match is not None and match.view_name in PUBLIC_URL_NAMES:
            return None
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (user.is_active and user.is_staff):
            return render(request, "403.html", status=403)
        return None
