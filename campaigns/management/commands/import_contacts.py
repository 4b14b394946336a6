"""python manage.py import_contacts FILE --list NAME [--update]"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaigns.imports import ImportRefused, contacts_import
from campaigns.models import ContactList


class Command(BaseCommand):
    help = (
        "Import contacts from a CSV file (header row with an email column) into a list. "
        "Bad rows are reported and written to FILE.rejected.csv; good rows are imported."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--list", required=True, dest="list_name", help="list name (created if missing)")
        parser.add_argument("--update", action="store_true", help="update names and attributes of existing contacts")
        parser.add_argument("--rejected", type=Path, help="where to write rejected rows (default FILE.rejected.csv)")

    def handle(self, *args, file: Path, list_name: str, update: bool, rejected: Path | None, **options) -> None:
        if not file.is_file():
            raise CommandError(f"{file} is not a file.")
        rejected = rejected or file.with_name(file.name + ".rejected.csv")
        contact_list = ContactList.objects.filter(name__iexact=list_name.strip()).first()
        try:
            # The list is only created for a file that is actually imported.
            from campaigns.imports import file_inspect

            file_inspect(file)
            if contact_list is None:
                contact_list = ContactList.objects.create(name=list_name.strip())
            report = contacts_import(
                path=file,
                contact_list=contact_list,
                update=update,
                source=f"import: {file.name}",
                rejected_path=rejected,
            )
        except ImportRefused as refusal:
            raise CommandError(f"{file}: {refusal} Nothing was changed.") from None
        self.stdout.write(
            f"{report.rows_read} rows read ({report.encoding}): {report.created} new, {report.updated} updated, "
            f"{report.unchanged} unchanged; {report.subscribed} added to “{contact_list.name}”, "
            f"{report.not_resubscribed} left unsubscribed or suppressed; {report.rejected} rejected."
        )
        for rejection in report.rejected_preview[:20]:
            self.stdout.write(f"  line {rejection['line']}: {rejection['reason']}")
        if report.rejected:
            self.stdout.write(f"All rejected rows: {rejected}")
        else:
            rejected.unlink(missing_ok=True)
