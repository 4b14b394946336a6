"""Campaigns, their recipients, layouts, attachments, saved templates and the send-rate clock.

State changes go through ``campaigns.services`` (campaign life cycle) and ``campaigns.delivery.engine``
(per-recipient delivery); views and tasks never assign ``status`` themselves.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from audiences.models import Contact, ContactList, Segment
from organisations.models import organisation_field

BODY_MODES = [("rich", "Rich text"), ("markdown", "Markdown"), ("html", "HTML")]


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        SENT = "sent", "Sent"
        CANCELLED = "cancelled", "Cancelled"

    class Kind(models.TextChoices):
        CAMPAIGN = "campaign", "Campaign"
        # One message to one address from a saved template (POST /api/v1/messages): a campaign of
        # one recipient, so that it takes the engine's path (claims, limiter, suppression, tracking),
        # ahead of bulk work (the express lane in campaigns/delivery/engine.py). Never listed with
        # the campaigns.
        MESSAGE = "message", "Single message"

    organisation = organisation_field()
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.CAMPAIGN, db_default=Kind.CAMPAIGN)
    name = models.CharField(max_length=200)
    subject = models.CharField(max_length=255)
    preheader = models.CharField(max_length=255, blank=True)
    from_email = models.CharField("From", max_length=254)
    reply_to = models.CharField(max_length=254, blank=True)
    html_body = models.TextField("HTML body")
    text_body = models.TextField("Plain-text body", blank=True)

    include_lists = models.ManyToManyField(ContactList, blank=True, related_name="campaigns_including")
    exclude_lists = models.ManyToManyField(ContactList, blank=True, related_name="campaigns_excluding")
    include_segments = models.ManyToManyField(Segment, blank=True, related_name="campaigns_including")
    exclude_segments = models.ManyToManyField(Segment, blank=True, related_name="campaigns_excluding")

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT, db_index=True)
    status_reason = models.CharField(max_length=500, blank=True)
    scheduled_at = models.DateTimeField(null=True, blank=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set when the audience has been frozen into Recipient rows.
    snapshot_at = models.DateTimeField(null=True, blank=True)
    left_out = models.JSONField(default=dict, blank=True)
    # Dispatchers touch this every batch; a stale value tells the engine tick to start new ones.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When a dispatcher last held unsent messages: the campaign wants its share of the rate
    # (campaigns/delivery/shares.py).
    demand_at = models.DateTimeField(null=True, blank=True)
    # Paused until then by the organisation's quota: the engine tick resumes it (campaigns/quotas.py).
    resume_at = models.DateTimeField(null=True, blank=True)
    # The post_office template the messages are rendered from (subject/html/text).
    email_template = models.ForeignKey(
        "post_office.EmailTemplate", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Composer (campaigns.composer.rendering): how the body is written, its source for Markdown / rich text,
    # and the mail layout wrapped around it (none = the body is the whole message).
    body_mode = models.CharField(max_length=8, choices=BODY_MODES, default="html")
    body_source = models.TextField("Body source", blank=True, default="")
    layout = models.ForeignKey(
        "campaigns.Layout", null=True, blank=True, default=None, on_delete=models.SET_NULL, related_name="campaigns"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organisation", "kind", "-created_at", "-id"], name="campaign_org_kind_created_idx"),
            models.Index(fields=["organisation", "status"], name="campaign_org_status_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SENT, self.Status.CANCELLED}

    @property
    def is_editable(self) -> bool:
        return self.status in {self.Status.DRAFT, self.Status.SCHEDULED}


# What a campaign's content is made of: copied as a whole by duplicate, save-as-template and
# start-from-template.
CONTENT_FIELDS = ("subject", "preheader", "body_mode", "body_source", "html_body", "text_body", "layout")


def content_of(source) -> dict:
    """The content fields of a Campaign or CampaignTemplate, ready for create()/defaults."""
    return {name: getattr(source, name) for name in CONTENT_FIELDS}


class Recipient(models.Model):
    """One contact frozen into one campaign: the unit of delivery work."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients")
    contact = models.ForeignKey(Contact, null=True, on_delete=models.SET_NULL, related_name="recipients")
    email = models.CharField(max_length=254)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    # The claim that holds the recipient while it is "sending": one random token per claim, and
    # the claim's heartbeat, renewed by its owner every few seconds while it works (the engine
    # requeues a claim that missed its heartbeats for SEND_STALE_SECONDS). Every final write checks
    # the token, so an owner that lost its claim never overwrites the new owner's outcome.
    claim_token = models.CharField(max_length=32, null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Earliest time a retry may be attempted (throttling / transient errors back off).
    not_before = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    ses_message_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    error = models.CharField(max_length=500, blank=True)
    outbox_email = models.ForeignKey(
        "post_office.Email", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A single message's own merge fields ({"first_name", "last_name", "attributes"}), given by the
    # API call; None for campaign recipients, whose fields come from their contact.
    merge_data = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "email"], name="recipient_unique_email"),
        ]
        indexes = [
            models.Index(fields=["campaign", "status", "id"], name="recipient_work_idx"),
            # The minute tick's search for recipients a dead worker left "sending": a few rows, not
            # a scan of every campaign's recipients.
            models.Index(fields=["claimed_at"], condition=models.Q(status="sending"), name="recipient_inflight_idx"),
            # A dispatcher's heartbeat renews its claims by token: again only the in-flight rows.
            models.Index(fields=["claim_token"], condition=models.Q(status="sending"), name="recipient_claim_idx"),
            # The single messages page's search by address: only messages' recipients (merge_data is
            # set for them alone), so campaigns' snapshots write nothing more.
            models.Index(
                fields=["email"],
                condition=models.Q(merge_data__isnull=False),
                name="recipient_message_email_idx",
                opclasses=["varchar_pattern_ops"],
            ),
        ]

    def __str__(self) -> str:
        return self.email


class SendRateState(models.Model):
    """The database rate limiter's shared clock (one row per limiter name)."""

    name = models.CharField(max_length=50, primary_key=True)
    next_free = models.FloatField(default=0.0)


class Layout(models.Model):
    """The mail around a campaign body: header, footer (unsubscribe link, postal address), colours.

    ``html`` is a sandboxed template (see ``campaigns.composer.rendering``) holding ``{{ content }}`` where the
    body goes; ``css`` is inlined into every element when the campaign is compiled.
    """

    organisation = organisation_field()
    name = models.CharField(max_length=200)
    html = models.TextField("Layout HTML")
    css = models.TextField("CSS", blank=True)
    primary_colour = models.CharField(max_length=7, default="#1f4e8c")
    background_colour = models.CharField(max_length=7, default="#f4f5f7")
    text_colour = models.CharField(max_length=7, default="#222222")
    logo_url = models.URLField(max_length=500, blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [models.UniqueConstraint(fields=["organisation", "name"], name="layout_org_name_unique")]

    def __str__(self) -> str:
        return self.name


def attachment_path(instance: CampaignAttachment, filename: str) -> str:
    return f"attachments/campaign-{instance.campaign_id}/{filename}"


class CampaignAttachment(models.Model):
    """A file sent with every message of a campaign; stored once, attached at send time."""

    organisation = organisation_field()
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=attachment_path, max_length=500)
    filename = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.filename

    def save(self, *args, **kwargs) -> None:
        self.organisation_id = self.campaign.organisation_id  # an attachment follows its campaign
        super().save(*args, **kwargs)


class CampaignTemplate(models.Model):
    """A campaign's content saved for reuse: new campaigns can start from it."""

    organisation = organisation_field()
    name = models.CharField(max_length=200)
    subject = models.CharField(max_length=255)
    preheader = models.CharField(max_length=255, blank=True)
    body_mode = models.CharField(max_length=8, choices=BODY_MODES, default="html")
    body_source = models.TextField(blank=True)
    html_body = models.TextField()
    text_body = models.TextField(blank=True)
    layout = models.ForeignKey(Layout, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organisation", "name"], name="template_org_name_unique")]

    def __str__(self) -> str:
        return self.name


class LinkCheckResult(models.Model):
    """One address in a campaign's message and what fetching it gave (``campaigns.composer.linkcheck``).

    A check replaces the campaign's rows; a django-q2 task claims the queued ones (conditional
    UPDATE), fetches them a few at a time and writes each result as it comes.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Waiting"
        CHECKING = "checking", "Checking"
        DONE = "done", "Done"

    class Outcome(models.TextChoices):
        PENDING = "", "Not checked yet"
        OK = "ok", "Works"
        BROKEN = "broken", "Broken"
        UNREACHABLE = "unreachable", "Not reachable"
        REFUSED = "refused", "Not checked (private address)"
        SKIPPED = "skipped", "Not checked"
        INVALID = "invalid", "Not a valid address"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="link_checks")
    position = models.PositiveSmallIntegerField()
    url = models.TextField()
    text = models.CharField(max_length=500, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, blank=True, default=Outcome.PENDING)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    final_url = models.TextField(blank=True)
    elapsed_ms = models.PositiveIntegerField(null=True, blank=True)
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["campaign", "position"]

    def __str__(self) -> str:
        return self.url

    @property
    def elapsed_seconds(self) -> float | None:
        return None if self.elapsed_ms is None else self.elapsed_ms / 1000

    @property
    def redirected(self) -> bool:
        return bool(self.final_url) and self.final_url != self.url


class SesTenant(models.Model):
    """The organisation's SES tenant (README "SES tenants", ``SES_TENANTS=1``).

    Made by ``ses_setup`` (or a task when an organisation is created) with its resources associated
    (``campaigns.delivery.tenants``); every send of the organisation's messages names it, so that
    SES can pause one organisation instead of the whole account. The status is SES's answer to
    ``GetReputationEntity`` at ``checked_at`` (empty until the first check).
    """

    class SendingStatus(models.TextChoices):
        ENABLED = "ENABLED", "Sending"
        REINSTATED = "REINSTATED", "Sending (reinstated after a review)"
        DISABLED = "DISABLED", "Paused by SES"

    class Impact(models.TextChoices):
        NONE = "NONE", "None"
        LOW = "LOW", "Low"
        HIGH = "HIGH", "High"

    organisation = models.OneToOneField(
        "organisations.Organisation", on_delete=models.CASCADE, related_name="ses_tenant"
    )
    # SES allows 64 letters, digits, hyphens and underscores; fixed once made (SES cannot rename).
    tenant_name = models.CharField(max_length=64, unique=True)
    tenant_arn = models.CharField(max_length=300, blank=True)  # what GetReputationEntity is asked about
    # ARNs associated with the tenant so far (configuration set, identities): only new ones are added.
    resources = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sending_status = models.CharField(max_length=12, choices=SendingStatus.choices, blank=True)
    reputation_impact = models.CharField(max_length=8, choices=Impact.choices, default=Impact.NONE)
    status_reason = models.TextField(blank=True)  # SES's cause for the status, as it gave it
    checked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.tenant_name

    @property
    def paused(self) -> bool:
        return self.sending_status == self.SendingStatus.DISABLED

    @property
    def notice(self) -> str:
        """The tenant's state in plain words, for the health panel and the organisation's page."""
        if not self.checked_at:
            return "SES has not been asked about this organisation's tenant yet (it is checked every few minutes)."
        if self.paused:
            reason = self.status_reason or "SES gave no reason"
            return (
                f"SES has paused sending for this organisation: {reason}. Its sending campaigns are paused;"
                " resume them once AWS has reinstated the tenant (SES console, Tenants)."
            )
        impact = {
            self.Impact.HIGH: " SES has found a high-impact reputation problem: read its findings in the SES console.",
            self.Impact.LOW: " SES has found a low-impact reputation problem: keep an eye on bounces and complaints.",
        }.get(self.reputation_impact, "")
        return f"SES lets this organisation send ({self.get_sending_status_display().lower()}).{impact}"
