"""python manage.py organisation_grant USERNAME ORG_SLUG ROLE [--revoke]"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from organisations.models import Membership, Organisation, Role
from organisations.services import OrganisationRefused, membership_grant, membership_revoke


class Command(BaseCommand):
    help = (
        "Give a user a role in an organisation (viewer, editor, sender or administrator; each includes the "
        "ones before it), changing the role they have there; --revoke removes them from it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("organisation", metavar="ORG_SLUG")
        parser.add_argument(
            "role", nargs="?", default="", help=", ".join(Role.values) + " (may be left out with --revoke)"
        )
        parser.add_argument("--revoke", action="store_true", help="remove the user from the organisation")

    def handle(self, *args, username: str, organisation: str, role: str, revoke: bool, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(
                f"There is no user “{username}”. Create one with manage.py createsuperuser or the admin."
            )
        found = Organisation.objects.filter(slug=organisation).first()
        if found is None:
            raise CommandError(f"There is no organisation with the slug “{organisation}”.")
        if role not in Role.values and not (revoke and not role):
            raise CommandError(f"“{role}” is not a role. The roles are: {', '.join(Role.values)}.")
        try:
            if revoke:
                self._revoke(user, found)
            else:
                membership_grant(organisation=found, user=user, role=role)
                self.stdout.write(f"{username} is {Role(role).label} of {found.name}.")
        except OrganisationRefused as refusal:
            raise CommandError(str(refusal)) from None

    def _revoke(self, user, organisation: Organisation) -> None:
        membership = Membership.objects.filter(user=user, organisation=organisation).select_related("user").first()
        if membership is None:
            raise CommandError(f"{user.get_username()} is not a member of {organisation.name}.")
        membership_revoke(membership=membership)
        self.stdout.write(f"{user.get_username()} was removed from {organisation.name}.")
