"""Organisations (a tree: national body → state bodies → clubs), who may do what in each, and the
append-only audit log.

Every row that belongs to someone (contacts, lists, segments, imports, campaigns, layouts,
templates, attachments) has a field named ``organisation``; recipients, events and counters follow
their campaign. Reads are scoped by ``organisations.scope``; the permission table is in
``cobalt_mail.permissions``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    """Each role includes the ones before it."""

    VIEWER = "viewer", "Viewer"
    EDITOR = "editor", "Editor"
    SENDER = "sender", "Sender"
    ADMINISTRATOR = "administrator", "Administrator"


ROLE_RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.SENDER: 3, Role.ADMINISTRATOR: 4}
ROLE_HELP = {
    Role.VIEWER: "sees reports, campaigns and audiences, changes nothing",
    Role.EDITOR: "also edits contacts, lists, segments, imports and campaigns, and sends tests",
    Role.SENDER: "also sends, schedules, pauses, resumes and cancels campaigns",
    Role.ADMINISTRATOR: "also manages layouts, members, roles and child organisations",
}


def role_at_least(role: str | None, minimum: str) -> bool:
    return role is not None and ROLE_RANK.get(role, 0) >= ROLE_RANK[minimum]


class Organisation(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    postal_address = models.TextField(blank=True)
    sender_name = models.CharField("Default sender name", max_length=200, blank=True)
    reply_to = models.EmailField("Default reply-to", max_length=254, blank=True)
    is_active = models.BooleanField("Active", default=True)
    # Its weight when several organisations send at once: the rate is split in proportion
    # (campaigns/delivery/shares.py). Site operators set it.
    send_weight = models.PositiveSmallIntegerField(
        "Share of the send rate",
        default=1,
        db_default=1,
        help_text="When several organisations send at once, the rate is split in proportion to these weights.",
    )
    # Messages it may send per local day and per calendar month (test sends count); empty: no limit.
    # Set by site operators or the parent organisation's administrators (campaigns/quotas.py).
    daily_quota = models.PositiveIntegerField("Messages per day", null=True, blank=True)
    monthly_quota = models.PositiveIntegerField("Messages per month", null=True, blank=True)
    # Sending on hold: its bounce or complaint rate reached SES's review levels (organisations/
    # reputation.py). Nothing of it may start sending until a site operator lifts the hold; the
    # figures then count from that moment (the counts of that day then, in hold_lifted_base).
    held_at = models.DateTimeField(null=True, blank=True)
    held_reason = models.TextField(blank=True, default="", db_default="")
    hold_lifted_at = models.DateTimeField(null=True, blank=True)
    hold_lifted_base = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["organisation__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["organisation", "user"], name="membership_unique")]
        indexes = [models.Index(fields=["user", "organisation"], name="membership_user_idx")]

    def __str__(self) -> str:
        return f"{self.user} – {self.get_role_display()} of {self.organisation}"


# A fresh installation's organisation; its administrators rename it on the organisation page.
FIRST_ORGANISATION_NAME = "Our organisation"


def sole_organisation_id() -> int | None:
    """The default of every ``organisation`` field: the installation's only organisation.

    A fresh installation has exactly one (created on first use). With several there is no default
    (None): a row saved without naming its organisation fails the NOT NULL constraint instead of
    landing in a guessed one.
    """
    ids = list(Organisation.objects.order_by("id").values_list("id", flat=True)[:2])
    if not ids:
        return Organisation.objects.create(name=FIRST_ORGANISATION_NAME, slug="main").id
    return ids[0] if len(ids) == 1 else None


def organisation_field(**extra) -> models.ForeignKey:
    """The ``organisation`` field of every row that belongs to someone."""
    return models.ForeignKey(
        "organisations.Organisation",
        on_delete=models.PROTECT,
        default=sole_organisation_id,
        related_name="+",
        **extra,
    )


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("The audit log is append-only.")

    def delete(self):
        raise PermissionError("The audit log is append-only.")


class AuditEntry(models.Model):
    """Who did what, when, from which address, in which organisation. Never changed or deleted."""

    class Action(models.TextChoices):
        LOGIN = "login", "Logged in"
        LOGIN_FAILED = "login_failed", "Failed login"
        LOGOUT = "logout", "Logged out"
        SEND = "send", "Sent a campaign"
        SCHEDULE = "schedule", "Scheduled a campaign"
        PAUSE = "pause", "Paused a campaign"
        RESUME = "resume", "Resumed a campaign"
        CANCEL = "cancel", "Cancelled a campaign"
        DELETE = "delete", "Deleted"
        IMPORT = "import", "Imported contacts"
        EXPORT = "export", "Exported"
        SUPPRESSION = "suppression", "Changed the suppression list"
        ROLE_GRANTED = "role_granted", "Granted a role"
        ROLE_REMOVED = "role_removed", "Removed a role"
        ORGANISATION = "organisation", "Changed an organisation"
        FORBIDDEN = "forbidden", "Tried to open another organisation's page"
        API_KEY = "api_key", "Created or revoked an API key"
        API_AUTH_FAILED = "api_auth_failed", "Failed API authentication"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True)  # kept when the user is deleted
    action = models.CharField(max_length=16, choices=Action.choices)
    summary = models.CharField(max_length=500)
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=40, blank=True)
    rows = models.PositiveIntegerField(null=True, blank=True)
    remote_address = models.CharField(max_length=64, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organisation", "-created_at", "-id"], name="audit_org_time_idx")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.username}: {self.summary}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise PermissionError("The audit log is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("The audit log is append-only.")


class SenderIdentity(models.Model):
    """A domain or an address the organisation sends from, created in SES (SESv2, Easy DKIM).

    It lives here, beside the organisation, because its page is an organisation page and the
    layers import downwards only: campaigns (the sender choices, the send-time check) and the API
    read it from above. ``value`` is unique installation-wide: SES has one identity per name in
    the account, so a domain belongs to one organisation.
    """

    class Kind(models.TextChoices):
        DOMAIN = "domain", "Domain"
        ADDRESS = "address", "Address"

    class Status(models.TextChoices):
        # SES's VerificationStatus, lower-cased
        PENDING = "pending", "Waiting for verification"
        VERIFIED = "verified", "Verified"
        FAILED = "failed", "Verification failed"
        TEMPORARY_FAILURE = "temporary_failure", "Temporary failure"

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="sender_identities")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    value = models.CharField(max_length=254, unique=True)  # lower-case domain (IDNA) or address
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    dkim_status = models.CharField(max_length=20, blank=True)  # SES's DkimAttributes.Status
    dkim_tokens = models.JSONField(default=list, blank=True)  # Easy DKIM: three tokens
    mail_from_domain = models.CharField("Custom MAIL FROM domain", max_length=254, blank=True)
    mail_from_status = models.CharField(max_length=20, blank=True)  # SES's MailFromDomainStatus, lower-cased
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)  # the last check's failure, in words
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["kind", "value"]
        indexes = [models.Index(fields=["status", "last_checked_at"], name="sender_identity_check_idx")]

    def __str__(self) -> str:
        return self.value

    @property
    def verified(self) -> bool:
        return self.status == self.Status.VERIFIED
