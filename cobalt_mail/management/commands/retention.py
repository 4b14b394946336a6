"""`manage.py retention [--dry-run]`: what the daily schedule does, by hand (cobalt_mail.retention)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from cobalt_mail.retention import KINDS, retention_apply

DESCRIPTIONS = {
    "mail_bodies": ("post_office message bodies blanked", "RETENTION_MAIL_DAYS"),
    "mail_logs": ("post_office log rows deleted", "RETENTION_MAIL_DAYS"),
    "webhook_logs": ("finished webhook deliveries deleted from the logs", "RETENTION_MAIL_DAYS"),
    "event_payloads": ("event payloads (raw SNS JSON) emptied", "RETENTION_EVENT_PAYLOAD_DAYS"),
    "import_files": ("uploaded import files deleted", "RETENTION_IMPORT_FILE_DAYS"),
    "rejected_files": ("rejected-rows files deleted", "RETENTION_IMPORT_FILE_DAYS"),
}


class Command(BaseCommand):
    help = "Remove mail bodies, mail logs, raw event JSON and import files older than their RETENTION_*_DAYS."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would go; change nothing.")

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        counts = retention_apply(dry_run=dry_run)
        if dry_run:
            self.stdout.write("Dry run: nothing was changed; these would be removed.")
        for kind in KINDS:
            description, setting = DESCRIPTIONS[kind]
            days = getattr(settings, setting)
            self.stdout.write(f"{kind}: {counts[kind]} {description} (older than {days} days)")
