"""The SNS webhook (the tracking issue replaces this placeholder with verification and events)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


@csrf_exempt
@require_POST
def ses_webhook(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Event tracking is not enabled yet.", status=501, content_type="text/plain")
