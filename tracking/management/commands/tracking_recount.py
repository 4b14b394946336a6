"""`manage.py tracking_recount [--campaign ID] [--fix]`: prove (or restore) counters = events + recipients.

Recipient counters are recounted as distinct recipients (SES may notify one bounce twice), and
``unsubscribed`` from the recipients' unsubscribe markers (see tracking.recount.stats_recount).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from stats.models import CampaignStats
from tracking.recount import counters_repair


class Command(BaseCommand):
    help = (
        "Recount each campaign's counters (distinct recipients, not notifications) and report breakdowns from its "
        "stored events and its recipients' statuses; --fix writes the recount."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--campaign", type=int, help="Only this campaign id.")
        parser.add_argument("--fix", action="store_true", help="Set differing counters to the recount.")

    def handle(self, *args, **options) -> None:
        campaign_ids = CampaignStats.objects.order_by("campaign_id").values_list("campaign_id", flat=True)
        if options["campaign"]:
            campaign_ids = campaign_ids.filter(campaign_id=options["campaign"])
            if not campaign_ids:
                raise CommandError(f"Campaign {options['campaign']} has no counters.")
        differing = 0
        for campaign_id in campaign_ids:
            # The report breakdowns (per hour, link, domain, bounce reason) are counters too.
            differences = counters_repair(campaign_id=campaign_id, fix=options["fix"])
            if differences:
                differing += 1
                described = ", ".join(f"{name} {stored} → {value}" for name, (stored, value) in differences.items())
                verb = "fixed" if options["fix"] else "differs"
                self.stdout.write(f"Campaign {campaign_id} {verb}: {described}")
        if not differing:
            self.stdout.write(
                self.style.SUCCESS("Every campaign's counters equal a recount of its events and recipients.")
            )
        elif not options["fix"]:
            raise CommandError(f"{differing} campaign(s) differ; run again with --fix to repair.")
