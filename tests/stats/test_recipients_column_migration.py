"""stats 0002: the recipient total moves from a breakdown row (kind "meta") to CampaignStats.recipients.

The test migrates the shared test database backwards; it ends by migrating it to the latest
migrations again, whatever happened, because the tests after it need the current schema.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from stats.models import CampaignBreakdown, CampaignStats
from tests.migrations_helpers import applied_state, migrate_to_latest, migrations_enabled

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("stats", "0001_initial")]
FROZEN_AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def campaigns_at_0001() -> dict[str, int]:
    """Campaigns as 0001 kept them: the total in a "meta" breakdown row beside the counter row."""
    apps = applied_state()
    campaign = apps.get_model("campaigns", "Campaign")
    stats = apps.get_model("stats", "CampaignStats")
    breakdown = apps.get_model("stats", "CampaignBreakdown")

    def new(name: str, **fields) -> int:
        fields = {"subject": name, "from_email": "news@example.org", "html_body": "<p>Hi</p>"} | fields
        return campaign.objects.create(name=name, **fields).pk

    ids = {
        "sent": new("Sent", status="sent", snapshot_at=FROZEN_AT),
        "no_counter_row": new("Frozen, no counter row", status="sending", snapshot_at=FROZEN_AT),
        "empty_audience": new("Frozen with nobody", status="sent", snapshot_at=FROZEN_AT),
        "draft": new("Draft"),
    }
    stats.objects.create(campaign_id=ids["sent"], sent=1180, delivered=1150, failed=20)
    stats.objects.create(campaign_id=ids["empty_audience"])
    stats.objects.create(campaign_id=ids["draft"])
    for name, total in (("sent", 1234), ("no_counter_row", 7), ("empty_audience", 0)):
        breakdown.objects.create(campaign_id=ids[name], kind="meta", key="recipients", count=total)
    breakdown.objects.create(campaign_id=ids["sent"], kind="domain:recipients", key="example.org", count=1234)
    breakdown.objects.create(campaign_id=ids["sent"], kind="hour:open", key="2026-11-02T09", count=12)
    return ids


def test_the_recipient_total_moves_from_the_meta_row_to_the_column_and_back():
    with migrations_enabled():
        try:
            MigrationExecutor(connection).migrate(BEFORE)
            ids = campaigns_at_0001()

            migrate_to_latest()

            totals = dict(CampaignStats.objects.values_list("campaign_id", "recipients"))
            assert totals == {ids["sent"]: 1234, ids["no_counter_row"]: 7, ids["empty_audience"]: 0, ids["draft"]: 0}
            sent = CampaignStats.objects.get(campaign_id=ids["sent"])
            assert (sent.sent, sent.delivered, sent.failed) == (1180, 1150, 20)  # the counters stay as they were
            assert not CampaignBreakdown.objects.filter(kind="meta").exists()
            assert sorted(CampaignBreakdown.objects.values_list("kind", "key", "count")) == [
                ("domain:recipients", "example.org", 1234),
                ("hour:open", "2026-11-02T09", 12),
            ]

            MigrationExecutor(connection).migrate(BEFORE)

            breakdown = applied_state().get_model("stats", "CampaignBreakdown")
            meta = dict(breakdown.objects.filter(kind="meta", key="recipients").values_list("campaign_id", "count"))
            # Every frozen campaign has its meta row again; the draft never had one.
            assert meta == {ids["sent"]: 1234, ids["no_counter_row"]: 7, ids["empty_audience"]: 0}
        finally:
            migrate_to_latest()
