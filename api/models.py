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
