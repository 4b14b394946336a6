"""What the engine does with a recipient after an SES call: the outcome, and SES errors classified."""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from campaigns.models import Recipient

THROTTLE_CODES = {"Throttling", "TooManyRequestsException", "ThrottlingException"}
# The daily quota is "Throttling: Daily message quota exceeded" on v1, LimitExceededException on v2.
QUOTA_CODES = {"LimitExceededException"}
PAUSE_CODES = {
    "AccountSendingPausedException",
    "AccountSuspendedException",
    "SendingPausedException",
    "ConfigurationSetDoesNotExist",
    "ConfigurationSetDoesNotExistException",
    "MailFromDomainNotVerifiedException",
    "MailFromDomainNotVerified",
}

# SES_TENANTS: a send naming a tenant that a resource of the message is not associated with.
TENANT_CODES = {"BadRequestException", "NotFoundException"}
TENANT_HINT = "Run `manage.py ses_setup --tenants-only` (it associates the organisation's senders), then resume."


@dataclass
class Outcome:
    recipient: Recipient
    kind: str  # sent | retry | failed | pause
    message_id: str = ""
    reason: str = ""
    delay: float = 0.0
    counts_as_attempt: bool = True
    token: str = ""  # the claim that held the recipient when the call was made
    context: dict | None = None  # the merge context, kept with the post_office Email


def classify_error(error: Exception, recipient: Recipient) -> Outcome:
    """Map an SES error to what the engine does with the recipient (see README, "SES errors")."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "") or str(error)
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
        if "daily message quota" in message.lower() or code in QUOTA_CODES:
            return Outcome(recipient, "pause", reason="The SES daily sending quota is used up. " + _quota_hint())
        if code in PAUSE_CODES:
            return Outcome(recipient, "pause", reason=f"SES refused to send: {code}: {message}"[:500])
        if code in TENANT_CODES and "tenant" in message.lower():
            # A resource the message names is not associated with the organisation's SES tenant: every
            # message of the campaign would be refused alike (a setup gap, not the recipient's fault).
            return Outcome(recipient, "pause", reason=f"SES refused to send: {code}: {message} {TENANT_HINT}"[:500])
        if code in THROTTLE_CODES or "maximum sending rate" in message.lower():
            # Not a failure: back off (growing with repeated throttles) and try again.
            delay = min(60.0, 0.5 * 2.0 ** min(recipient.attempts, 7))
            return Outcome(recipient, "retry", reason=f"{code}: {message}"[:500], delay=delay, counts_as_attempt=False)
        if status >= 500:
            return _transient(recipient, f"{code or status}: {message}")
        return Outcome(recipient, "failed", reason=f"{code}: {message}"[:500])
    if isinstance(error, (BotoCoreError, ConnectionError, TimeoutError, OSError)):
        return _transient(recipient, f"{type(error).__name__}: {error}")
    return Outcome(recipient, "failed", reason=f"{type(error).__name__}: {error}"[:500])


def _transient(recipient: Recipient, reason: str) -> Outcome:
    if recipient.attempts >= settings.SEND_MAX_ATTEMPTS:
        return Outcome(recipient, "failed", reason=f"Gave up after {recipient.attempts} attempts: {reason}"[:500])
    return Outcome(recipient, "retry", reason=reason[:500], delay=min(300.0, 2.0 ** (recipient.attempts - 1)))


def _quota_hint() -> str:
    return (
        "SES counts the quota over a rolling 24 hours: resume the campaign when earlier sends have aged out "
        "(at the latest 24 hours after this pause), or ask AWS for a higher quota."
    )
