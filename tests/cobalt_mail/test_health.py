"""/health/: one JSON entry per check, 200 when all pass, 503 otherwise, never a secret."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from django_q.models import Schedule

from cobalt_mail import health
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def cluster_alive(db):
    """What a running qcluster's scheduler leaves behind: the engine ticks' next runs just ahead."""
    Schedule.objects.filter(func=health.ENGINE_TICK).update(next_run=timezone.now() + timedelta(seconds=40))


def test_it_answers_200_without_login_when_every_check_passes(client, cluster_alive):
    response = client.get("/health/")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "cluster", "migrations", "webhook"}
    assert all(check["ok"] for check in body["checks"].values())
    assert response["Content-Security-Policy"]
    assert "no-cache" in response["Cache-Control"]


def test_a_fresh_install_without_events_is_healthy(client, cluster_alive):
    webhook = client.get("/health/").json()["checks"]["webhook"]

    assert webhook == {"ok": True, "last_event_age_seconds": None}


def test_it_reports_the_age_of_the_newest_stored_event(client, cluster_alive):
    EventFactory(received_at=timezone.now() - timedelta(hours=3))
    EventFactory(received_at=timezone.now() - timedelta(seconds=90))

    webhook = client.get("/health/").json()["checks"]["webhook"]

    assert webhook["ok"] is True
    assert 89 <= webhook["last_event_age_seconds"] <= 100


def test_it_answers_503_when_no_cluster_ran_the_scheduler_for_two_minutes(client):
    Schedule.objects.filter(func=health.ENGINE_TICK).update(next_run=timezone.now() - timedelta(seconds=90))

    response = client.get("/health/")

    assert response.status_code == 503
    assert response.json()["status"] == "fail"
    assert response.json()["checks"]["cluster"] == {
        "ok": False,
        "error": "No django-q2 cluster has run the scheduler in the last 2 minutes.",
    }


def test_a_tick_less_than_a_minute_overdue_still_counts_as_seen(client):
    Schedule.objects.filter(func=health.ENGINE_TICK).update(next_run=timezone.now() - timedelta(seconds=45))

    cluster = client.get("/health/").json()["checks"]["cluster"]

    assert cluster["ok"] is True
    assert 44 <= cluster["tick_overdue_seconds"] <= 60


def test_it_answers_503_when_the_engine_tick_schedule_is_missing(client):
    Schedule.objects.filter(func=health.ENGINE_TICK).delete()

    response = client.get("/health/")

    assert response.status_code == 503
    assert response.json()["checks"]["cluster"]["error"] == "The engine tick schedule is missing: run migrate."


def test_it_answers_503_when_a_migration_is_not_applied(client, cluster_alive, monkeypatch):
    monkeypatch.setattr(health, "_migrations_applied", False)
    MigrationRecorder.Migration.objects.filter(app="campaigns").order_by("-id").first().delete()

    response = client.get("/health/")

    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == {"ok": False, "error": "Migrations are not applied: run migrate."}


def test_an_unreachable_redis_fails_with_a_fixed_phrase_and_no_secret_or_host(client, cluster_alive, settings):
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    settings.REDIS_URL = "redis://cobalt:hunter2-secret@127.0.0.1:1/0"

    response = client.get("/health/")

    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {"ok": False, "error": "Redis does not answer."}
    text = response.content.decode()
    for leak in ("hunter2", "127.0.0.1", "cobalt:", "Traceback", "Error"):
        assert leak not in text


def test_it_answers_only_get(client, cluster_alive):
    assert client.post("/health/").status_code == 405
