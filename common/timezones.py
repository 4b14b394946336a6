"""Show times in the staff member's own time zone (chosen when scheduling; stored in UTC)."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

SESSION_TIME_ZONE = "time_zone"


class StaffTimezoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = request.session.get(SESSION_TIME_ZONE) if hasattr(request, "session") else None
        try:
            timezone.activate(ZoneInfo(zone)) if zone else timezone.deactivate()
        except (ZoneInfoNotFoundError, ValueError):
            timezone.deactivate()
        return self.get_response(request)
