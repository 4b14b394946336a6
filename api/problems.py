"""Errors as ``application/problem+json`` (RFC 9457), in words a developer can act on."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse

CONTENT_TYPE = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    422: "Invalid input",
    429: "Too many requests",
}


class Problem(Exception):
    """Raise anywhere under the API: answered as problem+json with this status."""

    def __init__(
        self, status: int, detail: str, *, title: str = "", headers: dict | None = None, **extra: object
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title or TITLES.get(status, "Error")
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(request: HttpRequest, problem: Problem) -> HttpResponse:
    body = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.path,
        **problem.extra,
    }
    response = HttpResponse(json.dumps(body), status=problem.status, content_type=CONTENT_TYPE)
    for name, value in problem.headers.items():
        response[name] = value
    return response
