"""Each campaign message as SES receives it: well-formed MIME with the SES headers (delivery/mime.py)."""

from __future__ import annotations

import email
from email import policy

import pytest
from django.utils import timezone

from campaigns.delivery.engine import campaign_dispatch
from campaigns.models import Campaign, Recipient
from campaigns.snapshot import audience_snapshot
from tests.factories import campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db


def sending_campaign(size: int, **fields) -> Campaign:
    campaign = campaign_to(list_with_contacts(size), **fields)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING, started_at=timezone.now())
    audience_snapshot(campaign_id=campaign.pk)
    return Campaign.objects.get(pk=campaign.pk)


def test_each_message_is_well_formed_mime_with_ses_headers(stub_ses):
    campaign = sending_campaign(2, subject="Grüße {{ first_name }}", reply_to="Desk <desk@cobalt.example>")

    campaign_dispatch(campaign_id=campaign.pk, seconds=30)

    by_address = {r.email: r for r in Recipient.objects.select_related("contact")}
    for received in stub_ses.received:
        message = email.message_from_bytes(received.raw, policy=policy.default)
        recipient = by_address[str(message["To"])]
        assert message["Subject"] == f"Grüße {recipient.contact.first_name}"
        assert message["Reply-To"] == "Desk <desk@cobalt.example>"
        assert message["X-SES-MESSAGE-TAGS"] == f"campaign={campaign.pk}, recipient={recipient.pk}"
        assert message.get_body(("plain",)).get_content().startswith(f"Hi {recipient.contact.first_name},")
        assert received.destinations == [recipient.email]
        assert recipient.ses_message_id == received.message_id
        assert b"\r\n" in received.raw and b"\n" not in received.raw.replace(b"\r\n", b"")
