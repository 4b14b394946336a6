"""Figures per campaign, kept up to date with the work that moves them (never counted on a poll).

``stats.counters`` and ``stats.breakdowns`` are the only writers. The tables kept their names
when these models moved here from ``tracking`` and ``reports``.
"""

from __future__ import annotations

from django.db import models


class CampaignStats(models.Model):
    """Counters per campaign, updated in the same transaction as the event that moves them."""

    campaign = models.OneToOneField("campaigns.Campaign", on_delete=models.CASCADE, related_name="stats")
    # The frozen audience's size, written once at snapshot time: the whole that progress divides.
    recipients = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    bounced_hard = models.PositiveIntegerField(default=0)
    bounced_soft = models.PositiveIntegerField(default=0)
    complained = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    delayed = models.PositiveIntegerField(default=0)
    rendering_failures = models.PositiveIntegerField(default=0)
    opens = models.PositiveIntegerField(default=0)
    human_opens = models.PositiveIntegerField(default=0)
    unique_opens = models.PositiveIntegerField(default=0)
    unique_human_opens = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    human_clicks = models.PositiveIntegerField(default=0)
    unique_clicks = models.PositiveIntegerField(default=0)
    unique_human_clicks = models.PositiveIntegerField(default=0)
    # Recipients with a human open or a human click: the click-to-open rate's denominator (a click
    # with images off proves the message was read, so "clicked" is always a part of "engaged").
    unique_human_engaged = models.PositiveIntegerField(default=0)
    unsubscribed = models.PositiveIntegerField(default=0)
    # Recipients the engine (or a cancel) finished without sending; with ``sent`` they let the
    # campaign page show progress without counting a million recipient rows every poll.
    failed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True, blank=True)
    # The reputation guard's starting point: the counters when a person last resumed the campaign
    # (zero before), so that it judges what happens from then on, not the evidence just reviewed.
    guard_base_delivered = models.PositiveIntegerField(default=0)
    guard_base_bounced_hard = models.PositiveIntegerField(default=0)
    guard_base_complained = models.PositiveIntegerField(default=0)
    guard_resumed_at = models.DateTimeField(null=True, blank=True)

    COUNTER_FIELDS = (
        "sent",
        "delivered",
        "bounced_hard",
        "bounced_soft",
        "complained",
        "rejected",
        "delayed",
        "rendering_failures",
        "opens",
        "human_opens",
        "unique_opens",
        "unique_human_opens",
        "clicks",
        "human_clicks",
        "unique_clicks",
        "unique_human_clicks",
        "unique_human_engaged",
        "unsubscribed",
        "failed",
        "skipped",
    )
    # Moved by recipient status changes (engine, cancel), in the same transaction.
    OUTCOME_FIELDS = ("sent", "failed", "skipped")

    class Meta:
        db_table = "tracking_campaignstats"


class RecipientActivity(models.Model):
    """What each campaign recipient did, once per kind: the markers that make counters count recipients.

    The first open / human open / click / human click / human open-or-click (unique counts) and
    the recipient's outcomes (delivered, bounced hard / soft, complained, rejected, unsubscribed),
    which also feed the report's filters. SES may notify one bounce twice (configuration set +
    identity topic); only the notification that inserts the marker moves the counter.

    One row per (recipient, kind), inserted with ON CONFLICT DO NOTHING ... RETURNING in the
    event batch's transaction: the rows a batch actually inserted are its firsts. The unique
    constraint decides, so two workers handling two notifications of the same recipient at once
    cannot both count it (the second waits for the first's commit, then inserts nothing).
    """

    class Kind(models.TextChoices):
        OPEN = "open", "First open"
        HUMAN_OPEN = "human_open", "First human open"
        CLICK = "click", "First click"
        HUMAN_CLICK = "human_click", "First human click"
        HUMAN_ENGAGED = "human_engaged", "First human open or click"
        # Outcomes (first of each kind only): counters and the report's recipient filters.
        DELIVERED = "delivered", "Delivered"
        BOUNCED = "bounced", "Bounced (hard or soft)"
        BOUNCED_HARD = "bounced_hard", "Bounced (hard)"
        BOUNCED_SOFT = "bounced_soft", "Bounced (soft)"
        COMPLAINED = "complained", "Complained"
        REJECTED = "rejected", "Rejected by SES"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"

    recipient = models.ForeignKey("campaigns.Recipient", on_delete=models.CASCADE, related_name="activity")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    occurred_at = models.DateTimeField()

    class Meta:
        db_table = "tracking_recipientactivity"
        constraints = [models.UniqueConstraint(fields=["recipient", "kind"], name="recipient_activity_unique")]
        # The API's events feed reads unsubscribes by time (api/feed.py); a partial index, so the
        # other kinds (most rows) do not pay for it.
        indexes = [
            models.Index(
                fields=["occurred_at", "id"],
                name="activity_unsubscribed_idx",
                condition=models.Q(kind="unsubscribed"),
            )
        ]


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
        db_table = "reports_campaignbreakdown"

    def __str__(self) -> str:
        return f"{self.kind} {self.key}: {self.count}"


class OrganisationDay(models.Model):
    """Messages per organisation per day: the Usage page, its CSV for billing, quotas and reputation.

    ``day`` is the installation's local date (``TIME_ZONE``, whatever the staff member's own).
    ``sent`` counts recipients SES accepted for campaigns and single messages (the engine's group
    commit), ``test_sent`` test messages SES accepted; ``delivered``, ``bounced_hard`` and
    ``complained`` count recipients as the campaign counters do (the webhook's event batches), by
    the day the event happened. Moved only by ``stats.counters.usage_add`` in the transaction of the
    work that moves them; never recounted from recipients on a read.
    """

    organisation = models.ForeignKey("organisations.Organisation", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    sent = models.PositiveBigIntegerField(default=0)
    test_sent = models.PositiveBigIntegerField(default=0)
    delivered = models.PositiveBigIntegerField(default=0)
    bounced_hard = models.PositiveBigIntegerField(default=0)
    complained = models.PositiveBigIntegerField(default=0)

    COUNTER_FIELDS = ("sent", "test_sent", "delivered", "bounced_hard", "complained")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organisation", "day"], name="organisation_day_unique")]
        # The page and the CSV read a range of days for every organisation.
        indexes = [models.Index(fields=["day", "organisation"], name="organisation_day_day_idx")]

    def __str__(self) -> str:
        return f"{self.organisation_id} {self.day}: {self.sent} sent"
