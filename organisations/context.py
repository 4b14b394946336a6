"""Template context for every page: the organisation it works in and the ones the navbar can
switch to (set by cobalt_mail.permissions for each request)."""

from __future__ import annotations

from django.http import HttpRequest

from organisations.models import Role, role_at_least


def organisation(request: HttpRequest) -> dict:
    choices = getattr(request, "organisations", ())
    role = getattr(request, "role", None)
    return {
        # Buttons a role cannot use are not shown (the server refuses them all the same).
        "can_edit": role_at_least(role, Role.EDITOR),
        "can_send": role_at_least(role, Role.SENDER),
        "current_organisation": getattr(request, "organisation", None),
        "current_role": getattr(request, "role", None),
        "organisation_choices": choices,
        "can_switch_organisation": len(choices) > 1,
    }
