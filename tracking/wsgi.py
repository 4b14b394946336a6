"""A lean WSGI path for the SNS webhook, in front of the Django application.

SNS posts several events per recipient, so the webhook is the busiest URL by far. Its requests
need none of what Django's middleware stack does for pages (sessions, authentication, CSRF,
messages, htmx, staff checks, static files), and on a 2-core machine that stack costs about as
much CPU as verifying and storing the event. ``with_fast_webhook`` answers POSTs to the webhook
path itself, through the very same ``tracking.views.webhook_handle`` the Django view uses (same
checks, same storage, same answers), and passes every other request to Django unchanged.

Wire it in ``cobalt_mail/wsgi.py``: ``application = with_fast_webhook(get_wsgi_application())``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus

from django.conf import settings
from django.db import close_old_connections, connection
from django.urls import reverse

from tracking.rejections import rejection_record
from tracking.views import announced_too_large, rejection_log, webhook_handle

logger = logging.getLogger(__name__)


def with_fast_webhook(django_application: Callable, *, path: str | None = None) -> Callable:
    path = path or reverse("tracking:ses_webhook")

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != path or environ.get("REQUEST_METHOD") != "POST":
            return django_application(environ, start_response)
        refusal = announced_too_large(environ.get("CONTENT_LENGTH"))
        if refusal is None:
            body = environ["wsgi.input"].read(settings.SNS_MAX_BODY_BYTES + 1)
            _recycle_connections()
            try:
                status, message = webhook_handle(body=body)
            except Exception:
                logger.exception("The SNS webhook failed")
                status, message = 503, "The event could not be stored. Please retry."
            finally:
                _recycle_connections()
        else:
            status, message = refusal
        rejection_log(status=status, reason=message, meta=environ)
        rejection_record(status=status)  # counted for /metrics
        payload = message.encode()
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    return application


def _recycle_connections() -> None:
    # Inline storage (no group commit) uses this thread's connection: recycle it as Django's
    # request_started/request_finished signals would, unless a caller's transaction is open.
    if not connection.in_atomic_block:
        close_old_connections()
