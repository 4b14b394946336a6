"""The versioned API: ``/api/v1/``, OpenAPI 3 at ``/api/v1/openapi.json``, docs at ``/api/v1/docs``.

django-ninja (typed pydantic schemas, OpenAPI generated from them). Every operation needs an API
key (``api.auth``); errors are problem+json (``api.problems``). Routers live in ``api/routers/``,
one per resource, each adding itself below.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError

from api.auth import ApiKeyAuth, Router, needs
from api.problems import Problem, problem_response
from api.routers import campaigns as campaigns_router
from api.routers import contacts as contacts_router
from api.routers import events as events_router
from api.routers import lists as lists_router
from api.routers import messages as messages_router
from api.routers import segments as segments_router
from api.routers import suppressions as suppressions_router
from organisations.models import Role

api = NinjaAPI(
    title="Cobalt Mail API",
    version="1",
    description="Keep an organisation's contacts in step with its membership database, read what "
    "bounced, and send. Authenticate with `Authorization: Bearer <key>`; keys are made by the "
    "organisation's administrators (Organisation → API keys).",
    urls_namespace="api-v1",
    auth=ApiKeyAuth(),
    docs_url="/docs",
    openapi_url="/openapi.json",
    # The docs and the OpenAPI document are for logged-in staff, like every page.
    docs_decorator=login_required,
)


@api.exception_handler(Problem)
def _problem(request: HttpRequest, problem: Problem):
    return problem_response(request, problem)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, error: AuthenticationError):
    return problem_response(
        request,
        Problem(
            401,
            "Send a valid, unexpired API key as `Authorization: Bearer <key>`. "
            "An administrator of the organisation can create one under Organisation → API keys.",
            headers={"WWW-Authenticate": 'Bearer realm="cobalt-mail"'},
        ),
    )


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, error: ValidationError):
    errors = [
        {
            "field": ".".join(str(part) for part in item.get("loc", ())),
            "message": item.get("msg", "is not valid"),
        }
        for item in error.errors
    ]
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in errors[:5])
    return problem_response(request, Problem(422, f"Fix these fields and send again: {summary}", errors=errors))


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, error: Http404):
    return problem_response(request, Problem(404, "There is no such object in this key's organisation."))


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, error: HttpError):
    return problem_response(request, Problem(error.status_code, str(error)))


class Me(Schema):
    organisation: str
    organisation_name: str
    role: str
    key: str


keys = Router(tags=["keys"])


@keys.get(
    "/me", response=Me, summary="The key's organisation and role", url_name="me", openapi_extra=needs(Role.VIEWER)
)
def me(request: HttpRequest):
    """Check a key: which organisation it acts for, and with which role."""
    key = request.api_key
    return Me(
        organisation=key.organisation.slug, organisation_name=key.organisation.name, role=key.role, key=key.prefix
    )


# Routers, one per resource (each file adds its own line).
api.add_router("", keys)
api.add_router("", lists_router.router)
api.add_router("", segments_router.router)
api.add_router("", campaigns_router.router)
api.add_router("", suppressions_router.router)
api.add_router("", events_router.router)
api.add_router("", contacts_router.router)
api.add_router("", messages_router.router)
