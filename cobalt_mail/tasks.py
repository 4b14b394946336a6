"""django-q2 tasks of the project layer (scheduled by tracking/migrations/0008_retention_schedule.py)."""

from __future__ import annotations

from cobalt_mail.retention import retention_apply


def retention_run() -> dict[str, int]:
    """The daily retention pass; its result (counts per kind) is kept with the task."""
    return retention_apply()
