"""Test sends: the campaign as a chosen contact would get it, to a few typed addresses.

They take the real path (a post_office ``Email`` row with its ``Log``, django-ses, SES) but create
no ``Recipient`` rows and carry no ``campaign=`` message tag, so the campaign's figures and the
event matching never see them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils import timezone
from post_office.models import STATUS as OUTBOX_STATUS
from post_office.models import Email as OutboxEmail
from post_office.models import Log as OutboxLog

from campaigns.models import Campaign, Contact
from campaigns.rendering import CompiledCampaign, compile_campaign, preview_context, render_for

TEST_SUBJECT_PREFIX = "[TEST] "


@dataclass(frozen=True)
class TestSendResult:
    address: str
    ok: bool
    detail: str  # the SES message id, or the error


def build_test_message(*, campaign: Campaign, compiled: CompiledCampaign, address: str, context: dict):
    rendered = render_for(compiled, context)
    headers = {
        # Not "campaign=": events for test messages must not be counted as the campaign's.
        "X-SES-MESSAGE-TAGS": f"test_send={campaign.pk}",
        "List-Unsubscribe": f"<{context['unsubscribe_url']}>",
    }
    if settings.AWS_SES_CONFIGURATION_SET:
        headers["X-SES-CONFIGURATION-SET"] = settings.AWS_SES_CONFIGURATION_SET
    message = EmailMultiAlternatives(
        subject=TEST_SUBJECT_PREFIX + rendered.subject,
        body=rendered.text,
        from_email=campaign.from_email,
        to=[address],
        reply_to=[campaign.reply_to] if campaign.reply_to else None,
        headers=headers,
    )
    message.attach_alternative(rendered.html, "text/html")
    for filename, content, mimetype in rendered.attachments:
        message.attach(filename, content, mimetype)
    return message


def campaign_test_send(*, campaign: Campaign, addresses: list[str], contact: Contact | None) -> list[TestSendResult]:
    """Send the campaign rendered for ``contact`` (or the sample contact) to each address."""
    from campaigns.engine import ses_connection

    compiled = compile_campaign(campaign)
    context = preview_context(contact)
    results = []
    for address in addresses:
        message = build_test_message(campaign=campaign, compiled=compiled, address=address, context=context)
        outbox = OutboxEmail.objects.create(
            from_email=campaign.from_email,
            to=[address],
            subject=message.subject,
            message=message.body,
            html_message=message.alternatives[0].content,
            status=OUTBOX_STATUS.queued,
            backend_alias=settings.POST_OFFICE["DEFAULT_MAILER"],
        )
        try:
            ses_connection().send_messages([message])
        except Exception as error:  # reported to staff per address; one bad address must not stop the rest
            reason = _describe(error)
            _record(outbox, ok=False, detail=reason)
            results.append(TestSendResult(address, False, reason))
            continue
        message_id = message.extra_headers.get("message_id", "")
        _record(outbox, ok=True, detail=message_id)
        results.append(TestSendResult(address, True, message_id))
    return results


def _describe(error: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"SES refused it: {details.get('Code', '')}: {details.get('Message', '') or error}"
    return f"{type(error).__name__}: {error}"


def _record(outbox: OutboxEmail, *, ok: bool, detail: str) -> None:
    status = OUTBOX_STATUS.sent if ok else OUTBOX_STATUS.failed
    OutboxEmail.objects.filter(pk=outbox.pk).update(status=status, last_updated=timezone.now())
    OutboxLog.objects.create(email=outbox, status=status, message=detail[:255])
