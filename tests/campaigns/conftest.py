"""Fixtures for the delivery engine's tests: a failing-on-purpose SES stub and worker helpers."""

from __future__ import annotations

import pytest

from bench.ses_stub import StubSES


@pytest.fixture
def stub_ses(settings):
    """The local SES stub (bench/ses_stub.py) wired into django-ses, recording every message."""
    from campaigns import ratelimit

    with StubSES() as stub:
        settings.MAILERS = settings.COBALT_MAILERS
        settings.AWS_SES_REGION_ENDPOINT_URL = stub.url
        settings.AWS_SES_REGION_NAME = "us-east-1"
        settings.SEND_RATE = 1000
        ratelimit.limiter_reset()
        yield stub


@pytest.fixture
def engine_tick_schedule(db):
    """The every-minute engine tick, as migration 0002 creates it (also without migrations)."""
    from django.utils import timezone
    from django_q.models import Schedule

    schedule, _ = Schedule.objects.update_or_create(
        name="engine-tick",
        defaults={
            "func": "campaigns.tasks.engine_tick",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
            "next_run": timezone.now(),
        },
    )
    return schedule


@pytest.fixture
def clusters(workers):
    """Real qcluster processes (the shared ``workers`` fixture, which SIGKILLs them at the end)."""
    return workers
