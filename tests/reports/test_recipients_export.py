"""The recipients CSV export says why a message failed: bounce type, subtype and SES's diagnostic,
or the complaint's feedback type, from signed SNS notifications posted to the webhook."""

from __future__ import annotations

import csv
import io

import pytest

from campaigns.models import Recipient
from tests.sns import campaign_with_recipients, new_id
from tests.tracking.records import event

pytestmark = pytest.mark.django_db


def exported(staff_client, campaign, query: str = "") -> dict[str, dict[str, str]]:
    response = staff_client.get(f"/reports/campaigns/{campaign.pk}/recipients/export/{query}")
    rows = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    return {row["email"]: row for row in rows}


def test_the_error_column_explains_bounces_and_complaints(staff_client, notify):
    campaign, recipients = campaign_with_recipients(5)
    hard, soft, complainer, silent, fine = recipients

    def send(kind, recipient, **detail):
        record = event(
            kind,
            address=recipient.email,
            message_id=recipient.ses_message_id,
            campaign=campaign.pk,
            recipient=recipient.pk,
            **detail,
        )
        assert notify(record, message_id=new_id()).status_code == 200

    send(
        "Bounce",
        hard,
        bounceType="Permanent",
        bounceSubType="NoEmail",
        bouncedRecipients=[
            {
                "emailAddress": hard.email,
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 <x@example.org>: Recipient address rejected: User unknown",
            }
        ],
    )
    send(
        "Bounce",
        soft,
        bounceType="Transient",
        bounceSubType="MailboxFull",
        bouncedRecipients=[
            {
                "emailAddress": soft.email,
                "action": "failed",
                "status": "4.2.2",
                "diagnosticCode": "smtp; 452 4.2.2 over quota",
            }
        ],
    )
    send("Delivery", complainer)
    send("Complaint", complainer, complaintFeedbackType="abuse")
    send("Complaint", silent, complaintFeedbackType="")
    send("Delivery", fine)

    rows = exported(staff_client, campaign)
    assert rows[hard.email]["error"] == (
        "Bounce Permanent/NoEmail: 5.1.1 smtp; 550 5.1.1 <x@example.org>: Recipient address rejected: User unknown"
    )
    assert rows[soft.email]["error"] == "Bounce Transient/MailboxFull: 4.2.2 smtp; 452 4.2.2 over quota"
    assert rows[complainer.email]["error"] == "Complaint: abuse"
    assert rows[silent.email]["error"] == "Complaint: no feedback type given"
    assert rows[fine.email]["error"] == ""
    # The bounced filter exports the same explanations.
    assert set(exported(staff_client, campaign, "?outcome=bounced")) == {hard.email, soft.email}


def test_a_send_error_and_a_later_bounce_both_show(staff_client, notify):
    campaign, recipients = campaign_with_recipients(1)
    recipient = recipients[0]
    Recipient.objects.filter(pk=recipient.pk).update(error="Throttling: Maximum sending rate exceeded (retried)")
    record = event("Bounce", address=recipient.email, message_id=recipient.ses_message_id, campaign=campaign.pk,
                   recipient=recipient.pk)  # fmt: skip
    assert notify(record, message_id=new_id()).status_code == 200
    assert exported(staff_client, campaign)[recipient.email]["error"] == (
        "Throttling: Maximum sending rate exceeded (retried); "
        "Bounce Permanent/General: 5.1.1 smtp; 550 5.1.1 user unknown"
    )
