"""Test sends: the campaign as a chosen contact would get it, to a few typed addresses.

They take the real path (the campaign's MIME, a post_office ``Email`` row with its ``Log``,
django-ses, SES) but create no ``Recipient`` rows and carry no ``campaign=`` message tag, so the
campaign's figures and the event matching never see them. Each one SES accepts counts in its
organisation's usage (``test_sent``: quotas count test messages too).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate

from botocore.exceptions import ClientError
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from post_office.models import STATUS as OUTBOX_STATUS
from post_office.models import Email as OutboxEmail
from post_office.models import Log as OutboxLog

from audiences.models import Contact
from campaigns.composer.rendering import preview_context, render_for
from campaigns.delivery.mime import prepare_campaign
from campaigns.delivery.ses import ses_connection
from campaigns.models import Campaign
from campaigns.quotas import quota_refusal
from organisations.reputation import hold_refusal  # the check campaigns.services.organisation_hold_check makes
from stats.counters import usage_add

TEST_SUBJECT_PREFIX = "[TEST] "


@dataclass(frozen=True)
class TestSendResult:
    address: str
    ok: bool
    detail: str  # the SES message id, or the error


class TestSendRefused(Exception):
    """Nothing may be sent (the organisation's quota); the message says why, for staff."""


def campaign_test_send(*, campaign: Campaign, addresses: list[str], contact: Contact | None) -> list[TestSendResult]:
    """Send the campaign rendered for ``contact`` (or the sample contact) to each address.

    Test messages count toward the organisation's quotas: none is sent if they do not all fit."""
    refusal = hold_refusal(campaign.organisation_id) or quota_refusal(
        campaign.organisation_id, len(addresses), what="test messages"
    )
    if refusal:
        raise TestSendRefused(refusal)
    prepared = prepare_campaign(campaign)
    context = preview_context(contact)
    rendered = render_for(prepared.compiled, context)
    results = []
    for address in addresses:
        message = prepared.assemble(
            rendered,
            to=address,
            date=formatdate(usegmt=True),
            # Not "campaign=": events for test messages must not be counted as the campaign's.
            tags=f"test_send={campaign.pk}",
            unsubscribe_url=context["unsubscribe_url"],  # an inert link: nobody to unsubscribe
            subject_prefix=TEST_SUBJECT_PREFIX,
            one_click=False,
        )
        outbox = OutboxEmail.objects.create(
            from_email=campaign.from_email,
            to=[address],
            subject=TEST_SUBJECT_PREFIX + rendered.subject,
            message=rendered.text,
            html_message=rendered.html,
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
        with transaction.atomic():
            _record(outbox, ok=True, detail=message_id)
            usage_add(organisation_id=campaign.organisation_id, test_sent=1)
        results.append(TestSendResult(address, True, message_id))
    return results


def _describe(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"SES refused it: {details.get('Code', '')}: {details.get('Message', '') or error}"
    return f"{type(error).__name__}: {error}"


def _record(outbox: OutboxEmail, *, ok: bool, detail: str) -> None:
    status = OUTBOX_STATUS.sent if ok else OUTBOX_STATUS.failed
    OutboxEmail.objects.filter(pk=outbox.pk).update(status=status, last_updated=timezone.now())
    OutboxLog.objects.create(email=outbox, status=status, message=detail[:255])
