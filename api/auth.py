"""``Authorization: Bearer <key>`` for every API operation, the per-key rate limit, the body-size
limit, and the role check each operation makes."""

from __future__ import annotations

from collections.abc import Callable

import ninja
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from ninja.security import HttpBearer

from api.keys import api_key_allow, api_key_authenticate
from api.models import ApiKey
from api.problems import Problem
from organisations.models import Role, role_at_least


class ApiKeyAuth(HttpBearer):
    """The key (401), its rate limit (429), the operation's minimum role (403), then the body's
    size (413): all before ninja reads the parameters, so a key without the role learns nothing
    from validation errors."""

    def __init__(self, minimum: str | None = None) -> None:
        super().__init__()
        self.minimum = minimum

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        key = api_key_authenticate(token.strip(), request)
        if key is None:
            return None
        retry_after = api_key_allow(key)
        if retry_after is not None:
            raise Problem(
                429,
                f"This key made more than {settings.API_RATE_LIMIT} requests in a minute. "
                f"Wait {retry_after} s (Retry-After) and send fewer, larger requests.",
                headers={"Retry-After": str(retry_after)},
            )
        request.api_key = key
        request.organisation = key.organisation
        request.role = key.role
        if self.minimum is not None:
            require(request, self.minimum)
        _read_body(request)
        return key


def _read_body(request: HttpRequest) -> None:
    """Read the body here, against API_MAX_BODY_BYTES (a sync of 10,000 contacts is larger than
    Django's form limit, DATA_UPLOAD_MAX_MEMORY_SIZE, which stays for the pages)."""
    if request.method in {"GET", "HEAD", "OPTIONS", "DELETE"} or hasattr(request, "_body"):
        return
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.API_MAX_BODY_BYTES:
        raise Problem(
            413,
            f"The request body has {length:,} bytes; the limit is {settings.API_MAX_BODY_BYTES:,}. "
            "Send the contacts in several calls.",
        )
    request._body = request.read(settings.API_MAX_BODY_BYTES + 1)
    if len(request._body) > settings.API_MAX_BODY_BYTES:
        raise Problem(413, f"The request body is larger than {settings.API_MAX_BODY_BYTES:,} bytes.")


def require(request: HttpRequest, minimum: str) -> None:
    """403 unless the request's key has at least ``minimum``."""
    if not role_at_least(getattr(request, "role", None), minimum):
        have = Role(request.role).label if getattr(request, "role", None) else "none"
        raise Problem(
            403,
            f"This key has the {have} role; this needs {Role(minimum).label} or above. "
            "An administrator of the organisation can create a key with that role.",
        )


MINIMUM_ROLE = "x-minimum-role"


def needs(minimum: str) -> dict:
    """``openapi_extra`` of an operation: the least role a key needs (shown in the OpenAPI document,
    enforced by ``Router``)."""
    return {MINIMUM_ROLE: str(minimum)}


class Router(ninja.Router):
    """Every operation says its minimum role (``openapi_extra=needs(Role.EDITOR)``), and its key
    check enforces it: one declaration, read by the docs, the check and the tests."""

    def add_api_operation(self, path: str, methods: list[str], view_func: Callable, **kwargs) -> None:
        minimum = (kwargs.get("openapi_extra") or {}).get(MINIMUM_ROLE)
        if minimum is None:
            raise ImproperlyConfigured(f"API operation {view_func.__name__}: add openapi_extra=needs(Role.…)")
        kwargs["auth"] = ApiKeyAuth(minimum)
        super().add_api_operation(path, methods, view_func, **kwargs)
