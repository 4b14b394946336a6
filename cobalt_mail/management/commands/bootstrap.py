"""Idempotent first-run set-up for `make run`: a staff account and demo data."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from audiences.models import Contact, ContactList, Subscription
from campaigns.models import Campaign

SIMULATOR = ["success", "bounce", "ooto", "complaint", "suppressionlist"]
FIRST_NAMES = ["Ada", "Ben", "Chloé", "Dmitri", "Eva", "Farah", "Gus", "Hana", "Ivo", "Jun"]
CLUBS = ["Rowing", "Chess", "Hiking", "Choir"]


class Command(BaseCommand):
    help = "Create the staff account (STAFF_USERNAME / STAFF_PASSWORD) and demo data, once."

    def handle(self, *args, **options) -> None:
        username, password = self._staff()
        self._demo()
        self.stdout.write(f"Staff login: {username} / {password}")

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
    def _demo(self) -> None:
        demo, created = ContactList.objects.get_or_create(
            name="Demo members", defaults={"description": "Sample contacts, including SES simulator addresses."}
        )
        if not created:
            return
        addresses = [(f"{name}@simulator.amazonses.com", name.title(), "Simulator") for name in SIMULATOR]
        for number in range(1, 196):
            first = FIRST_NAMES[number % len(FIRST_NAMES)]
            # Ordinary addresses: the local event simulator gives them deliveries, opens and clicks.
            addresses.append((f"member{number}@example.org", first, f"Member {number}"))
        for index, (email, first, last) in enumerate(addresses):
            contact, _ = Contact.objects.get_or_create(
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
