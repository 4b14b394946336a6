"""python manage.py organisation_create NAME [--slug SLUG] [--parent SLUG]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from organisations.models import Organisation
from organisations.services import OrganisationRefused, organisation_create


class Command(BaseCommand):
    help = (
        "Create an organisation, at the top or under another one (--parent SLUG). "
        "Then give someone its administrator role with organisation_grant."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--slug", default="", help="short name for commands (default: made from NAME)")
        parser.add_argument("--parent", default="", metavar="SLUG", help="the slug of the organisation above it")

    def handle(self, *args, name: str, slug: str, parent: str, **options) -> None:
        above = None
        if parent:
            above = Organisation.objects.filter(slug=parent).first()
            if above is None:
                raise CommandError(f"There is no organisation with the slug “{parent}”.")
        try:
            organisation = organisation_create(name=name, slug=slug, parent=above)
        except OrganisationRefused as refusal:
            raise CommandError(str(refusal)) from None
        where = f" under {above.name}" if above else ""
        self.stdout.write(f"Created {organisation.name} (slug {organisation.slug}){where}.")
