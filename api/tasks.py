"""django-q2 tasks of the api app: thin wrappers around its services."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from api import webhooks
from api.models import IdempotentRequest
from api.routers.messages import IDEMPOTENCY_HOURS


def webhooks_tick() -> dict:
    """Twice a minute (two schedules, half a minute apart): send every endpoint what is due, and
    forget single messages' idempotency keys older than 24 hours."""
    totals = webhooks.webhooks_run()
    expired = timezone.now() - timedelta(hours=IDEMPOTENCY_HOURS)
    totals["idempotency_keys_expired"] = IdempotentRequest.objects.filter(created_at__lt=expired).delete()[0]
    return totals
