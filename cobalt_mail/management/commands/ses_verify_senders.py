"""Ask SES to verify the sender domains (SENDER_ADDRESSES). On the local SES this is immediate."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from campaigns.delivery.ses import ses_client


class Command(BaseCommand):
    help = "Request SES verification of every sender domain in SENDER_ADDRESSES."

    def handle(self, *args, **options) -> None:
        client = ses_client()
        for domain in sorted({address.rpartition("@")[2] for address in settings.SENDER_ADDRESSES}):
            client.verify_domain_identity(Domain=domain)
            self.stdout.write(f"Verification requested for {domain}")
