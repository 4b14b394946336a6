"""Retention (`manage.py retention`, the daily schedule): old personal data goes, figures stay."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Schedule
from post_office.models import STATUS as OUTBOX_STATUS
from post_office.models import Email as OutboxEmail
from post_office.models import Log as OutboxLog

from api.models import WebhookDelivery, WebhookEndpoint
from audiences.models import ImportJob
from campaigns.models import Recipient
from cobalt_mail.tasks import retention_run
from stats.breakdowns import breakdown_bump
from stats.counters import outcomes_add, snapshot_recorded
from stats.models import CampaignBreakdown, CampaignStats
from tests.factories import CampaignFactory, EventFactory, ImportJobFactory, RecipientFactory
from tracking.models import Event

pytestmark = pytest.mark.django_db

OLD = timezone.now() - timedelta(days=400)  # past the default 365 days
RECENT = timezone.now() - timedelta(days=30)
COUNTS = {
    "mail_bodies": 1,
    "mail_logs": 1,
    "webhook_logs": 1,
    "event_payloads": 1,
    "import_files": 1,
    "rejected_files": 1,
}


def sent_with_outbox(campaign, when) -> Recipient:
    """A recipient sent at ``when``, with the post_office Email and Log the engine writes."""
    with time_machine.travel(when, tick=False):
        recipient = RecipientFactory(campaign=campaign, sent=True)
        email = OutboxEmail.objects.create(
            from_email="news@cobalt.example",
            to=[recipient.email],
            subject="Hello Ada",
            html_message="<p>Hello Ada</p>",
            context={"first_name": "Ada", "email": recipient.email},
            status=OUTBOX_STATUS.sent,
        )
        OutboxLog.objects.create(email=email, status=OUTBOX_STATUS.sent, message="accepted")
    recipient.outbox_email = email
    recipient.save(update_fields=["outbox_email"])
    return recipient


def finished_import(when, *, status=ImportJob.Status.DONE) -> ImportJob:
    job = ImportJobFactory(
        created_at=when,
        status=status,
        rejected=1,
        rejected_preview=[{"line": 3, "reason": "invalid email address", "values": ["ada@"]}],
        rewritten_preview=[{"line": 2, "written": "Ada <ada@example.org>", "email": "ada@example.org"}],
    )
    job.rejected_file.save("rejected.csv", ContentFile(b"line,reason,email\n3,invalid,ada@\n"))
    return job


@pytest.fixture
def data(settings, tmp_path):
    """Old and recent rows of every kind, and the figures of the campaign they belong to."""
    settings.MEDIA_ROOT = str(tmp_path)
    campaign = CampaignFactory(status="sent")
    old, recent = sent_with_outbox(campaign, OLD), sent_with_outbox(campaign, RECENT)
    snapshot_recorded(campaign_id=campaign.pk, recipients=2, domains={"example.org": 2})
    outcomes_add(campaign_id=campaign.pk, sent=2)
    breakdown_bump(campaign_id=campaign.pk, items=[("delivered_domain", "example.org", 2)])
    old_event = EventFactory(recipient=old, occurred_at=OLD, payload={"mail": {"destination": [old.email]}})
    recent_event = EventFactory(recipient=recent, occurred_at=RECENT, payload={"mail": {"destination": ["x"]}})
    old_job, recent_job = finished_import(OLD), finished_import(RECENT)
    # An old import still running reads its upload: it keeps it.
    running = ImportJobFactory(created_at=OLD, status=ImportJob.Status.RUNNING)
    # Webhook deliveries: an old finished one goes; an old one still retrying and a recent one stay.
    endpoint = WebhookEndpoint.objects.create(
        organisation=campaign.organisation, url="https://members.example.org/hooks", secret="whsec_x", cursor="v1.0.9.0"
    )
    for number, (when, status) in enumerate([(OLD, "delivered"), (OLD, "retrying"), (RECENT, "delivered")]):
        WebhookDelivery.objects.create(
            endpoint=endpoint,
            delivery_id=f"d{number}",
            after_cursor="a",
            last_cursor="b",
            item_count=1,
            status=status,
            created_at=when,
        )
    return {
        "campaign": campaign,
        "old": old,
        "recent": recent,
        "old_event": old_event,
        "recent_event": recent_event,
        "old_job": old_job,
        "recent_job": recent_job,
        "running": running,
    }


def figures(campaign) -> tuple:
    return (
        list(CampaignStats.objects.filter(campaign=campaign).values()),
        list(CampaignBreakdown.objects.filter(campaign=campaign).order_by("id").values()),
        list(Recipient.objects.filter(campaign=campaign).order_by("id").values()),
        sorted(Event.objects.values_list("id", "event_type", "recipient_id", "occurred_at")),
    )


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("retention", *args, stdout=out)
    return out.getvalue()


def test_it_removes_old_bodies_logs_payloads_and_import_files_and_keeps_recent_ones(data):
    old_upload = Path(data["old_job"].file.path)
    old_rejected = Path(data["old_job"].rejected_file.path)

    output = run()

    old_email = OutboxEmail.objects.get(pk=data["old"].outbox_email_id)
    assert (old_email.subject, old_email.message, old_email.html_message, old_email.context) == ("", "", "", None)
    assert old_email.status == OUTBOX_STATUS.sent  # the row stays: the recipient still points to it
    recent_email = OutboxEmail.objects.get(pk=data["recent"].outbox_email_id)
    assert recent_email.html_message == "<p>Hello Ada</p>" and recent_email.context["first_name"] == "Ada"
    assert list(OutboxLog.objects.values_list("email_id", flat=True)) == [recent_email.pk]

    data["old_event"].refresh_from_db()
    data["recent_event"].refresh_from_db()
    assert data["old_event"].payload is None
    assert data["recent_event"].payload == {"mail": {"destination": ["x"]}}

    data["old_job"].refresh_from_db()
    assert not old_upload.exists() and not old_rejected.exists()
    assert (data["old_job"].file.name, data["old_job"].rejected_file.name) == ("", "")
    assert data["old_job"].rejected_preview == [] and data["old_job"].rewritten_preview == []
    assert data["old_job"].rejected == 1  # its figures stay
    assert Path(data["recent_job"].rejected_file.path).exists()
    assert Path(data["running"].file.path).exists()

    assert "mail_bodies: 1 " in output and "rejected_files: 1 " in output
    assert sorted(WebhookDelivery.objects.values_list("delivery_id", flat=True)) == ["d1", "d2"]


def test_figures_recipients_statuses_and_events_are_untouched(data):
    before = figures(data["campaign"])

    run()

    assert figures(data["campaign"]) == before
    assert Recipient.objects.get(pk=data["old"].pk).outbox_email_id is not None


def test_a_second_run_finds_nothing_left(data):
    assert retention_run() == COUNTS
    assert retention_run() == dict.fromkeys(COUNTS, 0)


def test_a_dry_run_changes_nothing_and_reports_what_a_real_run_removes(data):
    emails = list(OutboxEmail.objects.order_by("id").values())
    payloads = list(Event.objects.order_by("id").values_list("payload", flat=True))

    output = run("--dry-run")

    assert "Dry run" in output
    assert list(OutboxEmail.objects.order_by("id").values()) == emails
    assert OutboxLog.objects.count() == 2
    assert list(Event.objects.order_by("id").values_list("payload", flat=True)) == payloads
    assert Path(data["old_job"].rejected_file.path).exists()
    assert output.replace("Dry run: nothing was changed; these would be removed.\n", "") == run()


def test_each_kind_follows_its_own_number_of_days(data, settings):
    settings.RETENTION_EVENT_PAYLOAD_DAYS = 7  # the recent event (30 days) goes too
    settings.RETENTION_MAIL_DAYS = 500  # the old mail (400 days) stays

    counts = retention_run()

    assert counts["event_payloads"] == 2 and counts["mail_bodies"] == 0 and counts["mail_logs"] == 0
    assert not Event.objects.filter(payload__isnull=False).exists()


def test_it_works_in_batches_of_the_configured_size(data, settings):
    settings.RETENTION_BATCH_SIZE = 2
    EventFactory.create_batch(4, occurred_at=OLD, payload={"a": 1})  # 5 old payloads with the fixture's

    with CaptureQueriesContext(connection) as queries:
        counts = retention_run()

    event_table = Event._meta.db_table
    updates = [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and event_table in q["sql"]]
    assert counts["event_payloads"] == 5
    assert len(updates) == 3  # 2 + 2 + 1
    assert not Event.objects.filter(occurred_at__lt=timezone.now() - timedelta(days=365), payload__isnull=False)


def test_migrate_creates_the_daily_schedule():
    schedule = Schedule.objects.get(name="retention")
    assert schedule.func == "cobalt_mail.tasks.retention_run"
    assert schedule.schedule_type == Schedule.DAILY and schedule.repeats == -1


def test_the_import_page_says_the_rejected_rows_were_removed(data, staff_client):
    run()

    page = staff_client.get(f"/audiences/imports/{data['old_job'].pk}/")
    assert page.status_code == 200
    assert "removed after the retention period" in page.content.decode()
    assert staff_client.get(f"/audiences/imports/{data['old_job'].pk}/rejected.csv").status_code == 404
    assert (
        "Download the rejected rows"
        in staff_client.get(f"/audiences/imports/{data['recent_job'].pk}/").content.decode()
    )
