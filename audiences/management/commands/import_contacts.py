"""python manage.py import_contacts FILE --list NAME [--organisation SLUG] [--update] [--map COLUMN=FIELD ...]"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audiences.imports import (
    FIELDS,
    ImportRefused,
    contacts_import,
    file_head_read,
    mapping_check,
    mapping_describe,
    mapping_guess,
)
from audiences.models import ContactList
from audiences.services import AudienceError, list_save
from organisations import audit
from organisations.models import Organisation


class Command(BaseCommand):
    help = (
        "Import contacts from a CSV file (header row naming the columns) into a list. The email, first "
        "and last name columns are recognised by their names (English, German, French, Dutch, Spanish, "
        "Italian); every other column becomes an attribute. --map changes that. Bad rows are reported "
        "and written to FILE.rejected.csv; good rows are imported. --organisation names the organisation "
        "whose contacts and list these are (needed when the installation has several)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--list", required=True, dest="list_name", help="list name (created if missing)")
        parser.add_argument(
            "--organisation",
            dest="organisation_slug",
            metavar="SLUG",
            help="the organisation's slug (may be left out when there is only one organisation)",
        )
        parser.add_argument("--update", action="store_true", help="update names and attributes of existing contacts")
        parser.add_argument("--rejected", type=Path, help="where to write rejected rows (default FILE.rejected.csv)")
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            dest="mappings",
            metavar="COLUMN=FIELD",
            help=f"import the column named COLUMN as FIELD, one of {', '.join(FIELDS)} (repeatable)",
        )

    def handle(
        self,
        *args,
        file: Path,
        list_name: str,
        organisation_slug: str | None,
        update: bool,
        rejected: Path | None,
        mappings: list[str],
        **options,
    ) -> None:
        if not file.is_file():
            raise CommandError(f"{file} is not a file.")
        rejected = rejected or file.with_name(file.name + ".rejected.csv")
        organisation = _organisation(organisation_slug)
        lists = ContactList.objects.filter(organisation=organisation)
        contact_list = lists.filter(name__iexact=list_name.strip()).first()
        try:
            header = file_head_read(file).header
            fields = _fields_chosen(header, mappings)
            # Checked before the list is created: a refused file or mapping changes nothing.
            mapping_check(header, fields)
            self.stdout.write(f"Columns: {mapping_describe(header, fields)}")
            if contact_list is None:
                contact_list = list_save(contact_list=ContactList(organisation=organisation), name=list_name)
            report = contacts_import(
                organisation_id=organisation.pk,
                path=file,
                contact_list=contact_list,
                update=update,
                source=f"import: {file.name}",
                rejected_path=rejected,
                fields=fields,
            )
        except ImportRefused as refusal:
            raise CommandError(f"{file}: {refusal} Nothing was changed.") from None
        except AudienceError as refusal:
            raise CommandError(str(refusal)) from None
        audit.record(
            None,
            audit.Action.IMPORT,
            f"Imported {file.name} from the command line into “{contact_list.name}”: {report.created} new, "
            f"{report.updated} updated, {report.rejected} rejected",
            organisation=organisation,
            object_type="contactlist",
            object_id=contact_list.pk,
            rows=report.rows_read,
        )
        self.stdout.write(
            f"{report.rows_read} rows read ({report.encoding}): {report.created} new, {report.updated} updated, "
            f"{report.unchanged} unchanged; {report.subscribed} added to “{contact_list.name}”, "
            f"{report.not_resubscribed} left unsubscribed or suppressed; {report.rejected} rejected."
        )
        if report.rewritten:
            self.stdout.write(f"{report.rewritten} addresses were rewritten to the bare address, for example:")
            for note in report.rewritten_preview:
                self.stdout.write(f"  line {note['line']}: {note['written']} → {note['email']}")
        for rejection in report.rejected_preview[:20]:
            self.stdout.write(f"  line {rejection['line']}: {rejection['reason']}")
        if report.rejected:
            self.stdout.write(f"All rejected rows: {rejected}")
        else:
            rejected.unlink(missing_ok=True)


def _organisation(slug: str | None) -> Organisation:
    """The organisation named by --organisation; without it, the installation's only one."""
    if slug:
        found = Organisation.objects.filter(slug=slug.strip()).first()
        if found is None:
            known = ", ".join(Organisation.objects.order_by("slug").values_list("slug", flat=True)[:20])
            raise CommandError(f"There is no organisation “{slug}” (organisations: {known}).")
        return found
    organisations = list(Organisation.objects.order_by("slug")[:21])
    if len(organisations) == 1:
        return organisations[0]
    if not organisations:
        raise CommandError("There is no organisation yet: create one with organisation_create.")
    known = ", ".join(organisation.slug for organisation in organisations[:20])
    raise CommandError(
        f"This installation has several organisations: say whose contacts these are with --organisation SLUG "
        f"(one of {known})."
    )


def _fields_chosen(header: list[str], mappings: list[str]) -> list[str]:
    """The guessed mapping with each --map COLUMN=FIELD applied (column names in any case)."""
    fields = mapping_guess(header)
    positions = {name.strip().lower(): position for position, name in reversed(list(enumerate(header)))}
    for mapping in mappings:
        column, separator, chosen = mapping.rpartition("=")
        chosen = chosen.strip().lower().replace("-", "_").replace(" ", "_")
        if not separator or chosen not in FIELDS:
            raise CommandError(f"--map {mapping}: write COLUMN=FIELD, where FIELD is one of {', '.join(FIELDS)}.")
        position = positions.get(column.strip().lower())
        if position is None:
            found = ", ".join(f"“{name}”" for name in header)
            raise CommandError(f"--map {mapping}: the file has no column “{column.strip()}” (it has {found}).")
        fields[position] = chosen
    return fields
