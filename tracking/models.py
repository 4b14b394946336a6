"""SES events as SNS delivered them, and the local event simulator's state (development only)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


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
            # The API's events feed and the webhooks read by write time (api/feed.py). Opens and
            # clicks, most of the table, are not feed items: left out, they cost nothing to write.
            models.Index(
                fields=["received_at", "id"],
                name="event_feed_idx",
                condition=models.Q(event_type__in=["bounce", "complaint", "delivery", "subscription"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_event_type_display()} {self.email}"


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
