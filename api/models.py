"""API keys: one organisation and one role each, stored as a hash (the key is shown once)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from organisations.models import Organisation, Role

# An API key acts for a program, never as an administrator: members and roles stay with people.
KEY_ROLES = [
    (Role.VIEWER.value, Role.VIEWER.label),
    (Role.EDITOR.value, Role.EDITOR.label),
    (Role.SENDER.value, Role.SENDER.label),
]


class ApiKey(models.Model):
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=16, choices=KEY_ROLES)
    # The key's first characters, shown in lists and logs so that a key can be recognised.
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)  # SHA-256 of the whole key
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The per-key rate limit: requests in the current one-minute window.
    window_started_at = models.DateTimeField(null=True, blank=True)
    window_requests = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organisation", "-created_at"], name="apikey_org_created_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"


class WebhookEndpoint(models.Model):
    """An organisation's address that gets its mail events as signed JSON POSTs (api/webhooks.py).

    ``cursor`` is the feed position after the last delivered item: items after it are still owed.
    While a batch is failing, ``next_attempt_at`` says when it may be tried again and
    ``failing_since`` when the first of its failures happened.
    """

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.CharField(max_length=500)
    description = models.CharField(max_length=100, blank=True)
    event_types = models.JSONField(default=list)  # names from api.feed.FEED_TYPES
    # Stored in the clear: every delivery is signed with it. Shown once, when made or renewed.
    secret = models.CharField(max_length=80)
    cursor = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    # A worker's lease on the endpoint: a second worker skips it until the lease ends.
    claim_token = models.CharField(max_length=32, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["is_active", "next_attempt_at"], name="webhook_due_idx")]

    def __str__(self) -> str:
        return self.url

    @property
    def secret_hint(self) -> str:
        return self.secret[:10] + "…"


class WebhookDelivery(models.Model):
    """One batch of feed items sent to one endpoint: the page's delivery log.

    The items are not stored (they hold addresses): a retry reads the same items again from the
    feed, from ``after_cursor`` up to and including ``last_cursor``.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        RETRYING = "retrying", "Failed, will retry"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Gave up"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    delivery_id = models.CharField(max_length=40, unique=True)  # the Cobalt-Webhook-Id header
    after_cursor = models.CharField(max_length=200)
    last_cursor = models.CharField(max_length=200)
    item_count = models.PositiveIntegerField()
    event_types = models.CharField(max_length=200, blank=True)  # e.g. "bounce, delivery": for the log
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_log_idx")]


class IdempotentRequest(models.Model):
    """A ``POST /messages`` answer kept under its ``Idempotency-Key`` for 24 hours: the same key
    again gets this answer and sends nothing more. The row is written in the transaction that
    creates the message, so a key is taken exactly when its message exists."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)  # SHA-256 of the parsed body, keys sorted
    status = models.PositiveSmallIntegerField()
    answer = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organisation", "key"], name="idempotency_org_key_unique")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]
