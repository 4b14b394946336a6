"""python manage.py apikey_create ORG_SLUG ROLE [--name NAME] [--expires YYYY-MM-DD]"""

from __future__ import annotations

from datetime import date, datetime, time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from api.keys import KeyRefused, api_key_create
from api.models import KEY_ROLES
from organisations.models import Organisation

ROLES = [value for value, _ in KEY_ROLES]


class Command(BaseCommand):
    help = (
        "Make an API key for an organisation with a role (viewer, editor or sender) and print it once: "
        "only its hash is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organisation", metavar="ORG_SLUG")
        parser.add_argument("role", help=", ".join(ROLES))
        parser.add_argument("--name", default="Made with apikey_create", help="which program uses the key")
        parser.add_argument("--expires", default="", metavar="YYYY-MM-DD", help="last day the key works")

    def handle(self, *args, organisation: str, role: str, name: str, expires: str, **options) -> None:
        found = Organisation.objects.filter(slug=organisation).first()
        if found is None:
            raise CommandError(f"There is no organisation with the slug “{organisation}”.")
        if role not in ROLES:
            raise CommandError(f"“{role}” is not a role for a key. The roles are: {', '.join(ROLES)}.")
        expires_at = None
        if expires:
            try:
                expires_at = timezone.make_aware(datetime.combine(date.fromisoformat(expires), time.max))
            except ValueError:
                raise CommandError(f"“{expires}” is not a date: write it as YYYY-MM-DD.") from None
        try:
            key, raw = api_key_create(organisation=found, role=role, name=name, expires_at=expires_at)
        except KeyRefused as refusal:
            raise CommandError(str(refusal)) from None
        self.stderr.write(f"API key “{key.name}” for {found.name} ({key.get_role_display()}). It is shown once:")
        self.stdout.write(raw)
