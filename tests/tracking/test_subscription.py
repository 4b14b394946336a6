"""SubscriptionConfirmation: confirmed automatically for an allowed topic, refused otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.sns import TOPIC_ARN, new_id
from tests.tracking.records import iso


def confirmation(cert_server, *, topic_arn: str = TOPIC_ARN, subscribe_url: str | None = None) -> dict:
    token = new_id()
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": new_id(),
        "Token": token,
        "TopicArn": topic_arn,
        "Message": f"You have chosen to subscribe to the topic {topic_arn}.",
        "SubscribeURL": subscribe_url or f"{cert_server.url}confirm?Action=ConfirmSubscription&Token={token}",
        "Timestamp": iso(datetime.now(UTC)),
        "SigningCertURL": cert_server.cert_url,
    }


def test_it_confirms_a_subscription_to_an_allowed_topic(signing, cert_server, post):
    envelope = confirmation(cert_server)
    cert_server.confirmations.clear()

    response = post(signing.sign(envelope, version="1"))

    assert response.status_code == 200
    assert cert_server.confirmations == [envelope["SubscribeURL"].removeprefix(cert_server.url[:-1])]


def test_it_refuses_a_subscription_to_a_foreign_topic(signing, cert_server, post):
    cert_server.confirmations.clear()
    envelope = confirmation(cert_server, topic_arn="arn:aws:sns:us-east-1:999999999999:other")

    response = post(signing.sign(envelope))

    assert response.status_code == 403
    assert cert_server.confirmations == []


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "https://sns.us-east-1.amazonaws.com.evil.example/confirm"]
)
def test_it_never_visits_a_subscribe_url_outside_sns(signing, cert_server, post, url):
    response = post(signing.sign(confirmation(cert_server, subscribe_url=url)))

    assert response.status_code == 403
    assert b"SubscribeURL" in response.content
