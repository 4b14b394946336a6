"""Template context for every page: the organisation it works in and the ones the navbar can
switch to (set by cobalt_mail.permissions for each request)."""

from __future__ import annotations

from django.http import HttpRequest


def organisation(request: HttpRequest) -> dict:
    choices = getattr(request, "organisations", ())
    return {
        "current_organisation": getattr(request, "organisation", None),
        "current_role": getattr(request, "role", None),
        "organisation_choices": choices,
        "can_switch_organisation": len(choices) > 1,
    }
