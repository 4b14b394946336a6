"""The SNS webhook end to end: signed requests in, events stored (or refused with a 4xx)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from stats.models import CampaignStats
from tests.sns import TOPIC_ARN, WEBHOOK, campaign_with_recipients, new_id
from tests.tracking.records import EVENT_TYPES, event, identity_notification, iso
from tracking.models import Event
from tracking.simulator import SigningIdentity

pytestmark = pytest.mark.django_db

STORED_TYPE = {
    "Send": "send",
    "Delivery": "delivery",
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Reject": "reject",
    "Open": "open",
    "Click": "click",
    "Rendering Failure": "rendering_failure",
    "DeliveryDelay": "delivery_delay",
    "Subscription": "subscription",
}


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_it_stores_every_event_type_signed_with_either_signature_version(notify, kind, version):
    campaign, (recipient,) = campaign_with_recipients(1)
    record = event(kind, address=recipient.email, campaign=campaign.pk, recipient=recipient.pk)

    response = notify(record, version=version)

    assert response.status_code == 200, response.content
    stored = Event.objects.get()
    assert stored.event_type == STORED_TYPE[kind]
    assert (stored.campaign_id, stored.recipient_id) == (campaign.pk, recipient.pk)
    assert stored.payload == record


@pytest.mark.parametrize("kind", ["Bounce", "Complaint", "Delivery"])
def test_it_matches_identity_notifications_by_ses_message_id(notify, kind):
    _campaign, (recipient,) = campaign_with_recipients(1)

    response = notify(identity_notification(kind, address=recipient.email, message_id=recipient.ses_message_id))

    assert response.status_code == 200
    stored = Event.objects.get()
    assert stored.event_type == STORED_TYPE[kind]
    assert stored.recipient_id == recipient.pk


def test_it_records_bounce_details(notify):
    notify(event("Bounce", bounceType="Transient", bounceSubType="MailboxFull"))

    stored = Event.objects.get()
    assert (stored.bounce_type, stored.bounce_subtype) == ("Transient", "MailboxFull")
    assert "550 5.1.1 user unknown" in stored.detail


def test_the_same_sns_message_twice_changes_nothing(notify):
    campaign, (recipient,) = campaign_with_recipients(1)
    record = event("Delivery", address=recipient.email, campaign=campaign.pk, recipient=recipient.pk)
    message_id = new_id()

    first = notify(record, message_id=message_id)
    replay = notify(record, message_id=message_id)

    assert (first.status_code, replay.status_code) == (200, 200)
    assert replay.content == b"Already recorded."
    assert Event.objects.count() == 1
    assert CampaignStats.objects.get(campaign=campaign).delivered == 1


def test_it_refuses_a_message_signed_with_another_key(signed, post, tmp_path):
    envelope = signed(event("Bounce"))
    forged = SigningIdentity(tmp_path).sign(envelope, version="2")

    response = post(forged)

    assert response.status_code == 403
    assert b"signature does not match" in response.content
    assert not Event.objects.exists()


@pytest.mark.parametrize("field", ["Message", "MessageId", "Timestamp", "Type"])
def test_it_refuses_a_tampered_message(signed, post, field):
    envelope = signed(event("Delivery"))
    envelope[field] = {
        "Message": json.dumps(event("Bounce")),
        "MessageId": new_id(),
        "Timestamp": envelope["Timestamp"].replace(".", "1."),
        "Type": "SubscriptionConfirmation",
    }[field]

    response = post(envelope)

    assert 400 <= response.status_code < 500
    assert not Event.objects.exists()


def test_it_refuses_a_foreign_topic_even_when_correctly_signed(notify):
    response = notify(event("Delivery"), topic_arn="arn:aws:sns:us-east-1:999999999999:someone-else")

    assert response.status_code == 403
    assert b"SNS_TOPIC_ARNS" in response.content
    assert not Event.objects.exists()


def test_an_empty_topic_allowlist_refuses_everything(notify, settings):
    settings.SNS_TOPIC_ARNS = []

    assert notify(event("Delivery")).status_code == 403
    assert not Event.objects.exists()


def test_it_refuses_a_replay_older_than_a_day(signing, cert_server, post):
    envelope = {"Type": "Notification", "MessageId": new_id(), "TopicArn": TOPIC_ARN,
                "Message": json.dumps(event("Delivery")), "Timestamp": "2020-01-01T00:00:00.000Z",
                "SigningCertURL": cert_server.cert_url}  # fmt: skip

    response = post(signing.sign(envelope, version="2"))

    assert response.status_code == 403
    assert b"replayed" in response.content


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "file:///etc/passwd",
    ],
)
def test_it_refuses_certificates_from_anywhere_but_sns(signing, post, cert_url):
    envelope = {"Type": "Notification", "MessageId": new_id(), "TopicArn": TOPIC_ARN,
                "Message": json.dumps(event("Delivery")), "Timestamp": "2099-01-01T00:00:00.000Z",
                "SigningCertURL": cert_url}  # fmt: skip
    envelope["Timestamp"] = iso(datetime.now(UTC))

    response = post(signing.sign(envelope, version="1"))

    assert response.status_code == 403
    assert b"certificate URL" in response.content


def test_it_refuses_an_unsupported_signature_version(signed, post):
    envelope = signed(event("Delivery"))
    envelope["SignatureVersion"] = "3"

    assert post(envelope).status_code == 403


def test_it_refuses_an_oversized_body(post, settings):
    response = post(json.dumps({"Type": "Notification", "Message": "x" * (settings.SNS_MAX_BODY_BYTES + 1)}))

    assert response.status_code == 413
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"Type": "Notification"}', b"\xff\xfe", json.dumps({"Type": "Surprise"}).encode()],
)
def test_it_answers_malformed_bodies_with_400(post, body):
    response = post(body)

    assert response.status_code == 400
    assert not Event.objects.exists()


def test_it_refuses_an_unknown_ses_event_type_and_stores_nothing(notify):
    record = event("Delivery")
    record["eventType"] = "Teleported"

    response = notify(record)

    assert response.status_code == 400
    assert b"Unknown SES event type" in response.content
    assert not Event.objects.exists()


def test_it_refuses_a_message_that_is_not_json(signing, cert_server, post):
    envelope = {"Type": "Notification", "MessageId": new_id(), "TopicArn": TOPIC_ARN, "Message": "plain words",
                "Timestamp": iso(datetime.now(UTC)), "SigningCertURL": cert_server.cert_url}  # fmt: skip

    response = post(signing.sign(envelope))

    assert response.status_code == 400
    assert b"not JSON" in response.content


def test_a_deeply_nested_body_is_refused_as_not_json_not_a_server_error(post):
    response = post(b"[" * 100_000 + b"]" * 100_000)

    assert response.status_code == 400
    assert b"not valid JSON" in response.content
    assert not Event.objects.exists()


def test_get_is_not_allowed(client):
    assert client.get(WEBHOOK).status_code == 405


def test_it_needs_no_login(client, notify):
    assert notify(event("Send")).status_code == 200


def test_it_stores_an_event_whose_text_holds_nul_characters(notify):
    response = notify(event("Open", userAgent="Mozilla/5.0\u0000 (X11)"))

    assert response.status_code == 200
    assert Event.objects.get().user_agent == "Mozilla/5.0 (X11)"


def test_an_impossible_event_time_falls_back_to_the_send_time(notify):
    assert notify(event("Delivery", timestamp="0001-01-01T00:00:00+05:00")).status_code == 200
    assert Event.objects.get().occurred_at.year == 2026


def test_the_ses_setup_notification_is_acknowledged_without_an_event(notify):
    response = notify({"notificationType": "AMAZON_SES_SETUP_NOTIFICATION", "receipt": {}})

    assert response.status_code == 200
    assert not Event.objects.exists()
