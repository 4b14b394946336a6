"""django-q2 tasks of the api app: thin wrappers around its services."""

from __future__ import annotations

from api import webhooks


def webhooks_tick() -> dict:
    """Twice a minute (two schedules, half a minute apart): send every endpoint what is due."""
    return webhooks.webhooks_run()
