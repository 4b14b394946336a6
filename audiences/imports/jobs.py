"""Browser uploads: an ImportJob row from upload to confirmed mapping, a django-q2 task that
imports it, and the clean-up of abandoned and stalled jobs.

A job belongs to the organisation it was uploaded in; the task carries that organisation's id
with the job's and re-checks both (and the list) before writing anything."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from audiences.imports.contacts import contacts_import
from audiences.imports.files import ImportRefused, file_head_read, mapping_check, mapping_guess
from audiences.imports.rows import ImportReport
from audiences.models import ContactList, ImportJob
from organisations import audit
from organisations.models import Organisation

logger = logging.getLogger(__name__)

MAPPING_KEEP = timedelta(days=1)  # an upload whose mapping nobody confirmed is deleted after this


def import_job_create(
    *, organisation: Organisation, uploaded_file, contact_list: ContactList, update: bool, user
) -> ImportJob:
    """Store the upload with its guessed mapping and sample rows, waiting for staff to confirm.

    ImportRefused (and nothing kept) if it is not a usable CSV. Nothing is imported yet: see
    ``import_job_confirm``.
    """
    if contact_list.organisation_id != organisation.pk:
        raise ImportRefused("The list chosen for this import belongs to another organisation.")
    imports_discard_abandoned()
    job = ImportJob(
        organisation=organisation,
        status=ImportJob.Status.MAPPING,
        contact_list=contact_list,
        update_existing=update,
        original_name=Path(uploaded_file.name or "upload.csv").name[:255],
        size_bytes=uploaded_file.size or 0,
        created_by=user,
    )
    job.file.save(f"import-{timezone.now():%Y%m%d%H%M%S%f}.csv", uploaded_file, save=False)
    try:
        head = file_head_read(Path(job.file.path))
    except ImportRefused:
        job.file.delete(save=False)
        raise
    job.encoding = head.encoding
    job.column_mapping = [
        {"name": name, "field": chosen} for name, chosen in zip(head.header, mapping_guess(head.header), strict=True)
    ]
    job.sample_rows = head.samples
    job.save()
    return job


def import_job_confirm(*, job: ImportJob, fields: list[str]) -> None:
    """Keep the chosen field of each column and queue the import once the row is committed.

    ImportRefused (the job is left waiting, unchanged) when the mapping cannot be imported, so a
    bad mapping writes nothing.
    """
    header = [column["name"] for column in job.column_mapping]
    mapping_check(header, fields)
    confirmed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.MAPPING).update(
        status=ImportJob.Status.QUEUED,
        column_mapping=[{"name": name, "field": chosen} for name, chosen in zip(header, fields, strict=True)],
        sample_rows=[],  # personal data, needed only for this step
    )
    if confirmed:
        transaction.on_commit(lambda: import_job_enqueue(job.pk, job.organisation_id))


def import_job_discard(*, job: ImportJob) -> None:
    """Delete an upload whose mapping was not confirmed, with its file."""
    if job.status != ImportJob.Status.MAPPING:
        return
    if job.file:
        job.file.delete(save=False)
    job.delete()


def imports_discard_abandoned() -> int:
    """Uploads left at the mapping step for a day are deleted (their files hold personal data).

    Called by the engine tick, and at each upload."""
    abandoned = ImportJob.objects.filter(status=ImportJob.Status.MAPPING, created_at__lt=timezone.now() - MAPPING_KEEP)
    for job in abandoned:
        import_job_discard(job=job)
    return len(abandoned)


def import_job_enqueue(job_id: int, organisation_id: int) -> None:
    """Queue the job's task with the import time limit (an import may outlast ``Q_TIMEOUT``).

    On the ORM broker a task running longer than ``Q_RETRY`` is delivered again; that copy finds
    the job already running and does nothing.
    """
    async_task(
        "audiences.imports.import_job_run",
        job_id,
        organisation_id,
        group="imports",
        timeout=settings.IMPORT_TIMEOUT,
    )


def imports_restart_stale() -> list[int]:
    """Jobs left "running" by a dead worker (no heartbeat for ``IMPORT_STALE_SECONDS``) are queued
    again and start over from the top of their file; rows imported before then count as unchanged."""
    cutoff = timezone.now() - timedelta(seconds=settings.IMPORT_STALE_SECONDS)
    restarted = []
    stale = ImportJob.objects.filter(status=ImportJob.Status.RUNNING, heartbeat_at__lt=cutoff)
    for job_id, organisation_id in stale.values_list("pk", "organisation_id"):
        if ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.RUNNING, heartbeat_at__lt=cutoff).update(
            status=ImportJob.Status.QUEUED, heartbeat_at=None
        ):
            logger.warning("import job %s stopped beating (its worker died?): started again", job_id)
            import_job_enqueue(job_id, organisation_id)
            restarted.append(job_id)
    return restarted


def import_job_run(job_id: int, organisation_id: int | None = None) -> str:
    """The django-q2 task: claim the queued job, import, record the outcome. Safe to run twice.

    ``organisation_id`` is the organisation the job was queued for (None: a task queued before
    organisations, which trusts the job's own): a job of another organisation is not claimed, and
    a list that is not the job's organisation's refuses the import before anything is written.
    """
    now = timezone.now()
    queued = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED)
    if organisation_id is not None:
        queued = queued.filter(organisation_id=organisation_id)
    claimed = queued.update(status=ImportJob.Status.RUNNING, started_at=now, heartbeat_at=now)
    if not claimed:
        return "not queued"
    job = ImportJob.objects.select_related("contact_list", "organisation", "created_by").get(pk=job_id)
    if job.contact_list is not None and job.contact_list.organisation_id != job.organisation_id:
        _job_finish(
            job_id, status=ImportJob.Status.REFUSED, error="The list of this import belongs to another organisation."
        )
        return "refused"
    rejected_name = f"imports/rejected/import-{job.pk}-rejected.csv"
    rejected_path = Path(settings.MEDIA_ROOT) / rejected_name
    rejected_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def progress(report: ImportReport, position: int) -> None:
        ImportJob.objects.filter(pk=job_id).update(
            bytes_read=position, heartbeat_at=timezone.now(), **report.counters()
        )

    try:
        report = contacts_import(
            organisation_id=job.organisation_id,
            path=Path(job.file.path),
            contact_list=job.contact_list,
            update=job.update_existing,
            source=f"import: {job.original_name}",
            rejected_path=rejected_path,
            progress=progress,
            fields=[column["field"] for column in job.column_mapping] or None,
        )
    except ImportRefused as refusal:
        _job_finish(job_id, status=ImportJob.Status.REFUSED, error=str(refusal))
        return "refused"
    except Exception:
        logger.exception("import job %s failed", job_id)
        _job_finish(job_id, status=ImportJob.Status.FAILED, error="The import stopped on an unexpected error.")
        return "failed"
    _job_finish(
        job_id,
        status=ImportJob.Status.DONE,
        encoding=report.encoding,
        bytes_read=job.size_bytes,
        rejected_preview=report.rejected_preview,
        rewritten_preview=report.rewritten_preview,
        column_mapping=report.mapping,
        rejected_file=rejected_name if report.rejected else "",
        **report.counters(),
    )
    audit.record(
        None,
        audit.Action.IMPORT,
        f"Imported {job.original_name or 'a CSV file'}: {report.created} new, {report.updated} updated, "
        f"{report.rejected} rejected",
        organisation=job.organisation,
        user=job.created_by,
        object_type="importjob",
        object_id=job.pk,
        rows=report.rows_read,
    )
    seconds = round(time.monotonic() - started, 3)
    context = {"import_job": job_id, "rows": report.rows_read, "rejected": report.rejected, "seconds": seconds}
    logger.info(
        "import job %(import_job)s: %(rows)s rows, %(rejected)s rejected, in %(seconds).3f s", context, extra=context
    )
    return "done"


def _job_finish(job_id: int, **fields) -> None:
    ImportJob.objects.filter(pk=job_id).update(finished_at=timezone.now(), **fields)
    # The upload is personal data that now lives in the contacts table (or was refused): keep
    # only the rejected rows, which staff download to fix and re-import.
    job = ImportJob.objects.get(pk=job_id)
    if job.file:
        job.file.delete(save=False)
