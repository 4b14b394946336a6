"""CSV upload in the browser: the form, the ImportJob row, the django-q2 task and the progress partial."""

from __future__ import annotations

import csv
import io
import os
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django_q.models import OrmQ

from audiences.imports import import_job_run
from audiences.models import Contact, ContactList, ImportJob
from campaigns.tasks import engine_tick
from tests.factories import ImportJobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def queued_task_args() -> list:
    return [(task["func"], task["args"]) for task in queued_tasks()]


def queued_tasks() -> list[dict]:
    from django.conf import settings

    if "redis" in settings.Q_CLUSTER:
        from django_q.brokers import get_broker
        from django_q.signing import SignedPackage

        broker = get_broker()
        return [SignedPackage.loads(broker.connection.lindex(broker.list_key, i)) for i in range(broker.queue_size())]
    return [entry.task for entry in OrmQ.objects.all()]


def confirm_columns(staff_client, job: ImportJob):
    """Post the mapping step as shown (the guessed field of every column)."""
    job.refresh_from_db()
    fields = {f"column_{position}": column["field"] for position, column in enumerate(job.column_mapping)}
    return staff_client.post(f"/audiences/imports/{job.pk}/columns/", fields)


@pytest.fixture(autouse=True)
def empty_queue():
    from django_q.brokers import get_broker

    get_broker().purge_queue()
    yield
    get_broker().purge_queue()


def test_an_upload_queues_a_task_with_the_job_id_and_the_page_polls_its_progress(
    staff_client, django_capture_on_commit_callbacks
):
    content = b"email,first_name\nada@example.org,Ada\nnot-valid,Bob\nADA@example.org,Again\n"
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/audiences/imports/", {"file": upload("members.csv", content), "new_list": "Members"}
        )

    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/audiences/imports/{job.pk}/columns/"
    assert queued_task_args() == []  # nothing before the columns are confirmed
    with django_capture_on_commit_callbacks(execute=True):
        response = confirm_columns(staff_client, job)
    assert response.status_code == 302 and response["Location"] == f"/audiences/imports/{job.pk}/"
    assert queued_task_args() == [("audiences.imports.import_job_run", (job.pk, job.organisation_id))]
    page = staff_client.get(response["Location"])
    assert b'hx-trigger="every 1s"' in page.content

    upload_path = job.file.path
    assert import_job_run(job.pk) == "done"
    assert not os.path.exists(upload_path)  # only the rejected rows are kept
    assert import_job_run(job.pk) == "not queued"  # a re-delivered task does nothing

    progress = staff_client.get(f"/audiences/imports/{job.pk}/progress/", HTTP_HX_REQUEST="true")
    assert progress.status_code == 286  # htmx stops polling
    body = progress.content.decode()
    assert 'data-status="done"' in body and 'value="100"' in body
    assert "invalid email address" in body and "duplicate of line 2" in body
    job.refresh_from_db()
    assert (job.created, job.subscribed, job.rejected) == (1, 1, 2)
    assert Contact.objects.get().email == "ada@example.org"
    assert ContactList.objects.get().name == "Members"

    rejected = staff_client.get(f"/audiences/imports/{job.pk}/rejected.csv")
    rows = list(csv.reader(io.StringIO(b"".join(rejected.streaming_content).decode())))
    assert [row[:2] for row in rows] == [
        ["line", "reason"],
        ["3", "invalid email address"],
        ["4", "duplicate of line 2 (same address)"],
    ]


def test_a_file_that_is_not_csv_is_refused_on_the_page_and_nothing_is_created(staff_client):
    response = staff_client.post(
        "/audiences/imports/", {"file": upload("photo.csv", b"\xff\xd8\xff\xe0" + bytes(500)), "new_list": "Members"}
    )

    assert response.status_code == 200
    assert "JPEG image" in " ".join(response.context["form"].errors["file"])
    assert not ImportJob.objects.exists()
    assert not ContactList.objects.exists()
    assert queued_task_args() == []


def test_the_upload_form_needs_a_list(staff_client):
    response = staff_client.post("/audiences/imports/", {"file": upload("a.csv", b"email\na@example.org\n")})

    assert "Choose a list, or name a new one." in response.content.decode()
    assert not ImportJob.objects.exists()


def test_an_import_task_gets_the_import_time_limit_not_the_cluster_one(
    staff_client, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_TIMEOUT = 7200
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            "/audiences/imports/", {"file": upload("a.csv", b"email\nada@example.org\n"), "new_list": "A"}
        )
        confirm_columns(staff_client, ImportJob.objects.get())

    (task,) = queued_tasks()
    assert task["func"] == "audiences.imports.import_job_run"
    assert task["timeout"] == 7200 > settings.Q_CLUSTER["timeout"]


def test_an_import_whose_worker_died_is_restarted_by_the_tick_and_finishes(settings):
    content = b"email,first_name\nada@example.org,Ada\nbob@example.org,Bob\n"
    # Both were claimed by workers; the first worker was killed 20 minutes ago, the second beats.
    long_ago = timezone.now() - timedelta(seconds=settings.IMPORT_STALE_SECONDS + 300)
    dead = ImportJobFactory(file__data=content, status=ImportJob.Status.RUNNING, heartbeat_at=long_ago)
    alive = ImportJobFactory(file__data=content, status=ImportJob.Status.RUNNING, heartbeat_at=timezone.now())

    assert engine_tick()["imports"] == 1

    assert queued_task_args() == [("audiences.imports.import_job_run", (dead.pk, dead.organisation_id))]
    assert ImportJob.objects.get(pk=alive.pk).status == ImportJob.Status.RUNNING
    assert import_job_run(dead.pk) == "done"
    dead.refresh_from_db()
    assert (dead.status, dead.created, dead.subscribed) == (ImportJob.Status.DONE, 2, 2)
    assert engine_tick()["imports"] == 0
