"""Retention: personal data the figures no longer need goes after a number of days (README,
"What retention keeps and removes").

Four kinds, each with its own age limit (``RETENTION_*_DAYS``):

- ``mail_bodies``: post_office ``Email`` rows of sent or failed messages keep their row (status,
  SES message id, the recipient's link to it) but lose subject, text, HTML and merge context;
- ``mail_logs``: post_office ``Log`` rows are deleted;
- ``webhook_logs``: finished (delivered or given up) webhook deliveries of the endpoints' logs are
  deleted (same age limit as the mail logs);
- ``event_payloads``: an ``Event`` keeps its row (the figures' evidence) but its raw SNS JSON
  becomes NULL;
- ``import_files`` / ``rejected_files``: a finished import's uploaded CSV and its rejected-rows
  CSV are deleted from storage, with the rows copied on the page (samples, previews).

Campaigns, recipients and their final status, counters, breakdowns and events stay.

Every kind works in batches of ``RETENTION_BATCH_SIZE`` rows: one SELECT of ids, continuing
after the last id seen (key-set paging, so the thousandth batch costs what the first did), then
one short UPDATE or DELETE of those ids in its own transaction. No statement locks more than a
batch of rows, whatever the table's size; the writers (engine, webhook) go on meanwhile. A dry
run walks the same batches and writes nothing, so it reports the same counts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from post_office.models import STATUS as OUTBOX_STATUS
from post_office.models import Email as OutboxEmail
from post_office.models import Log as OutboxLog

from api.models import WebhookDelivery
from audiences.models import ImportJob
from tracking.models import Event

logger = logging.getLogger(__name__)

KINDS = ("mail_bodies", "mail_logs", "webhook_logs", "event_payloads", "import_files", "rejected_files")
FINISHED_IMPORTS = [ImportJob.Status.DONE, ImportJob.Status.REFUSED, ImportJob.Status.FAILED]


def retention_apply(*, dry_run: bool = False, now: datetime | None = None) -> dict[str, int]:
    """Remove what is older than its retention period; {kind: rows or files removed}."""
    now = now or timezone.now()
    batch_size = settings.RETENTION_BATCH_SIZE
    mail_cutoff = now - timedelta(days=settings.RETENTION_MAIL_DAYS)
    import_counts = _import_files_remove(
        now - timedelta(days=settings.RETENTION_IMPORT_FILE_DAYS), batch_size=batch_size, dry_run=dry_run
    )
    counts = {
        "mail_bodies": _mail_bodies_blank(mail_cutoff, batch_size=batch_size, dry_run=dry_run),
        "mail_logs": _mail_logs_delete(mail_cutoff, batch_size=batch_size, dry_run=dry_run),
        "webhook_logs": _webhook_logs_delete(mail_cutoff, batch_size=batch_size, dry_run=dry_run),
        "event_payloads": _event_payloads_clear(
            now - timedelta(days=settings.RETENTION_EVENT_PAYLOAD_DAYS), batch_size=batch_size, dry_run=dry_run
        ),
        **import_counts,
    }
    logger.info(
        "retention%s: %s", " (dry run)" if dry_run else "", ", ".join(f"{kind} {counts[kind]}" for kind in KINDS)
    )
    return counts


def id_batches(queryset: QuerySet, *, batch_size: int) -> Iterator[list[int]]:
    """The ids of the queryset's rows, ``batch_size`` at a time, in id order.

    Each SELECT starts after the last id of the one before instead of asking for "the first N
    still matching": a dry run (which changes nothing) still moves on, and rows already done are
    never scanned again.
    """
    last_id = 0
    while True:
        ids = list(queryset.filter(pk__gt=last_id).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return
        yield ids
        last_id = ids[-1]


def _mail_bodies_blank(cutoff: datetime, *, batch_size: int, dry_run: bool) -> int:
    # Only messages that are done: a queued one still needs its body to be sent.
    bodies = OutboxEmail.objects.filter(
        Q(created__lt=cutoff),
        Q(status__in=[OUTBOX_STATUS.sent, OUTBOX_STATUS.failed]),
        ~Q(subject="") | ~Q(message="") | ~Q(html_message="") | Q(context__isnull=False),
    )
    total = 0
    for ids in id_batches(bodies, batch_size=batch_size):
        if dry_run:
            total += len(ids)
            continue
        with transaction.atomic():
            total += bodies.filter(pk__in=ids).update(subject="", message="", html_message="", context=None)
    return total


def _mail_logs_delete(cutoff: datetime, *, batch_size: int, dry_run: bool) -> int:
    logs = OutboxLog.objects.filter(date__lt=cutoff)
    total = 0
    for ids in id_batches(logs, batch_size=batch_size):
        if dry_run:
            total += len(ids)
            continue
        with transaction.atomic():
            deleted, _ = OutboxLog.objects.filter(pk__in=ids).delete()
        total += deleted
    return total


def _webhook_logs_delete(cutoff: datetime, *, batch_size: int, dry_run: bool) -> int:
    """Finished deliveries only: a pending or retrying one is the endpoint's place in its feed."""
    finished = [WebhookDelivery.Status.DELIVERED, WebhookDelivery.Status.FAILED]
    rows = WebhookDelivery.objects.filter(created_at__lt=cutoff, status__in=finished)
    total = 0
    for ids in id_batches(rows, batch_size=batch_size):
        if dry_run:
            total += len(ids)
            continue
        with transaction.atomic():
            deleted, _ = WebhookDelivery.objects.filter(pk__in=ids, status__in=finished).delete()
        total += deleted
    return total


def _event_payloads_clear(cutoff: datetime, *, batch_size: int, dry_run: bool) -> int:
    payloads = Event.objects.filter(occurred_at__lt=cutoff, payload__isnull=False)
    total = 0
    for ids in id_batches(payloads, batch_size=batch_size):
        if dry_run:
            total += len(ids)
            continue
        with transaction.atomic():
            total += payloads.filter(pk__in=ids).update(payload=None)
    return total


def _import_files_remove(cutoff: datetime, *, batch_size: int, dry_run: bool) -> dict[str, int]:
    """Files of finished imports (a running one still reads its upload), then their page copies.

    The files go first: should the UPDATE fail, the page links a missing file (a 404), whereas
    the other order could leave a file of addresses no row points to any more.
    """
    jobs = ImportJob.objects.filter(created_at__lt=cutoff, status__in=FINISHED_IMPORTS).filter(
        ~Q(file="") | ~Q(rejected_file="") | ~Q(rejected_preview=[]) | ~Q(rewritten_preview=[]) | ~Q(sample_rows=[])
    )
    counts = {"import_files": 0, "rejected_files": 0}
    for ids in id_batches(jobs, batch_size=batch_size):
        for upload, rejected in ImportJob.objects.filter(pk__in=ids).values_list("file", "rejected_file"):
            for kind, name in (("import_files", upload), ("rejected_files", rejected)):
                if name:
                    counts[kind] += 1
                    if not dry_run:
                        default_storage.delete(name)
        if not dry_run:
            with transaction.atomic():
                jobs.filter(pk__in=ids).update(
                    file="", rejected_file="", rejected_preview=[], rewritten_preview=[], sample_rows=[]
                )
    return counts
