"""Summary rows the report pages read, kept up to date as events arrive (never counted on a poll)."""

from __future__ import annotations

from django.db import models


class CampaignBreakdown(models.Model):
    """One counter of a campaign along one dimension.

    ``kind`` names the dimension and ``key`` the bucket, e.g. ("hour:open", "2026-11-27T14"),
    ("domain:bounced", "gmail.com"), ("link:click", "https://…"), ("bounce:reason",
    "Permanent/General"). Updated with an upsert in the event's own transaction.
    """

    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.CASCADE, related_name="breakdowns")
    kind = models.CharField(max_length=32)
    key = models.CharField(max_length=500)
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "kind", "key"], name="breakdown_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}: {self.count}"
