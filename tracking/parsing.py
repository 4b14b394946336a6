"""Read one SES record: its type, addresses, details, and whether an open or click was a machine's.

Both formats are read: event publishing (``eventType``) and identity notifications
(``notificationType``). An open or click is a machine's (``Event.is_machine``; reports show human
figures beside raw ones) when:

1. its user agent is a mail-privacy proxy or image cache (``PROXY_AGENTS``: Gmail, Yahoo), which
   fetches images whether or not a person ever looks at the message;
2. it is an Apple Mail Privacy Protection open: the bare user agent ``Mozilla/5.0`` or Apple's
   network ``17.0.0.0/8``;
3. its user agent names an automated client or security scanner (``AUTOMATED_AGENTS``), or is empty;
4. it comes within ``MACHINE_OPEN_SECONDS`` (open) or ``MACHINE_CLICK_SECONDS`` (click) of SES
   accepting the message (``mail.timestamp``): a prefetch or a link scanner. The send time is used
   rather than the Delivery event because SNS does not order events: an open may arrive first.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from audiences.models import normalise_email
from tracking.models import Event

MACHINE_OPEN_SECONDS = 5
MACHINE_CLICK_SECONDS = 10
PROXY_AGENTS = re.compile(r"GoogleImageProxy|ggpht\.com|YahooMailProxy|Yahoo! Slurp", re.IGNORECASE)
AUTOMATED_AGENTS = re.compile(
    r"bot\b|bot/|crawler|spider|preview|python-requests|curl/|wget|go-http-client|headlesschrome|"
    r"barracuda|proofpoint|mimecast|urldefense|safelinks|scanner",
    re.IGNORECASE,
)
APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")

EVENT_TYPES = {
    "Send": (Event.Type.SEND, "send"),
    "Delivery": (Event.Type.DELIVERY, "delivery"),
    "Bounce": (Event.Type.BOUNCE, "bounce"),
    "Complaint": (Event.Type.COMPLAINT, "complaint"),
    "Reject": (Event.Type.REJECT, "reject"),
    "Open": (Event.Type.OPEN, "open"),
    "Click": (Event.Type.CLICK, "click"),
    "Rendering Failure": (Event.Type.RENDERING_FAILURE, "failure"),
    "DeliveryDelay": (Event.Type.DELIVERY_DELAY, "deliveryDelay"),
    "Subscription": (Event.Type.SUBSCRIPTION, "subscription"),
}


class EventRefused(Exception):
    """The SES record is not one we understand; nothing was stored."""


@dataclass
class ParsedEvent:
    event_type: str
    ses_message_id: str
    occurred_at: datetime
    sent_at: datetime | None
    addresses: list[str]
    tags: dict[str, list[str]]
    detail: dict[str, Any]
    fields: dict[str, str] = field(default_factory=dict)


def event_parse(*, record: dict) -> ParsedEvent:
    if not isinstance(record, dict):
        raise EventRefused("The SES record is not a JSON object.")
    kind = record.get("eventType") or record.get("notificationType")
    if kind not in EVENT_TYPES:
        raise EventRefused(f"Unknown SES event type {str(kind)[:40]!r}.")
    event_type, detail_key = EVENT_TYPES[kind]
    mail = record.get("mail")
    detail = record.get(detail_key) or {}
    if not isinstance(mail, dict) or not isinstance(mail.get("messageId"), str) or not isinstance(detail, dict):
        raise EventRefused("The SES record has no usable 'mail' object or event details.")
    tags = mail.get("tags") if isinstance(mail.get("tags"), dict) else {}
    sent_at = _time(mail.get("timestamp"))
    parsed = ParsedEvent(
        event_type=event_type,
        ses_message_id=mail["messageId"],
        occurred_at=_time(detail.get("timestamp")) or sent_at or timezone.now(),
        sent_at=sent_at,
        addresses=_addresses(event_type, detail, mail),
        tags=tags,
        detail=detail,
    )
    parsed.fields = _event_fields(parsed)
    return parsed


def _addresses(event_type: str, detail: dict, mail: dict) -> list[str]:
    lists = {
        Event.Type.BOUNCE: ("bouncedRecipients", "emailAddress"),
        Event.Type.COMPLAINT: ("complainedRecipients", "emailAddress"),
        Event.Type.DELIVERY_DELAY: ("delayedRecipients", "emailAddress"),
    }
    if event_type in lists:
        key, inner = lists[event_type]
        found = [item.get(inner) for item in detail.get(key) or [] if isinstance(item, dict)]
    elif event_type == Event.Type.DELIVERY:
        found = detail.get("recipients") or []
    else:
        found = mail.get("destination") or []
    return [normalise_email(address) for address in found if isinstance(address, str) and address][:50]


def _event_fields(parsed: ParsedEvent) -> dict[str, Any]:
    detail = parsed.detail
    kind = parsed.event_type
    fields: dict[str, Any] = {}
    if kind == Event.Type.BOUNCE:
        fields["bounce_type"] = str(detail.get("bounceType", ""))[:20]
        fields["bounce_subtype"] = str(detail.get("bounceSubType", ""))[:40]
        first = (detail.get("bouncedRecipients") or [{}])[0]
        if isinstance(first, dict):
            fields["detail"] = " ".join(str(first.get(k, "")) for k in ("status", "diagnosticCode")).strip()[:1000]
    elif kind == Event.Type.COMPLAINT:
        fields["detail"] = str(detail.get("complaintFeedbackType", ""))[:1000]
    elif kind in {Event.Type.REJECT, Event.Type.RENDERING_FAILURE}:
        fields["detail"] = str(detail.get("reason") or detail.get("errorMessage") or "")[:1000]
    elif kind == Event.Type.DELIVERY_DELAY:
        fields["detail"] = str(detail.get("delayType", ""))[:1000]
    elif kind == Event.Type.DELIVERY:
        fields["detail"] = str(detail.get("smtpResponse", ""))[:1000]
    elif kind == Event.Type.SUBSCRIPTION:
        fields["detail"] = str(detail.get("source", ""))[:1000]
    if kind in {Event.Type.OPEN, Event.Type.CLICK}:
        fields["ip_address"] = str(detail.get("ipAddress", ""))[:45]
        fields["user_agent"] = str(detail.get("userAgent", ""))[:500]
        if kind == Event.Type.CLICK:
            fields["link"] = str(detail.get("link", ""))[:2000]
        fields["is_machine"] = is_machine(
            kind=kind, user_agent=fields["user_agent"], ip_address=fields["ip_address"],
            occurred_at=parsed.occurred_at, sent_at=parsed.sent_at,
        )  # fmt: skip
    return fields


def is_machine(*, kind: str, user_agent: str, ip_address: str, occurred_at: datetime, sent_at: datetime | None) -> bool:
    """The machine-open rules of the module docstring."""
    agent = user_agent.strip()
    if not agent or PROXY_AGENTS.search(agent) or AUTOMATED_AGENTS.search(agent):
        return True
    if kind == Event.Type.OPEN and agent == "Mozilla/5.0":
        return True
    try:
        if ipaddress.ip_address(ip_address) in APPLE_NETWORK and kind == Event.Type.OPEN:
            return True
    except ValueError:
        pass
    if sent_at is not None:
        window = MACHINE_OPEN_SECONDS if kind == Event.Type.OPEN else MACHINE_CLICK_SECONDS
        if (occurred_at - sent_at).total_seconds() < window:
            return True
    return False


def opted_out(parsed: ParsedEvent) -> bool:
    """An SES subscription event saying the recipient opted out (of everything or of a topic)."""
    preferences = parsed.detail.get("newTopicPreferences") or {}
    if not isinstance(preferences, dict):
        return False
    topics = preferences.get("topicSubscriptionStatus")
    topics = topics if isinstance(topics, list) else []
    return preferences.get("unsubscribeAll") is True or any(
        isinstance(topic, dict) and topic.get("subscriptionStatus") == "OptOut" for topic in topics
    )


def without_nul(value: Any) -> Any:
    """``value`` with NUL characters removed from every string (keys included)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    return value


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    # A time SES cannot have written (and one that would overflow once converted to UTC).
    return parsed if 2000 <= parsed.year <= 2200 else None
