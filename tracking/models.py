"""SES events, the suppression list and the per-campaign counters the reports read."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F
from django.utils import timezone


class Suppression(models.Model):
    """An address no campaign may reach, whatever its contact or list status says."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        SOFT_BOUNCES = "soft_bounces", "Repeated soft bounces"
        COMPLAINT = "complaint", "Complaint"
        MANUAL = "manual", "Added by staff"
        IMPORTED = "imported", "Imported"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed through SES"

    email = models.CharField(max_length=254, unique=True)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.email


class AddressHealth(models.Model):
    """Consecutive soft bounces per address, across campaigns (reset by a delivery)."""

    email = models.CharField(max_length=254, unique=True)
    consecutive_soft_bounces = models.PositiveIntegerField(default=0)
    # The SES message whose soft bounce was counted last: SES may notify one bounce twice
    # (configuration set + identity topic), and that is one bounce in a row, not two.
    last_soft_bounce_message_id = models.CharField(max_length=100, blank=True)
    updated_at = models.DateTimeField(auto_now=True)


class Event(models.Model):
    """One SES event as SNS delivered it; unique on the SNS MessageId so replays change nothing."""

    class Type(models.TextChoices):
        SEND = "send", "Send"
        DELIVERY = "delivery", "Delivery"
        BOUNCE = "bounce", "Bounce"
        COMPLAINT = "complaint", "Complaint"
        REJECT = "reject", "Reject"
        OPEN = "open", "Open"
        CLICK = "click", "Click"
        RENDERING_FAILURE = "rendering_failure", "Rendering failure"
        DELIVERY_DELAY = "delivery_delay", "Delivery delay"
        SUBSCRIPTION = "subscription", "Subscription"

    sns_message_id = models.CharField(max_length=100, unique=True)
    event_type = models.CharField(max_length=20, choices=Type.choices)
    campaign = models.ForeignKey(
        "campaigns.Campaign", null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    recipient = models.ForeignKey(
        "campaigns.Recipient", null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    ses_message_id = models.CharField(max_length=100, blank=True, db_index=True)
    email = models.CharField(max_length=254, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    bounce_type = models.CharField(max_length=20, blank=True)
    bounce_subtype = models.CharField(max_length=40, blank=True)
    detail = models.CharField(max_length=1000, blank=True)  # diagnostic, feedback type, reason
    link = models.URLField(max_length=2000, blank=True)
    ip_address = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    is_machine = models.BooleanField(default=False)
    payload = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["campaign", "event_type", "occurred_at"], name="event_campaign_idx"),
            models.Index(fields=["recipient", "occurred_at"], name="event_recipient_idx"),
            models.Index(fields=["occurred_at"], name="event_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_event_type_display()} {self.email}"


class CampaignStats(models.Model):
    """Counters per campaign, updated in the same transaction as the event that moves them."""

    campaign = models.OneToOneField("campaigns.Campaign", on_delete=models.CASCADE, related_name="stats")
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

    @classmethod
    def outcomes_add(cls, campaign_id: int, **counts: int) -> None:
        """Add to ``sent``/``failed``/``skipped``; call inside the transaction that moved the rows."""
        changes = {name: F(name) + count for name, count in counts.items() if count}
        if changes:
            cls.objects.filter(campaign_id=campaign_id).update(**changes)


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
        constraints = [models.UniqueConstraint(fields=["recipient", "kind"], name="recipient_activity_unique")]


class SimulatorCursor(models.Model):
    """How far the local event simulator (``make run``) has read what a local SES accepted.

    Kept in the database it posts events for, so a fresh database starts from nothing: state in a
    file shared by every database once delivered an earlier run's complaint to a new one. One row
    per local SES address; ``instance`` names the local SES process (a new one starts at 0).
    Development only.
    """

    ses_endpoint = models.CharField(max_length=200, unique=True)
    instance = models.CharField(max_length=100, blank=True)
    position = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)


class SimulatedNotification(models.Model):
    """An SES event the local simulator planned and has not posted yet (development only).

    Written with the cursor in one transaction, deleted once the webhook answered: a restarted
    simulator neither repeats nor loses events. The SNS MessageId is fixed when planned, so a post
    repeated after a crash is recognised by the webhook as the same notification.
    """

    due_at = models.FloatField(db_index=True)  # Unix time at which to post it
    sns_message_id = models.CharField(max_length=100, unique=True)
    ses_message_id = models.CharField(max_length=100)
    record = models.JSONField()
