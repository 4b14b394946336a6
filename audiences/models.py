"""People and what they agreed to: contacts, lists, subscriptions, segments, imports, suppression.

Writes go through ``audiences.services`` (and ``audiences.imports`` for CSV uploads). The tables
kept their names when these models moved here from ``campaigns`` and ``tracking``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from organisations.models import organisation_field


def normalise_email(address: str) -> str:
    """One spelling per mailbox: trimmed, lower-cased, domain converted to IDNA (punycode).

    Lower-casing the local part is not strictly RFC 5321, but every large provider treats it as
    case-insensitive and duplicates that differ only in case are a far worse problem.
    """
    address = (address or "").strip().strip("<>").strip()
    local, _, domain = address.rpartition("@")
    if not local:
        return address.lower()
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        pass  # validation reports it; keep the text as typed
    return f"{local}@{domain}".lower()


class Contact(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"

    organisation = organisation_field()
    email = models.CharField(max_length=254)
    # The membership database's own id for the person (the API's key: /api/v1/contacts/{external_id});
    # empty for contacts added by staff or a CSV import until a sync adopts them by address.
    # A database default too: raw INSERTs that do not name the column (the benchmarks' seeding) still work.
    external_id = models.CharField(max_length=200, blank=True, default="", db_default="")
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    source = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "campaigns_contact"
        ordering = ["email"]
        # The same address may be a contact of several organisations, each with its own name,
        # lists and consent. Every index starts with the organisation: every read is scoped by it.
        constraints = [
            models.UniqueConstraint(fields=["organisation", "email"], name="contact_org_email_unique"),
            models.UniqueConstraint(
                fields=["organisation", "external_id"],
                condition=~models.Q(external_id=""),
                name="contact_org_external_id_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["organisation", "status", "id"], name="contact_org_status_idx"),
            # The API's change feed: GET /api/v1/contacts?updated_since=… pages in (updated_at, id).
            models.Index(fields=["organisation", "updated_at", "id"], name="contact_org_updated_idx"),
            models.Index("organisation", Lower("last_name"), name="contact_org_last_name_idx"),
            models.Index(fields=["organisation", "created_at"], name="contact_org_created_idx"),
            # Tracking and suppression find every organisation's contact of an address.
            models.Index(fields=["email"], name="contact_email_idx"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    def save(self, *args, **kwargs) -> None:
        self.email = normalise_email(self.email)
        super().save(*args, **kwargs)


class ContactList(models.Model):
    organisation = organisation_field()
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "campaigns_contactlist"
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organisation", "name"], name="list_org_name_unique")]

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    class Status(models.TextChoices):
        SUBSCRIBED = "subscribed", "Subscribed"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="subscriptions")
    contact_list = models.ForeignKey(ContactList, on_delete=models.CASCADE, related_name="subscriptions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUBSCRIBED)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "campaigns_subscription"
        constraints = [
            models.UniqueConstraint(fields=["contact", "contact_list"], name="subscription_unique"),
        ]
        indexes = [models.Index(fields=["contact_list", "status", "contact"], name="subscription_list_idx")]


class ErasedAddress(models.Model):
    """What is left of an erased contact that had refused mail: its address as a SHA-256 hash.

    Erasure (``audiences.sync.contact_erase``) removes the person's data; when they had
    unsubscribed, bounced or complained, this row keeps a later sync from mailing the address
    again: a contact created for the same address in the same organisation gets back the status
    and the list opt-outs kept here (and the row is then removed: the contact carries them)."""

    organisation = organisation_field()
    email_sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Contact.Status.choices)
    # Ids of the organisation's lists the contact had unsubscribed from (not personal data).
    lists_left = models.JSONField(default=list, blank=True)
    erased_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation", "email_sha256"], name="erased_org_hash_unique"),
        ]

    def __str__(self) -> str:
        return f"erased {self.email_sha256[:12]}…"


class SyncRun(models.Model):
    """A replace sync spread over several API calls, named by the client (``audiences.sync``).

    Each call of the run adds and updates like a merge and remembers which contacts it named for
    the replaced lists (``SyncRunMember``); the final call removes the lists' other members and
    deletes the run. A run not finished within ``SYNC_RUN_HOURS`` of its first call is abandoned:
    nothing is removed, its members are deleted by the engine tick, and the row stays a few days
    as a marker, so that a late call of it is refused rather than taken for a new run's first."""

    organisation = organisation_field()
    name = models.CharField(max_length=100)  # the client's run id
    lists = models.JSONField(default=list)  # the replaced lists' names, as the first call gave them
    created_at = models.DateTimeField(default=timezone.now)
    abandoned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organisation", "name"], name="syncrun_org_name_unique")]
        indexes = [models.Index(fields=["created_at"], name="syncrun_created_idx")]

    def __str__(self) -> str:
        return self.name


class SyncRunMember(models.Model):
    """A contact a call of the run named for one of the replaced lists (or whose row it rejected).

    Ids without foreign keys: the rows live a day at most, one run may hold a million, and a
    deleted contact's row is harmless (the final removal only looks at existing subscriptions);
    no cascade from contacts or lists, and no index but the unique one, slows the bulk inserts."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="members", db_index=False)
    contact_list_id = models.BigIntegerField()
    contact_id = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "contact_list_id", "contact_id"], name="syncrunmember_unique")
        ]

    def __str__(self) -> str:
        return f"run {self.run_id}: contact {self.contact_id} in list {self.contact_list_id}"


class Segment(models.Model):
    """Saved rules (see ``audiences.segments``); ``rules`` is a list of {field, operator, value}."""

    class Match(models.TextChoices):
        ALL = "all", "All rules"
        ANY = "any", "Any rule"

    organisation = organisation_field()
    name = models.CharField(max_length=200)
    match = models.CharField(max_length=3, choices=Match.choices, default=Match.ALL)
    rules = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "campaigns_segment"
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organisation", "name"], name="segment_org_name_unique")]

    def __str__(self) -> str:
        return self.name


class ImportJob(models.Model):
    """One CSV upload being imported by a django-q2 task; the page polls its counters.

    An upload from the browser starts as "mapping": nothing is written until staff confirm which
    column holds what (``column_mapping``); confirming queues the task.
    """

    class Status(models.TextChoices):
        MAPPING = "mapping", "Waiting for the columns to be confirmed"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Importing"
        DONE = "done", "Done"
        REFUSED = "refused", "Refused"
        FAILED = "failed", "Failed"

    organisation = organisation_field()
    file = models.FileField(upload_to="imports/%Y/%m/", max_length=300)
    original_name = models.CharField(max_length=255, blank=True)
    contact_list = models.ForeignKey(
        ContactList, null=True, blank=True, on_delete=models.SET_NULL, related_name="import_jobs"
    )
    update_existing = models.BooleanField(default=False)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    error = models.CharField(max_length=1000, blank=True)
    encoding = models.CharField(max_length=40, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    bytes_read = models.BigIntegerField(default=0)
    rows_read = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    subscribed = models.PositiveIntegerField(default=0)
    not_resubscribed = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    # The first rejections ({"line", "reason", "email"}) for the page; all of them are in rejected_file.
    rejected_preview = models.JSONField(default=list, blank=True)
    rejected_file = models.FileField(upload_to="imports/rejected/", max_length=300, blank=True)
    # Per CSV column, in file order: {"name": header text, "field": "email" | "first_name" |
    # "last_name" | "attribute" | "ignore"}. Guessed at upload, confirmed (or changed) by staff.
    column_mapping = models.JSONField(default=list, blank=True)
    # The first few data rows (cells cut short), shown beside the mapping; emptied once confirmed.
    sample_rows = models.JSONField(default=list, blank=True)
    # Addresses accepted after rewriting ("Name <a@b.org>" → a@b.org), and the first few of them.
    rewritten = models.PositiveIntegerField(default=0)
    rewritten_preview = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    # Moved with every batch; an import that stops beating is restarted (audiences.imports).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "campaigns_importjob"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organisation", "-created_at", "-id"], name="import_org_created_idx")]

    def __str__(self) -> str:
        return self.original_name or f"Import {self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.REFUSED, self.Status.FAILED}

    @property
    def encoding_label(self) -> str:
        return {"utf-8-sig": "UTF-8", "cp1252": "Windows-1252"}.get(self.encoding, self.encoding)

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        return min(99, round(100 * self.bytes_read / self.size_bytes)) if self.size_bytes else 0


# --- composer: layouts, attachments, reusable templates ----------------------------------------


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
    # Suppression is installation-wide (it is about the address and the SES account's
    # reputation); this says whose mail caused it (none: added by an operator or before organisations).
    organisation = models.ForeignKey(
        "organisations.Organisation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "tracking_suppression"
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

    class Meta:
        db_table = "tracking_addresshealth"
