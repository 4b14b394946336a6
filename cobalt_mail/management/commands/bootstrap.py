"""Idempotent first-run set-up for `make run`: a staff account and demo data.

The demo data is a small federation: the installation's first organisation is the national body
(200 contacts including the SES simulator addresses, a list and a draft campaign), with two clubs
under it, each with its own members, list and draft campaign, and one login per role in the
first club (plus the second club's administrator, who must see none of the first club's data).
The demo logins share one password, kept in var/demo-password.txt and printed in `make run`'s banner.
"""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from audiences.models import Contact, ContactList, Subscription
from campaigns.models import Campaign
from organisations.models import FIRST_ORGANISATION_NAME, Membership, Organisation, Role, sole_organisation_id
from organisations.services import membership_grant, organisation_create

SIMULATOR = ["success", "bounce", "ooto", "complaint", "suppressionlist"]
FIRST_NAMES = ["Ada", "Ben", "Chloé", "Dmitri", "Eva", "Farah", "Gus", "Hana", "Ivo", "Jun"]
CLUBS = ["Rowing", "Chess", "Hiking", "Choir"]
NATIONAL_NAME = "Cobalt Sports Federation"
# (slug, name, member address domain)
DEMO_CLUBS = [
    ("club1", "Riverside Rowing Club", "riverside.example"),
    ("club2", "Hilltop Chess Club", "hilltop.example"),
]
CLUB_MEMBERS = 20
DEMO_PASSWORD_FILE = os.path.join("var", "demo-password.txt")
# One login per role in the first club, and the second club's administrator.
DEMO_LOGINS = [
    ("club1-viewer", "club1", Role.VIEWER),
    ("club1-editor", "club1", Role.EDITOR),
    ("club1-sender", "club1", Role.SENDER),
    ("club1-admin", "club1", Role.ADMINISTRATOR),
    ("club2-admin", "club2", Role.ADMINISTRATOR),
]


class Command(BaseCommand):
    help = "Create the staff account (STAFF_USERNAME / STAFF_PASSWORD) and demo data, once."

    def handle(self, *args, **options) -> None:
        username, password = self._staff()
        national = self._demo()
        self._federation(national)
        self.stdout.write(f"Staff login: {username} / {password}")
        self.stdout.write(f"Demo logins: {', '.join(name for name, _, _ in DEMO_LOGINS)} / {demo_password()}")

    def _staff(self) -> tuple[str, str]:
        User = get_user_model()
        username = os.environ.get("STAFF_USERNAME", "admin")
        password_file = os.path.join("var", "staff-password.txt")
        password = os.environ.get("STAFF_PASSWORD")
        if not password and os.path.exists(password_file):
            password = open(password_file).read().strip()
        if not password:
            password = secrets.token_urlsafe(12)
            os.makedirs("var", exist_ok=True)
            with open(password_file, "w") as handle:
                handle.write(password)
        user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@cobalt.example"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return username, password

    @transaction.atomic
    def _demo(self) -> Organisation:
        sole_organisation_id()  # creates the first organisation on a fresh installation
        national = Organisation.objects.order_by("id").first()
        demo, created = ContactList.objects.get_or_create(
            organisation=national,
            name="Demo members",
            defaults={"description": "Sample contacts, including SES simulator addresses."},
        )
        if not created:
            return national
        if national.name == FIRST_ORGANISATION_NAME:
            national.name = NATIONAL_NAME
            national.save(update_fields=["name"])
        addresses = [(f"{name}@simulator.amazonses.com", name.title(), "Simulator") for name in SIMULATOR]
        for number in range(1, 196):
            first = FIRST_NAMES[number % len(FIRST_NAMES)]
            # Ordinary addresses: the local event simulator gives them deliveries, opens and clicks.
            addresses.append((f"member{number}@example.org", first, f"Member {number}"))
        for index, (email, first, last) in enumerate(addresses):
            contact, _ = Contact.objects.get_or_create(
                organisation=national,
                email=email,
                defaults={
                    "first_name": first,
                    "last_name": last,
                    "attributes": {"club": CLUBS[index % len(CLUBS)], "member_number": index + 1},
                    "source": "demo",
                },
            )
            Subscription.objects.get_or_create(contact=contact, contact_list=demo)
        campaign = Campaign.objects.create(
            organisation=national,
            name="Welcome to the new season",
            subject="Hello {{ first_name|default:'member' }}, the season starts soon",
            from_email='"Cobalt Club" <news@cobalt.example>',
            html_body=(
                "<h1>Hello {{ first_name|default:'member' }}!</h1>\n"
                "<p>The {{ attributes.club }} season starts on Saturday. "
                '<a href="https://example.com/season">See the programme</a>.</p>\n'
                '<p style="font-size:12px">Cobalt Club · <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
            ),
        )
        campaign.include_lists.add(demo)
        return national

    @transaction.atomic
    def _federation(self, national: Organisation) -> None:
        """The two clubs under the national body and the demo logins, once."""
        if Organisation.objects.filter(slug=DEMO_CLUBS[0][0]).exists():
            self._sync_demo_passwords()
            return
        clubs = {}
        for slug, name, domain in DEMO_CLUBS:
            clubs[slug] = club = organisation_create(name=name, slug=slug, parent=national)
            club.sender_name, club.postal_address = name, f"{name}, 1 Club Lane, Sporttown"
            club.save(update_fields=["sender_name", "postal_address"])
            self._club_data(club, domain)
        password = demo_password()
        User = get_user_model()
        for username, slug, role in DEMO_LOGINS:
            user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@cobalt.example"})
            user.set_password(password)
            user.save()
            if not Membership.objects.filter(user=user, organisation=clubs[slug]).exists():
                membership_grant(organisation=clubs[slug], user=user, role=role)

    def _sync_demo_passwords(self) -> None:
        """The banner prints var/demo-password.txt: keep the demo logins on it if the file was made anew."""
        password = demo_password()
        for user in get_user_model().objects.filter(username__in=[name for name, _, _ in DEMO_LOGINS]):
            if not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])

    def _club_data(self, club: Organisation, domain: str) -> None:
        members = ContactList.objects.create(
            organisation=club, name=f"{club.name} members", description="This club's own members."
        )
        for number in range(1, CLUB_MEMBERS + 1):
            contact = Contact.objects.create(
                organisation=club,
                email=f"member{number}@{domain}",
                first_name=FIRST_NAMES[number % len(FIRST_NAMES)],
                last_name=f"Member {number}",
                attributes={"member_number": number},
                source="demo",
            )
            Subscription.objects.create(contact=contact, contact_list=members)
        campaign = Campaign.objects.create(
            organisation=club,
            name=f"{club.name}: training times",
            subject="Hello {{ first_name|default:'member' }}, this season's training times",
            from_email=f'"{club.name}" <news@cobalt.example>',
            html_body=(
                "<h1>Hello {{ first_name|default:'member' }}!</h1>\n"
                f"<p>Training at {club.name} starts next week.</p>\n"
                f'<p style="font-size:12px">{club.name} · <a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a></p>'
            ),
        )
        campaign.include_lists.add(members)


def demo_password() -> str:
    """The demo logins' password: made once, kept in var/demo-password.txt (make run's banner prints it)."""
    if os.path.exists(DEMO_PASSWORD_FILE):
        return open(DEMO_PASSWORD_FILE).read().strip()
    password = secrets.token_urlsafe(9)
    os.makedirs("var", exist_ok=True)
    with open(DEMO_PASSWORD_FILE, "w") as handle:
        handle.write(password)
    return password
