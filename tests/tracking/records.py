"""SES event records in the documented formats (event publishing and identity notifications)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

EVENT_TYPES = (
    "Send",
    "Delivery",
    "Bounce",
    "Complaint",
    "Reject",
    "Open",
    "Click",
    "Rendering Failure",
    "DeliveryDelay",
    "Subscription",
)
SENT_AT = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def mail(*, message_id: str, address: str, campaign: int | None = None, recipient: int | None = None) -> dict:
    tags = {"ses:configuration-set": ["cobalt-mail"], "ses:source-ip": ["192.0.2.0"]}
    if campaign is not None:
        tags["campaign"] = [str(campaign)]
    if recipient is not None:
        tags["recipient"] = [str(recipient)]
    return {
        "timestamp": iso(SENT_AT),
        "source": "news@cobalt.example",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [address],
        "headersTruncated": False,
        "headers": [{"name": "To", "value": address}],
        "commonHeaders": {"from": ["news@cobalt.example"], "to": [address], "subject": "Hello"},
        "tags": tags,
    }


def event(kind: str, *, address: str = "recipient@example.com", message_id: str = "0100-ses-id", after: float = 600,
          campaign: int | None = None, recipient: int | None = None, **detail) -> dict:  # fmt: skip
    """An event-publishing record (``eventType``) of ``kind``; ``detail`` overrides its details."""
    at = iso(SENT_AT + timedelta(seconds=after))
    details = {
        "Send": ("send", {}),
        "Delivery": ("delivery", {"timestamp": at, "processingTimeMillis": 546, "recipients": [address],
                                  "smtpResponse": "250 ok", "reportingMTA": "a8-70.smtp-out.amazonses.com"}),
        "Bounce": ("bounce", {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": at,
                              "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": "5.1.1",
                                                     "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}),
        "Complaint": ("complaint", {"timestamp": at, "complaintFeedbackType": "abuse",
                                    "complainedRecipients": [{"emailAddress": address}]}),
        "Reject": ("reject", {"reason": "Bad content"}),
        "Open": ("open", {"timestamp": at, "ipAddress": "192.0.2.1",
                          "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_3 like Mac OS X) Mobile/14G60"}),
        "Click": ("click", {"timestamp": at, "ipAddress": "192.0.2.1", "link": "https://example.com/read",
                            "linkTags": {}, "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/60.0"}),
        "Rendering Failure": ("failure", {"templateName": "MyTemplate",
                                          "errorMessage": "Attribute 'attributeName' is not present"}),
        "DeliveryDelay": ("deliveryDelay", {"timestamp": at, "delayType": "TransientCommunicationFailure",
                                            "expirationTime": at, "delayedRecipients": [{"emailAddress": address}]}),
        "Subscription": ("subscription", {"contactList": "News", "timestamp": at, "source": "UnsubscribeHeader",
                                          "newTopicPreferences": {"unsubscribeAll": True,
                                                                  "topicSubscriptionStatus": []}}),
    }  # fmt: skip
    key, body = details[kind]
    body = {**copy.deepcopy(body), **detail}
    record = {"eventType": kind, "mail": mail(message_id=message_id, address=address, campaign=campaign,
                                               recipient=recipient), key: body}  # fmt: skip
    return record


def identity_notification(kind: str, *, address: str = "recipient@example.com", message_id: str = "0100-ses-id",
                          **detail) -> dict:  # fmt: skip
    """An identity feedback notification (``notificationType``): no tags, matched by message id."""
    record = event(kind, address=address, message_id=message_id, **detail)
    record.pop("eventType")
    record["notificationType"] = kind
    record["mail"].pop("tags")
    return record
